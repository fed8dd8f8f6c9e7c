"""Bit-for-bit regression of normexp.attention (out and lse) on every kernel set this CPU runs.

The SHA-256 of each result's bytes is compared with ``attention_golden.json`` (next to this file), recorded
from the attention kernels as they were before they moved to the shared generic header
(cpp/src/kernels/generic/attention.hpp). Any change of a single bit in any case fails. Cases run through
``normexp.use_isa`` and, for one ISA at a time, in a subprocess with ``NORMEXP_ISA`` set (the selection made at
import). An ISA with no recorded hashes (e.g. NEON, whose bit-for-bit record is the C++ test
tests/cpp/test_attention_golden.cpp run under qemu) is skipped.

After a deliberate numerical change:  NORMEXP_WRITE_GOLDEN=1 python -m pytest tests/python/test_attention_golden.py
(then review and commit the JSON). Inputs come from a fixed integer hash, not NumPy's generators, so they
are the same bits whatever the NumPy version.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import normexp

GOLDEN = pathlib.Path(__file__).with_name("attention_golden.json")
WRITE = os.environ.get("NORMEXP_WRITE_GOLDEN") == "1"
ISAS = [i for i in normexp.available_isas() if i in ("scalar", "avx2", "avx512", "neon")]


def _hash_values(seed: int, n: int, dtype) -> np.ndarray:
    """n values in [-1, 1) with full significands (24 bits float32, 53 bits float64, exact): a splitmix64
    hash's top bits scaled. Full float64 significands keep FMA-vs-rounded-product changes visible."""
    bits = 24 if np.dtype(dtype) == np.float32 else 53
    with np.errstate(over="ignore"):
        x = (np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x100000001B3)) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    r = (x >> np.uint64(64 - bits)).astype(np.int64) - (1 << (bits - 1))
    return r.astype(np.float64) * 2.0 ** -(bits - 1)


def _cases():
    """(name, kwargs for _run)."""
    out = []
    for d in list(range(1, 18)) + [31, 32, 33, 64, 65, 100, 128]:
        out.append((f"decode_d{d}", dict(hq=2, hkv=2, lq=1, lkv=45, d=d, dv=d)))
        out.append((f"prefill_causal_d{d}", dict(lq=29, lkv=37, d=d, dv=d, is_causal=True)))
    base = dict(hq=2, hkv=2, lq=61, lkv=83, d=40, dv=24)
    feats = {
        "plain": {},
        "scale": dict(scale=0.37),
        "causal": dict(is_causal=True),
        "causal_br": dict(is_causal=True, causal_alignment="bottom_right"),
        "window": dict(window=9),
        "causal_window": dict(is_causal=True, window=17),
        "softcap": dict(softcap=2.5, amp=3.0),
        "alibi": dict(alibi=True),
        "keep": dict(mask="keep"),
        "keep_bcast": dict(mask="keep_bcast"),
        "additive": dict(mask="additive"),
        "all_features": dict(softcap=4.0, alibi=True, mask="additive", is_causal=True, window=30),
        "big_scores": dict(scale=60.0, amp=2.0),
        "swapaxes_layout": dict(layout="bhld_as_blhd"),
        "gqa_prefill": dict(hq=6, hkv=2, is_causal=True),
        "gqa_decode": dict(hq=8, hkv=2, lq=1, lkv=300),
        "decode_split": dict(hq=1, hkv=1, lq=1, lkv=2100, d=64, dv=64),
        "long_causal": dict(hq=1, hkv=1, lq=250, lkv=260, d=64, dv=64, is_causal=True),
    }
    for name, kw in feats.items():
        out.append((name, {**base, **kw}))
    return out


CASES = _cases()


