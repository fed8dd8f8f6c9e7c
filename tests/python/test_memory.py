"""Memory: no leak over 100k calls of each public function (and of failing calls; fewer calls, with the
bound stated at LEAK_CALLS, for the heavier attention and output-layer functions), indexing beyond 2^31
elements, and allocations that cannot be satisfied raise MemoryError instead of aborting.
"""

from __future__ import annotations

import gc
import mmap
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import normexp
from normexp import special
from numpy.lib.stride_tricks import as_strided

CALLS = 100_000
# RSS may grow by this much over 100k calls: a leak of 64 bytes per call would be 6.1 MiB, and the
# allocator's own high-water fluctuations (pymalloc arenas, NumPy's small-block cache) stay under 1 MiB
# on this suite (measured: see the printed figures).
RSS_TOLERANCE = 4 << 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _bad_call():
    try:
        normexp.softmax(np.zeros((2, 3), np.float32), temperature=-1.0)
    except ValueError:
        pass


_x = np.random.default_rng(3).standard_normal((4, 33)).astype(np.float32)
_x64 = _x.astype(np.float64)
_w = np.arange(33) % 3 != 0
_out = np.empty_like(_x)
_b = np.linspace(-1, 1, 33)
_lse_out = np.empty(4, np.float32)

# One row per public function (and its main options). Add attention/sampling rows here.
LEAK_CASES = {
    "softmax(where, out)": lambda: normexp.softmax(_x, where=_w, out=_out),
    "softmax(f64, axis 0)": lambda: normexp.softmax(_x64, axis=0),
    "log_softmax(temperature)": lambda: normexp.log_softmax(_x, temperature=0.5),
    "logsumexp(out)": lambda: normexp.logsumexp(_x, out=_lse_out),
    "logsumexp(b, return_sign)": lambda: normexp.logsumexp(_x64, b=_b, return_sign=True),
    "special.softmax(axis tuple)": lambda: special.softmax(_x, axis=(0, 1)),
    "special.log_softmax": lambda: special.log_softmax(_x64, axis=1),
    "special.logsumexp": lambda: special.logsumexp(_x64, axis=None),
    "bad argument (ValueError)": _bad_call,
}

# ---- attention and the output layer ----
_g = np.random.default_rng(4)
_q = _g.standard_normal((2, 4, 16)).astype(np.float32)
_k = _g.standard_normal((2, 6, 16)).astype(np.float32)
_v = _g.standard_normal((2, 6, 16)).astype(np.float32)
_mask = _g.random((4, 6)) < 0.8
_slopes = np.array([0.5, 0.25])
_att_out = np.empty((4, 16), np.float32)
_parts = [normexp.attention(_q, _k[:, :3], _v[:, :3], return_lse=True), normexp.attention(_q, _k[:, 3:], _v[:, 3:], return_lse=True)]
_pk = _g.standard_normal((5, 2, 2, 16)).astype(np.float32)  # 5 pages of 2 keys, 2 key/value heads
_pv = _g.standard_normal((5, 2, 2, 16)).astype(np.float32)
_pq = _g.standard_normal((4, 4, 16)).astype(np.float32)
_ptable = np.array([[4, 1, -1], [0, 2, 3]], np.int32)
_plens = np.array([3, 6], np.int32)
_pstarts = np.array([0, 1, 4], np.int32)
_labels = _g.integers(0, 33, 4)
_hid = _g.standard_normal((4, 16)).astype(np.float32)  # the fused LM head: 4 rows, vocabulary 33
_wlm = _g.standard_normal((33, 16)).astype(np.float32)
_blm = _g.standard_normal(33).astype(np.float32)
_gen = np.random.default_rng(0)
_probs = normexp.softmax(_x64)
_xfit = np.repeat(_x, 16, axis=0)  # 64 rows: labels drawn at T = 2, so the fit converges inside the bounds
_lfit = normexp.sample(_xfit, temperature=2.0, rng=1)


