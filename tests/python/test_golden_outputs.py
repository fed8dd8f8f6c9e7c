"""Bit-for-bit regression of the public reductions and the sampling API on every ISA this CPU runs.

A fixed, seeded set of cases (softmax, log_softmax, logsumexp along rows and along columns, with and
without a temperature; float32, float64, float16 and bfloat16; sample with top-k/top-p/min-p and
cross_entropy) is run under ``normexp.use_isa`` for each available ISA, and each output's bytes are
hashed, in order, into one SHA-256 per group "<dtype> <layout> <op>" (16 hex digits kept). The
digests of a known-good build are recorded in golden_outputs.json next to this file; the test fails if any hash of an ISA present here differs. It guards refactors of
the kernels that must not change a bit (test_isa_agreement.py checks the bounds between ISAs, this
checks that each ISA stays what it was).

Cases: every length 0..40 (every tail length 0..2N+1 of every vector width, N <= 16, and the 8-vector
blocks) plus longer rows; ordinary, wide, huge and tiny magnitudes with -inf, +inf and NaN planted;
column blocks of many widths (axis 0), including widths past the kernels' 1024-column panel, and a tall
block of 8 MiB per dtype (row super-chunks; float32 / float64 outputs stored non-temporally).

Record (only when a change of results is intended, and say why in the commit):
    PYTHONPATH=<installed normexp> python3 tests/python/test_golden_outputs.py --record
which rewrites the entries of the ISAs this machine runs and keeps the others.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import platform
import sys

import numpy as np
import pytest

import normexp

GOLDEN = pathlib.Path(__file__).with_name("golden_outputs.json")
ARCH = platform.machine()

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    BF16 = None

LENGTHS = list(range(0, 41)) + [63, 64, 65, 127, 128, 129, 1000, 4099]
WIDTHS = list(range(1, 20)) + [33, 100, 1030]
COL_ROWS = [1, 2, 3, 5, 8, 9, 33]


class _Groups:
    """One running SHA-256 per group ("<dtype> <layout> <op>"), fed with each case's name and output bytes."""

    def __init__(self) -> None:
        self.h: dict[str, "hashlib._Hash"] = {}

    def add(self, group: str, case: str, value) -> None:
        h = self.h.setdefault(group, hashlib.sha256())
        h.update(case.encode())
        if isinstance(value, BaseException):
            h.update(type(value).__name__.encode())
        else:
            a = np.asarray(value)
            h.update(str(a.dtype).encode() + str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())

    def digests(self) -> dict[str, str]:
        return {k: v.hexdigest()[:16] for k, v in self.h.items()}


def _call(f, *args, **kwargs):
    try:
        return f(*args, **kwargs)
    except (ValueError, TypeError, OverflowError) as e:
        return e


def _row(rng: np.random.Generator, n: int, kind: int, dtype) -> np.ndarray:
    g = rng.standard_normal(n)
    scale = [1.0, 30.0, 1e30, 1e-30, 4.0, 3.0][kind % 6]
    x = g * scale
    if kind % 6 == 4:
        x = np.round(x) / 4  # ties, the maximum repeated
    if kind % 6 == 5:
        x = x - 100.0
    if np.dtype(dtype).itemsize == 8 and kind % 6 == 2:
        x = x * 1e270
    if n and kind >= 6:
        pos = rng.integers(0, n, size=1 + n // 7)
        for r, p in enumerate(pos):
            x[p] = [-np.inf, -0.0, 1e-310, -3e38, x[rng.integers(0, n)]][(kind + r) % 5]
        if kind % 3 == 0:
            x[rng.integers(0, n)] = np.nan
        if kind % 3 == 1:
            x[rng.integers(0, n)] = np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dtype)


def _dtypes():
    d = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]
    if BF16 is not None:
        d.append(BF16)
    return d