def _run(dtype, lq, lkv, d, dv, hq=1, hkv=1, amp=1.0, mask=None, alibi=False, layout=None, **opts):
    seed = int.from_bytes(hashlib.sha256(repr((hq, hkv, lq, lkv, d, dv, mask, layout)).encode()).digest()[:2], "little")
    q = (_hash_values(seed * 4 + 1, 2 * hq * lq * d, dtype) * amp).astype(dtype).reshape(2, hq, lq, d)
    k = (_hash_values(seed * 4 + 2, 2 * hkv * lkv * d, dtype) * amp).astype(dtype).reshape(2, hkv, lkv, d)
    v = (_hash_values(seed * 4 + 3, 2 * hkv * lkv * dv, dtype) * 4).astype(dtype).reshape(2, hkv, lkv, dv)
    if layout == "bhld_as_blhd":  # (B, L, H, D) buffers seen as (B, H, L, D): strided rows, read in place
        q = np.ascontiguousarray(q.swapaxes(1, 2)).swapaxes(1, 2)
        k = np.ascontiguousarray(k.swapaxes(1, 2)).swapaxes(1, 2)
        v = np.ascontiguousarray(v.swapaxes(1, 2)).swapaxes(1, 2)
    kw = dict(opts)
    if mask is not None:
        h = _hash_values(seed * 4 + 4, 2 * hq * lq * lkv, dtype).reshape(2, hq, lq, lkv)
        if mask == "keep":
            kw["mask"] = np.abs(h) > 0.2
        elif mask == "keep_bcast":
            kw["mask"] = np.abs(h[:, :, :1, :]) > 0.2
        else:
            kw["mask"] = np.where(h > 0.8, -np.inf, h).astype(dtype)
    if alibi:
        kw["alibi_slopes"] = (0.0625 * np.arange(1, hq + 1)).astype(np.float64)
    out, lse = normexp.attention(q, k, v, return_lse=True, **kw)
    return hashlib.sha256(np.ascontiguousarray(out).tobytes() + np.ascontiguousarray(lse).tobytes()).hexdigest()[:24]


def _all_hashes(isa_names):
    res = {}
    for isa in isa_names:
        with normexp.use_isa(isa):
            for name, kw in CASES:
                for dt in (np.float32, np.float64):
                    res[f"{isa} {name} {np.dtype(dt).name}"] = _run(dt, **kw)
    return res


def _recorded():
    if not GOLDEN.exists():
        return {}
    return json.loads(GOLDEN.read_text())


def test_attention_bit_identical_use_isa():
    got = _all_hashes(ISAS)
    if WRITE:
        rec = _recorded()
        rec.update(got)
        GOLDEN.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"wrote {len(got)} hashes to {GOLDEN}")
    rec = _recorded()
    checked = [isa for isa in ISAS if any(key.startswith(isa + " ") for key in rec)]
    if not checked:
        pytest.skip(f"no recorded hashes for {ISAS}")
    bad = [key for key, h in got.items() if key.split(" ")[0] in checked and rec.get(key) != h]
    assert not bad, f"{len(bad)} attention results changed bit(s) (or are unrecorded), e.g. {bad[:5]}"


@pytest.mark.parametrize("isa", ISAS)
def test_attention_bit_identical_env(isa):
    """The same hashes with the ISA chosen at import by NORMEXP_ISA (a few cases, in a fresh process)."""
    rec = _recorded()
    if WRITE or not any(key.startswith(isa + " ") for key in rec):
        pytest.skip(f"no recorded hashes for {isa}")
    code = (
        "import sys, json, normexp, numpy as np\n"
        f"sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})\n"
        "import test_attention_golden as t\n"
        f"assert normexp.isa() == {isa!r}, normexp.isa()\n"
        "names = ['decode_d9', 'prefill_causal_d13', 'all_features', 'gqa_decode', 'decode_split', 'long_causal']\n"
        "kws = dict(t.CASES)\n"
        f"print(json.dumps({{f'{isa} {{n}} {{np.dtype(dt).name}}': t._run(dt, **kws[n]) for n in names for dt in (np.float32, np.float64)}}))\n"
    )
    env = dict(os.environ, NORMEXP_ISA=isa)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    bad = [key for key, h in got.items() if rec.get(key) != h]
    assert not bad, f"changed under NORMEXP_ISA={isa}: {bad}"