def _bad_native_call():
    # The error is found in the native code (a NaN row), raised through pybind11 as NormexpError.
    try:
        normexp.sample(_x_nan, rng=_gen)
    except ValueError:
        pass


_x_nan = _x.copy()
_x_nan[2, 5] = np.nan

# The heavier functions run fewer calls (the machine is shared; a call of attention with every option
# is ~100 us). With N calls the RSS tolerance detects a leak of RSS_TOLERANCE / N bytes per call:
# 20k calls -> 210 B, 3k calls -> 1.4 KiB. Each of those calls allocates more than that (attention's new
# output + lse: 544 bytes of data plus two array headers; fit_temperature: three 512-byte pass buffers
# per evaluation, ~6 evaluations), so leaking what a call allocates is still caught.
LEAK_CASES.update({
    "attention(mask, causal, alibi, softcap, window, lse)": lambda: normexp.attention(
        _q, _k, _v, mask=_mask, is_causal=True, alibi_slopes=_slopes, softcap=30.0, window=3, return_lse=True
    ),
    "attention(2-d, out, bottom_right)": lambda: normexp.attention(_q[0], _k[0], _v[0], out=_att_out, is_causal=True, causal_alignment="bottom_right"),
    "merge_attention": lambda: normexp.merge_attention([_parts[0][0], _parts[1][0]], [_parts[0][1], _parts[1][1]]),
    "paged_attention(sinks, window, lse)": lambda: normexp.paged_attention(
        _pq, _pk, _pv, _ptable, _plens, query_start=_pstarts, sinks=[0.5, 0.0, -1.0, 1.0], window=4, return_lse=True
    ),
    "sample(Generator, top_k, top_p, min_p)": lambda: normexp.sample(_x, top_k=5, top_p=0.9, min_p=0.01, rng=_gen),
    "sample(seed, f64)": lambda: normexp.sample(_x64, rng=5),
    "sample(greedy)": lambda: normexp.sample(_x, temperature=0.0),
    "cross_entropy(smoothing, ignore_index)": lambda: normexp.cross_entropy(_x, _labels, label_smoothing=0.1, ignore_index=int(_labels[0])),
    "cross_entropy(f64, none)": lambda: normexp.cross_entropy(_x64, _labels, reduction="none"),
    "linear_logsumexp(bias)": lambda: normexp.linear_logsumexp(_hid, _wlm, bias=_blm),
    "linear_cross_entropy(smoothing, none)": lambda: normexp.linear_cross_entropy(_hid, _wlm, _labels, label_smoothing=0.1, reduction="none"),
    "fit_temperature": lambda: normexp.fit_temperature(_xfit, _lfit),
    "calibration_error": lambda: normexp.calibration_error(_probs, _labels),
    "bad logits (native NormexpError)": _bad_native_call,
})
LEAK_CALLS = {
    "attention(mask, causal, alibi, softcap, window, lse)": 20_000,
    "paged_attention(sinks, window, lse)": 20_000,
    "attention(2-d, out, bottom_right)": 20_000,
    "sample(seed, f64)": 20_000,  # a new Generator per call (~25 us)
    "fit_temperature": 3_000,
    "calibration_error": 10_000,
}