def compute(isa: str) -> dict[str, str]:
    """The group digests of one ISA."""
    g = _Groups()
    rng = np.random.default_rng(20261203)
    with normexp.use_isa(isa):
        for dt in _dtypes():
            name = str(dt)
            kind = 0
            for n in LENGTHS:
                reps = 3 if n <= 40 else 2
                for rep in range(reps):
                    kind += 1
                    x = _row(rng, n, kind % 12, dt)
                    for temp in (1.0, 0.7):
                        key = f"n={n} rep={rep} T={temp}"
                        g.add(f"{name} row softmax", key, _call(normexp.softmax, x, temperature=temp))
                        g.add(f"{name} row log_softmax", key, _call(normexp.log_softmax, x, temperature=temp))
                    g.add(f"{name} row logsumexp", f"n={n} rep={rep}", _call(normexp.logsumexp, x))
                    # several rows at once (the driver's row loop), and a strided view
                    if n:
                        x2 = np.stack([x, _row(rng, n, (kind + 5) % 12, dt), _row(rng, n, (kind + 7) % 12, dt)])
                        key = f"n={n} rep={rep}"
                        g.add(f"{name} rows3 softmax", key, _call(normexp.softmax, x2))
                        g.add(f"{name} rows3 logsumexp", key, _call(normexp.logsumexp, x2, axis=1))
                        g.add(f"{name} strided log_softmax", key, _call(normexp.log_softmax, x2[:, ::2], temperature=0.7))
            for w in WIDTHS:
                for rows in COL_ROWS:
                    if w == 1030 and rows > 9:
                        continue
                    kind += 1
                    x = np.stack([_row(rng, w, (kind + i) % 12, dt) for i in range(rows)])
                    for temp in (1.0, 0.7):
                        key = f"w={w} rows={rows} T={temp}"
                        g.add(f"{name} col softmax", key, _call(normexp.softmax, x, axis=0, temperature=temp))
                        g.add(f"{name} col log_softmax", key, _call(normexp.log_softmax, x, axis=0, temperature=temp))
                    g.add(f"{name} col logsumexp", f"w={w} rows={rows}", _call(normexp.logsumexp, x, axis=0))
            # A tall block of 8 MiB and more (float32 / float64: the online path with streaming stores) cut into
            # several row super-chunks (cpp/src/reduce.cpp, col_super_rows), new maxima planted late.
            rows = (8 << 20) // (1030 * np.dtype(dt).itemsize) + 67
            # (its own generator, so the cases above and below keep their inputs and recorded digests)
            x = (np.random.default_rng(20261204).standard_normal((rows, 1030)) * 5).astype(dt)
            x[rows // 4, ::5] += 30
            x[-1, 1::7] += 35
            for temp in (1.0, 0.7):
                key = f"w=1030 rows={rows} T={temp}"
                g.add(f"{name} tall col softmax", key, _call(normexp.softmax, x, axis=0, temperature=temp))
                g.add(f"{name} tall col log_softmax", key, _call(normexp.log_softmax, x, axis=0, temperature=temp))
            g.add(f"{name} tall col logsumexp", f"w=1030 rows={rows}", _call(normexp.logsumexp, x, axis=0))
        # sampling: float32/float64 logits (sample computes its weights in float32 on every ISA)
        for dt in (np.float32, np.float64):
            for vocab in (1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200, 1000, 5000):
                logits = (rng.standard_normal((4, vocab)) * 3).astype(dt)
                for opts in (
                    {},
                    {"temperature": 0.7},
                    {"top_k": 5},
                    {"top_p": 0.9},
                    {"min_p": 0.05},
                    {"temperature": 1.3, "top_k": 50, "top_p": 0.95},
                    {"temperature": 0.0},
                ):
                    toks = _call(normexp.sample, logits, rng=np.random.default_rng(vocab), **opts)
                    g.add(f"{np.dtype(dt)} sample", f"vocab={vocab} {sorted(opts.items())}", toks)
                labels = rng.integers(0, vocab, size=4)
                for red in ("none", "mean"):
                    for ls in (0.0, 0.1):
                        g.add(
                            f"{np.dtype(dt)} cross_entropy",
                            f"vocab={vocab} {red} ls={ls}",
                            _call(normexp.cross_entropy, logits, labels, reduction=red, label_smoothing=ls),
                        )
    return g.digests()


def _load() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize("isa", normexp.available_isas())
def test_golden_outputs(isa):
    recorded = _load().get(f"{ARCH} {isa}")
    if recorded is None:
        pytest.skip(f"no recorded outputs for {ARCH} {isa}")
    threads = normexp.get_num_threads()
    normexp.set_num_threads(1)
    try:
        got = compute(isa)
    finally:
        normexp.set_num_threads(threads)
    differ = sorted(k for k in got if recorded.get(k) != got[k])
    missing = sorted(set(recorded) - set(got))
    assert not differ and not missing, (
        f"{len(differ)} of {len(got)} output groups differ from the recorded ones on {isa}: {differ}"
        f"; {len(missing)} recorded groups missing: {missing}"
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: test_golden_outputs.py --record")
    data = _load()
    normexp.set_num_threads(1)
    for isa in normexp.available_isas():
        data[f"{ARCH} {isa}"] = compute(isa)
        print(f"recorded {len(data[f'{ARCH} {isa}'])} output groups for {ARCH} {isa}")
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