@pytest.mark.parametrize("name", list(LEAK_CASES))
def test_no_leak_over_100k_calls(name):
    f = LEAK_CASES[name]
    calls = LEAK_CALLS.get(name, CALLS)
    for _ in range(min(2000, calls // 5)):  # warm up caches and pools
        f()
    gc.collect()
    before = rss_bytes()
    for _ in range(calls):
        f()
    gc.collect()
    grown = rss_bytes() - before
    print(f"{name}: RSS grew by {grown / 1024:.0f} KiB over {calls} calls")
    assert grown <= RSS_TOLERANCE, f"{name}: RSS grew by {grown} bytes over {calls} calls"


def test_leak_table_covers_every_public_function():
    # Every public function has a row (classes such as TemperatureFit and the thread/ISA settings excluded).
    public = {
        n for n in normexp.__all__
        if callable(getattr(normexp, n)) and not isinstance(getattr(normexp, n), type)
        and n not in {"set_num_threads", "get_num_threads", "isa", "available_isas", "isa_extensions", "use_isa"}
    }
    public |= {f"special.{n}" for n in special.__all__}
    rows = {name.split("(")[0].strip() for name in LEAK_CASES}
    assert public <= rows, public - rows


def test_more_than_2_31_elements_broadcast_view():
    # 32769 rows of 65536 float32 elements = 2^31 + 2^16 elements, all views of one 256 KiB row
    # (stride 0 between rows): the element count, work sizes and row offsets exceed 2^31.
    n = 1 << 16
    row = np.random.default_rng(5).standard_normal(n).astype(np.float32) * 4
    rows = (1 << 15) + 1
    x = as_strided(row, shape=(rows, n), strides=(0, 4))
    assert x.size > 2**31
    want = normexp.logsumexp(row)
    got = normexp.logsumexp(x, axis=-1)
    assert got.shape == (rows,)
    assert np.all(got == want)  # every row is the same row, computed by the same kernels


def test_offsets_beyond_2_31_elements():
    # A zero-filled array of 2^31 + 2^21 float32 (8.6 GB of address space in an anonymous mapping:
    # untouched pages use no memory, so only the ~2k touched 4 KiB pages do) and a view with one element every 2^20: element
    # offsets run past 2^31, so any 32-bit index or stride product in the drivers would read the wrong
    # place (or fault).
    nbytes = ((1 << 31) + (1 << 21)) * 4
    try:
        mem = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0))
    except OSError as e:
        pytest.fail(f"could not reserve 8.6 GB of address space (overcommit disabled?): {e}")
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # 4 KiB pages: each touched element costs one page, not 2 MiB
        mem.madvise(mmap.MADV_NOHUGEPAGE)
    base = np.frombuffer(mem, np.float32)
    step = 1 << 20
    v = base[::step]  # 2050 elements
    k = v.size
    assert (k - 1) * step > 2**31
    vals = np.random.default_rng(9).standard_normal(k).astype(np.float32) * 3
    v[...] = vals
    # 2-d views: rows of 41 elements 2^20 apart, and the same transposed (columns traversal).
    m = v[: (k // 41) * 41].reshape(-1, 41)
    assert m.strides == (41 * step * 4, step * 4)
    # The same values in ordinary memory, strided in both axes so the driver takes the same traversal
    # (gathered rows) and the results must be bit-identical.
    dense = np.zeros((m.shape[0], 2 * m.shape[1]), np.float32)[:, ::2]
    dense[...] = m
    for axis in (0, 1):
        assert np.array_equal(normexp.logsumexp(m, axis=axis), normexp.logsumexp(dense, axis=axis))
        assert np.array_equal(normexp.log_softmax(m, axis=axis), normexp.log_softmax(dense, axis=axis))
        want = normexp.softmax(dense, axis=axis)
        normexp.softmax(m, axis=axis, out=m)  # in place, through the same huge strides
        assert np.array_equal(m, want)
        m[...] = dense
    # The last element really is past 2^31 elements from the start, and nothing else was written.
    assert v[-1] == vals[-1]
    assert not np.any(base[step // 2 :: step]) and not np.any(base[1::step])


# Peak resident memory that a call on a strided or broadcast reduced axis may add: the drivers gather
# such rows through per-thread buffers of 2^16 elements (512 KiB for float64), never a whole row.
GATHER_PEAK_BOUND = 32 << 20


@pytest.mark.parametrize(
    "case",
    [
        "logsumexp(zeros(2**28)[::2])",  # 1 GiB of float64 gathered whole before
        "special.logsumexp(zeros(2**28)[::2])",
        "logsumexp(broadcast (3, 2**27 + 1), axis=-1)",  # stride 0 along the reduced axis
        "log_softmax(zeros(2**26)[::-1], out=strided)",  # gathered and scattered
        "softmax(broadcast (2**26, 2), axis=0)",  # axis 0 with no contiguous dimension
    ],
)
def test_strided_reduced_axis_is_gathered_in_bounded_blocks(case):
    # Runs in a subprocess so that the peak RSS (VmHWM) measures this call alone.
    code = textwrap.dedent(
        f"""
        import numpy as np, normexp
        from normexp import special
        from numpy.lib.stride_tricks import as_strided

        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) << 10

        case = {case!r}
        if case.startswith("logsumexp(zeros"):
            x = np.zeros(2**28)[::2]  # untouched zero pages: reading them costs no memory
            before = hwm(); r = normexp.logsumexp(x); want = np.log(2.0**27)
        elif case.startswith("special"):
            x = np.zeros(2**28)[::2]
            before = hwm(); r = special.logsumexp(x); want = np.log(2.0**27)
        elif case.startswith("logsumexp(broadcast"):
            x = as_strided(np.zeros(1, np.float32), shape=(3, 2**27 + 1), strides=(0, 0))
            before = hwm(); r = normexp.logsumexp(x, axis=-1); want = np.log(np.float32(2**27 + 1))
            assert r.shape == (3,)
        elif case.startswith("log_softmax"):
            x = np.zeros(2**26, np.float32)[::-1]
            out = np.empty(2**27, np.float32)[::2]
            out[...] = 1
            before = hwm(); r = normexp.log_softmax(x, out=out); want = -np.log(np.float32(2**26))
        else:
            x = as_strided(np.zeros(1, np.float32), shape=(2**26, 2), strides=(0, 0))
            out = np.empty((2**26, 2), np.float32)
            out[...] = 1
            before = hwm(); r = normexp.softmax(x, axis=0, out=out); want = np.float32(2.0**-26)
        grown = hwm() - before
        np.testing.assert_allclose(r, want, rtol=2e-6)
        print(grown)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    grown = int(r.stdout.split()[-1])
    assert grown <= GATHER_PEAK_BOUND, f"{case}: peak RSS grew by {grown >> 20} MiB"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_long_strided_rows_match_contiguous_bit_for_bit(op, dtype):
    # Rows longer than one gather buffer (2^16 elements) are cut at the super-chunk boundaries that the
    # contiguous path uses, so a strided row gives exactly the contiguous row's result, at any thread count.
    rng = np.random.default_rng(11)
    n = 3 * (1 << 16) + 5
    base = (rng.standard_normal((2, 2 * n)) * 6).astype(dtype)
    base[0, 2 * (n - 3)] = 60  # the maximum in the last piece
    x = base[:, ::2]
    dense = np.ascontiguousarray(x)
    f = getattr(normexp, op)
    kw = {} if op == "logsumexp" else {"temperature": 0.7}
    want = f(dense, **kw)
    before = normexp.get_num_threads()
    try:
        for nt in (1, 2):
            normexp.set_num_threads(nt)
            assert np.array_equal(f(x, **kw), want)
            assert np.array_equal(f(x[:1], **kw), want[:1])  # one row: threads split its pieces
            assert np.array_equal(f(np.ascontiguousarray(dense[:, ::-1])[:, ::-1], **kw), want)  # stride -1
            if op != "logsumexp":
                out = np.full((2, 2 * n), -1, dtype)[:, 1::2]
                assert np.array_equal(f(x, out=out, **kw), want) and np.all(out.base[:, ::2] == -1)
    finally:
        normexp.set_num_threads(before)


def test_unsatisfiable_output_raises_memory_error():
    # softmax of a 2^40-element broadcast view needs a 4 TiB result: MemoryError from the allocation.
    x = as_strided(np.zeros(1, np.float32), shape=(2**20, 2**20), strides=(0, 0))
    with pytest.raises(MemoryError):
        normexp.softmax(x)
    with pytest.raises(MemoryError):
        normexp.log_softmax(x, axis=0)
