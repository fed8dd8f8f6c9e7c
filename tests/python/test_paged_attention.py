"""normexp.paged_attention against a float64 reference that gathers each sequence's pages into a contiguous
cache (test_attention.reference with bottom-right alignment, sinks as in test_attention_sinks), on every ISA.

Caches are built with random page permutations (and unused pages between them), page sizes that do not
divide the lengths, lengths 1 and one past a page, sequences with no new query mixed with decodes and long
prefills, GQA ratios, and every option. A page-size-4k cache read by one sequence is also compared bit for
bit with normexp.attention over the gathered keys: the segmented key blocks of the paged driver compute
exactly what the contiguous blocks do. The table validation is fuzzed (Python's checks and, through
_core, the library's own).
"""

from __future__ import annotations

import numpy as np
import pytest

import normexp
from normexp import _core
from test_attention import _bounds, reference
from test_attention_sinks import reference_sinks, same_for_thread_counts

RNG = np.random.default_rng(20261203)


def make_cache(lens, page_size, hk, d, dv, dtype=np.float32, spare=3, rng=RNG):
    """A pool holding the sequences' keys in randomly permuted pages (plus `spare` unused ones), the block
    table (-1 past each sequence's pages) and the gathered contiguous K, V of each sequence (Hkv, L, D)."""
    need = [(n + page_size - 1) // page_size for n in lens]
    npages = sum(need) + spare
    k_pages = rng.standard_normal((npages, page_size, hk, d)).astype(dtype)
    v_pages = rng.standard_normal((npages, page_size, hk, dv)).astype(dtype)
    perm = rng.permutation(npages)
    table = np.full((len(lens), max(need + [1]) + 1), -1, np.int32)
    ks, vs, at = [], [], 0
    for s, n in enumerate(lens):
        pages = perm[at : at + need[s]]
        at += need[s]
        table[s, : need[s]] = pages
        ks.append(np.ascontiguousarray(k_pages[pages].reshape(-1, hk, d)[:n].transpose(1, 0, 2)))
        vs.append(np.ascontiguousarray(v_pages[pages].reshape(-1, hk, dv)[:n].transpose(1, 0, 2)))
    return k_pages, v_pages, table, ks, vs


def check_paged(lens, nqs, page_size, hq, hk, d, dv, dtype=np.float32, sinks=None, **kw):
    """paged_attention against the per-sequence float64 reference; returns (out, lse, parts)."""
    k_pages, v_pages, table, ks, vs = make_cache(lens, page_size, hk, d, dv, dtype)
    starts = np.concatenate([[0], np.cumsum(nqs)]).astype(np.int32)
    q = RNG.standard_normal((int(starts[-1]), hq, d)).astype(dtype)
    out, lse = normexp.paged_attention(q, k_pages, v_pages, table, np.array(lens, np.int32), query_start=starts,
                                       sinks=sinks, return_lse=True, **kw)
    assert out.shape == (q.shape[0], hq, dv) and lse.shape == (q.shape[0], hq) and out.dtype == dtype
    ref_kw = {("alibi" if a == "alibi_slopes" else a): b for a, b in kw.items()}
    causal = ref_kw.pop("is_causal", True)
    for s, n in enumerate(nqs):
        if n == 0:
            continue
        qs = np.ascontiguousarray(q[starts[s] : starts[s + 1]].transpose(1, 0, 2))  # (Hq, n, D)
        if sinks is None:
            r_out, r_lse = reference(qs, ks[s], vs[s], is_causal=causal, alignment="bottom_right", **ref_kw)
        else:
            r_out, r_lse = reference_sinks(qs, ks[s], vs[s], sinks, is_causal=causal, alignment="bottom_right", **ref_kw)
        extra = float(np.abs(kw["alibi_slopes"]).max()) * (n + lens[s]) if kw.get("alibi_slopes") is not None else 0.0
        b_out, b_lse = _bounds(qs, ks[s], vs[s], dtype, kw.get("scale"), kw.get("softcap"), extra)
        got = out[starts[s] : starts[s + 1]].transpose(1, 0, 2)
        got_lse = lse[starts[s] : starts[s + 1]].T
        np.testing.assert_allclose(got, r_out, rtol=0, atol=b_out, err_msg=f"sequence {s}")
        assert np.array_equal(np.isneginf(got_lse), np.isneginf(r_lse)), f"sequence {s}: rows without keys differ"
        fin = np.isfinite(r_lse)
        tol = b_lse + 4 * np.finfo(dtype).eps * float(np.abs(r_lse[fin]).max(initial=0))
        np.testing.assert_allclose(got_lse[fin], r_lse[fin], rtol=0, atol=tol, err_msg=f"sequence {s}")
    return out, lse


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("page_size", [1, 5, 16, 48])
def test_batch_matches_reference(isa, dtype, page_size):
    # decodes, a sequence without new queries, a long prefill, lengths 1 and one past a page
    lens = [1, page_size + 1, 300, 777, 150, 2, 1000]
    nqs = [1, 1, 0, 130, 1, 2, 1]
    check_paged(lens, nqs, page_size, 4, 2, 16, 12, dtype)


@pytest.mark.parametrize("hq,hk", [(1, 1), (4, 4), (8, 2), (6, 1), (12, 4)])
def test_gqa_ratios(isa, hq, hk):
    check_paged([700, 33, 1], [1, 5, 1], 16, hq, hk, 24, 24)


@pytest.mark.parametrize(
    "kw",
    [
        dict(is_causal=False),
        dict(window=37),
        dict(window=1),
        dict(softcap=3.0, scale=0.7),
        dict(alibi_slopes=np.linspace(0.05, 0.4, 4)),
        dict(window=100, softcap=20.0, alibi_slopes=[0.1, 0.2, 0.3, 0.4]),
    ],
)
def test_options(isa, kw):
    check_paged([1, 17, 300, 900], [1, 17, 40, 1], 7, 4, 2, 16, 16, **kw)


def test_sinks(isa):
    sinks = RNG.standard_normal(4) * 2
    check_paged([1, 17, 300, 900, 5], [1, 17, 40, 1, 0], 16, 4, 2, 16, 8, sinks=sinks)
    check_paged([1, 600], [1, 1], 16, 4, 2, 16, 8, sinks=sinks, window=50, alibi_slopes=[0.1, 0.2, 0.3, 0.4])
    # -inf sinks change no bit; a dominating sink drives the output to 0 with lse = sink.
    k_pages, v_pages, table, _, _ = make_cache([40, 900], 16, 2, 16, 8)
    q = RNG.standard_normal((2, 4, 16)).astype(np.float32)
    lens = np.array([40, 900], np.int32)
    o1, l1 = normexp.paged_attention(q, k_pages, v_pages, table, lens, return_lse=True)
    o2, l2 = normexp.paged_attention(q, k_pages, v_pages, table, lens, return_lse=True, sinks=np.full(4, -np.inf))
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(l1, l2)
    o3, l3 = normexp.paged_attention(q, k_pages, v_pages, table, lens, return_lse=True, sinks=[1e30, 0, 0, 0])
    assert np.all(o3[:, 0] == 0) and np.all(l3[:, 0] == np.float32(1e30))
    assert not np.array_equal(o3[:, 1], o1[:, 1])  # a finite sink does change the other heads' results


def test_sequences_without_keys_or_queries(isa):
    k_pages, v_pages, table, _, _ = make_cache([0, 5, 0], 4, 1, 8, 8)
    q = RNG.standard_normal((4, 2, 8)).astype(np.float32)
    starts = np.array([0, 2, 3, 4], np.int32)
    out, lse = normexp.paged_attention(q, k_pages, v_pages, table, [0, 5, 0], query_start=starts, return_lse=True,
                                       sinks=[0.5, -np.inf])
    assert np.all(out[[0, 1, 3]] == 0)
    np.testing.assert_array_equal(lse[[0, 1, 3], 0], np.float32(0.5))
    assert np.all(np.isneginf(lse[[0, 1, 3], 1]))
    assert np.all(np.isfinite(lse[2])) and np.any(out[2] != 0)
    # No queries at all, and no sequences at all.
    empty = normexp.paged_attention(q[:0], k_pages, v_pages, table, [0, 5, 0], query_start=[0, 0, 0, 0])
    assert empty.shape == (0, 2, 8)
    none = normexp.paged_attention(q[:0], k_pages, v_pages, table[:0], np.zeros(0, np.int32))
    assert none.shape == (0, 2, 8)


@pytest.mark.parametrize(
    "nq,length,page_size,hq,hk",
    # decode direct path (page sizes multiple of 4), split keys, GQA grouped rows; prefill (packed K^T,
    # any page size, the causal diagonal); one query row against a few keys; a prefill whose last query
    # block has 2 rows (read in place, gathered where the window starts it off a four-key group)
    [(1, 2100, 16, 4, 4), (1, 5000, 4, 8, 2), (1, 3000, 5, 1, 1), (3, 999, 7, 2, 2), (200, 700, 5, 2, 1),
     (37, 400, 3, 4, 2), (130, 130, 7, 2, 2), (1, 3, 4, 2, 1), (1, 600, 16, 8, 1), (1, 2000, 128, 16, 4),
     (98, 500, 16, 2, 2), (1, 900, 16, 16, 1), (1, 333, 5, 12, 1), (1, 400, 16, 17, 1)],
)
def test_bit_identical_to_contiguous_attention(isa, nq, length, page_size, hq, hk):
    """One sequence read through its pages gives the bits of attention over the gathered keys: the key
    splits are the same; a decode (<= 4 query rows, or up to 16 heads of a grouped step) gathers each key
    block from its pages and runs the contiguous kernels on it, and a prefill's block of page segments runs
    the same FMA chains on the SIMD sets."""
    d, dv = 32, 16
    for opts in (dict(), dict(window=333, softcap=10.0, sinks=[0.3] * hq)):
        k_pages, v_pages, table, ks, vs = make_cache([length], page_size, hk, d, dv)
        q = RNG.standard_normal((nq, hq, d)).astype(np.float32)
        out, lse = normexp.paged_attention(q, k_pages, v_pages, table, [length], query_start=[0, nq],
                                           return_lse=True, **opts)
        want, want_lse = normexp.attention(q.transpose(1, 0, 2), ks[0], vs[0], is_causal=True,
                                           causal_alignment="bottom_right", return_lse=True, **opts)
        np.testing.assert_array_equal(lse, want_lse.T)
        # Query rows per task: a one-query step of a grouped head takes the group's heads together, and reads
        # the key rows in place (a decode) up to 16 of them; other tasks up to 4 rows.
        grouped = nq == 1 and hq > hk
        rows = hq // hk if grouped else nq
        if isa == "scalar" and rows > (16 if grouped else 4):
            # The scalar specification's pv accumulates each call in double and rounds once per call, so a
            # block of several page segments that is not read as a decode (K^T packed per segment) rounds once
            # per segment: a few float32 ulps, not the bits.
            np.testing.assert_allclose(out, want.transpose(1, 0, 2), rtol=0, atol=8 * np.finfo(np.float32).eps)
        else:
            np.testing.assert_array_equal(out, want.transpose(1, 0, 2))


def test_thread_counts():
    lens = [16000, 2000, 5, 9000, 1, 3000]
    nqs = [1, 1, 3, 1, 1, 150]
    k_pages, v_pages, table, _, _ = make_cache(lens, 16, 2, 64, 64)
    starts = np.concatenate([[0], np.cumsum(nqs)]).astype(np.int32)
    q = RNG.standard_normal((int(starts[-1]), 8, 64)).astype(np.float32)
    same_for_thread_counts(lambda: normexp.paged_attention(q, k_pages, v_pages, table, lens, query_start=starts,
                                                           return_lse=True, sinks=np.linspace(-1, 1, 8)))


def test_out_strides_dtypes_and_tensors():
    k_pages, v_pages, table, _, _ = make_cache([50, 9], 8, 2, 16, 16, np.float64)
    q = RNG.standard_normal((2, 4, 16))
    want = normexp.paged_attention(q, k_pages, v_pages, table, [50, 9])
    out = np.full((2, 4, 16), np.nan)
    assert normexp.paged_attention(q, k_pages, v_pages, table, [50, 9], out=out) is out
    np.testing.assert_array_equal(out, want)
    # (num_pages, heads, page_size, dim) pools seen through swapaxes, strided q: read in place, same bits.
    kt = np.ascontiguousarray(k_pages.swapaxes(1, 2)).swapaxes(1, 2)
    vt = np.ascontiguousarray(v_pages.swapaxes(1, 2)).swapaxes(1, 2)
    qt = np.ascontiguousarray(q.swapaxes(0, 1)).swapaxes(0, 1)
    np.testing.assert_array_equal(normexp.paged_attention(qt, kt, vt, table, [50, 9]), want)
    # Reversed heads (a negative head stride: the decode's rows of all heads are packed per task).
    qr = q[:, ::-1]
    np.testing.assert_array_equal(normexp.paged_attention(qr, k_pages, v_pages, table, [50, 9]),
                                  normexp.paged_attention(np.ascontiguousarray(qr), k_pages, v_pages, table, [50, 9]))
    # Integer tables of any integer dtype.
    np.testing.assert_array_equal(normexp.paged_attention(q, k_pages, v_pages, table.astype(np.int64),
                                                          np.array([50, 9], np.uint16)), want)
    torch = pytest.importorskip("torch")
    t = normexp.paged_attention(torch.from_numpy(q), torch.from_numpy(k_pages), torch.from_numpy(v_pages),
                                torch.from_numpy(table), torch.tensor([50, 9], dtype=torch.int32))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), want)


# ---- validation --------------------------------------------------------------------------------------------
def _valid():
    k_pages, v_pages, table, _, _ = make_cache([10, 3, 20], 4, 2, 8, 8)
    return dict(q=RNG.standard_normal((5, 4, 8)).astype(np.float32), k_pages=k_pages, v_pages=v_pages,
                block_table=table, seq_lens=np.array([10, 3, 20], np.int32),
                query_start=np.array([0, 2, 2, 5], np.int32))


@pytest.mark.parametrize(
    "change,exc,words",
    [
        (lambda a: a["block_table"].__setitem__((2, 4), 99), IndexError, ("block_table[2, 4] = 99", "sequence 2")),
        (lambda a: a["block_table"].__setitem__((0, 0), -1), IndexError, ("block_table[0, 0] = -1", "sequence 0")),
        (lambda a: a["seq_lens"].__setitem__(1, -3), ValueError, ("seq_lens[1]", "sequence 1")),
        (lambda a: a["seq_lens"].__setitem__(2, 40), ValueError, ("seq_lens[2] = 40", "sequence 2", "columns")),
        (lambda a: a["query_start"].__setitem__(0, 1), ValueError, ("query_start[0]",)),
        (lambda a: a["query_start"].__setitem__(3, 4), ValueError, ("query_start[3]",)),
        (lambda a: a["query_start"].__setitem__(1, 3), ValueError, ("non-decreasing", "sequence 1")),
        (lambda a: a.__setitem__("query_start", a["query_start"][:3]), ValueError, ("query_start", "4 entries")),
        (lambda a: a.__setitem__("seq_lens", a["seq_lens"][:2]), ValueError, ("block_table", "seq_lens")),
        (lambda a: a.__setitem__("block_table", a["block_table"].astype(np.float32)), TypeError, ("block_table",)),
        (lambda a: a.__setitem__("seq_lens", np.array([10, 3, 2**40])), ValueError, ("seq_lens[2] = 1099511627776", "int32")),
        (lambda a: a.__setitem__("q", a["q"][:, :3]), ValueError, ("heads",)),
        (lambda a: a.__setitem__("q", a["q"][..., :5]), ValueError, ("head_dim",)),
        (lambda a: a.__setitem__("v_pages", a["v_pages"][:2]), ValueError, ("v_pages",)),
        (lambda a: a.__setitem__("k_pages", a["k_pages"].astype(np.float64)), TypeError, ("dtype",)),
        (lambda a: a.__setitem__("q", a["q"][0]), ValueError, ("q", "3 dimensions")),
        (lambda a: a.__setitem__("query_start", None), ValueError, ("query_start", "one new query")),
        (lambda a: a.__setitem__("sinks", [0.0, 1.0]), ValueError, ("sinks",)),
        (lambda a: a.__setitem__("alibi_slopes", [np.inf] * 4), ValueError, ("alibi_slopes",)),
        (lambda a: a.__setitem__("window", 0), ValueError, ("window",)),
        (lambda a: a.__setitem__("out", np.zeros((5, 4, 7), np.float32)), ValueError, ("out",)),
    ],
)
def test_bad_arguments(change, exc, words):
    a = _valid()
    change(a)
    with pytest.raises(exc) as e:
        normexp.paged_attention(**a)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_unused_table_entries_may_hold_anything():
    """Entries past a sequence's pages are never read, whatever their integer type holds (an unsigned table's
    0xFFFFFFFF padding, int64 beyond int32); a used entry beyond int32 is refused and named like any other."""
    a = _valid()
    want = normexp.paged_attention(**a)
    need = (a["seq_lens"] + 3) // 4  # pages of 4 keys
    assert (need < a["block_table"].shape[1]).all()
    for dtype, pad in ((np.uint32, 0xFFFFFFFF), (np.int64, 2**40), (np.uint64, 2**64 - 1), (np.int16, -7)):
        t = a["block_table"].astype(dtype)
        for s, n in enumerate(need):
            t[s, n:] = pad
        np.testing.assert_array_equal(normexp.paged_attention(**dict(a, block_table=t)), want)
        np.testing.assert_array_equal(normexp.paged_attention(**dict(a, block_table=np.asfortranarray(t))), want)
        t[1, 0] = pad
        with pytest.raises(IndexError, match=rf"block_table\[1, 0\] = {pad}: page 0 of sequence 1"):
            normexp.paged_attention(**dict(a, block_table=t))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.int8])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_bad_page_is_an_index_error_and_a_value_error(dtype, layout):
    """A page index outside the pool raises one exception class with one message, whether the library checks
    it (int32 tables, and tables converted to int32) or Python does before the conversion (a value beyond
    int32): an IndexError that is also a ValueError, naming the entry, the sequence and the pool."""
    a = _valid()
    npages = a["k_pages"].shape[0]
    values = [-1, npages] + ([2**40] if dtype == np.int64 else [2**32 - 1] if dtype == np.uint32 else [])
    for v in values:
        if v < 0 and np.dtype(dtype).kind == "u":
            continue
        t = a["block_table"].astype(dtype)
        t[2, 3] = v
        t = np.asfortranarray(t) if layout == "F" else t
        with pytest.raises(IndexError) as e:
            normexp.paged_attention(**dict(a, block_table=t))
        assert isinstance(e.value, ValueError)
        assert type(e.value) is _core.NormexpIndexError
        assert str(e.value) == (f"normexp.paged_attention: block_table[2, 3] = {v}: page 3 of sequence 2 is not a "
                                f"page of the pool (k_pages has {npages} pages)")


@pytest.mark.parametrize("shape", ["no queries", "no query heads", "no value columns", "no sequences"])
def test_bad_table_refused_when_nothing_is_written(shape):
    """The library's checks run whatever the output's size: a table, length or offset that would be refused
    with queries to answer is refused without them too (it once returned an empty result unchecked)."""
    rng = np.random.default_rng(3)
    k = rng.standard_normal((4, 4, 2, 8)).astype(np.float32)
    v, q, starts = k, rng.standard_normal((2, 2, 8)).astype(np.float32), np.array([0, 1, 2], np.int32)
    if shape == "no queries":
        q, starts = q[:0], np.array([0, 0, 0], np.int32)
    elif shape == "no query heads":
        q, k, v = q[:, :0], k[:, :, :1], k[:, :, :1]
    elif shape == "no value columns":
        v = k[..., :0]
    if shape == "no sequences":
        with pytest.raises(ValueError, match=r"query_start\[0\] must be 0, got 3"):
            normexp.paged_attention(q[:0], k, v, np.zeros((0, 1), np.int32), np.zeros(0, np.int32),
                                    query_start=np.array([3], np.int32))
        return
    good = dict(block_table=np.array([[0], [1]], np.int32), seq_lens=np.array([1, 4], np.int32), query_start=starts)
    normexp.paged_attention(q, k, v, **good)
    for lse in (False, True):
        for bad, exc, words in (
            (dict(block_table=np.array([[0], [99]], np.int32)), IndexError, "block_table[1, 0] = 99"),
            (dict(seq_lens=np.array([-5, 4], np.int32)), ValueError, "seq_lens[0] = -5"),
            (dict(seq_lens=np.array([1, 40], np.int32)), ValueError, "seq_lens[1] = 40"),
            (dict(query_start=np.array([0, 3, 0], np.int32)), ValueError, "non-decreasing"),
        ):
            with pytest.raises(exc) as e:
                normexp.paged_attention(q, k, v, **dict(good, **bad), return_lse=lse)
            assert words in str(e.value)


@pytest.mark.parametrize("threads", [1, 2])
def test_out_over_the_table(threads):
    """out may share memory with the block table (an int32 view of it here): the library reads the table
    entries it checked, copied before any output is written, never the memory out has overwritten (this
    read pages far outside the pool, and crashed)."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((4, 1, 1, 64)).astype(np.float32)
    v = rng.standard_normal((4, 1, 1, 64)).astype(np.float32)
    nseq = 64
    out = np.zeros((nseq + 1, 1, 64), np.float32)  # sequence 0's two queries: rows 0, 1; sequence s >= 1: row s + 1
    table = out[:nseq].view(np.int32).reshape(nseq, 64)  # every sequence's 64 keys on page 0 (one key a page)
    assert table.flags.c_contiguous and not table.any()
    k_one = np.ascontiguousarray(np.broadcast_to(k[:1], (4, 1, 1, 64)))  # page 0 everywhere in the reference
    v_one = np.ascontiguousarray(np.broadcast_to(v[:1], (4, 1, 1, 64)))
    lens = np.full(nseq, 64, np.int32)
    starts = np.concatenate([[0], np.arange(2, nseq + 2)]).astype(np.int32)
    q = rng.standard_normal((nseq + 1, 1, 64)).astype(np.float32)
    want = normexp.paged_attention(q, k_one, v_one, np.zeros((nseq, 64), np.int32), lens, query_start=starts)
    old = normexp.get_num_threads()
    try:
        normexp.set_num_threads(threads)
        r = normexp.paged_attention(q, k, v, table, lens, query_start=starts, out=out)
    finally:
        normexp.set_num_threads(old)
    assert r is out
    np.testing.assert_array_equal(out, want)


def _core_call(a):
    """_core.paged_attention without Python's checks: the library's own validation must refuse the table."""
    q = a["q"]
    out = np.zeros((q.shape[0], q.shape[1], a["v_pages"].shape[3]), q.dtype)
    _core.paged_attention(q, a["k_pages"], a["v_pages"], a["block_table"], a["seq_lens"], a["query_start"], out,
                          None, is_causal=True, scale=0.0, window=0, softcap=0.0, alibi=None, sinks=None)
    return out


def test_table_fuzz():
    """Random corruptions of a valid table: Python raises IndexError/ValueError naming the sequence, and the
    library refuses the same table on its own (ValueError from normexp::error), before writing out."""
    rng = np.random.default_rng(7)
    base = _valid()
    _core_call(base)  # the valid table passes both layers
    refused = 0
    for trial in range(300):
        a = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in base.items()}
        what = rng.integers(4)
        if what == 0:  # a page index anywhere in the used part or beyond it
            s = int(rng.integers(3))
            j = int(rng.integers(a["block_table"].shape[1]))
            a["block_table"][s, j] = int(rng.choice([-(2**31), -1, 13, 14, 2**31 - 1, int(rng.integers(-5, 20))]))
        elif what == 1:
            a["seq_lens"][int(rng.integers(3))] = int(rng.integers(-3, 40))
        elif what == 2:
            a["query_start"][int(rng.integers(4))] = int(rng.integers(-2, 8))
        else:
            a["block_table"] = np.ascontiguousarray(rng.integers(-2, 16, a["block_table"].shape).astype(np.int32))
        try:
            want = normexp.paged_attention(**a)
        except (IndexError, ValueError) as e:
            refused += 1
            assert "sequence" in str(e) or "query_start" in str(e), str(e)
            with pytest.raises(ValueError, match="normexp.paged_attention"):
                _core_call(a)
            continue
        np.testing.assert_array_equal(_core_call(a), want)
    assert 30 < refused < 300  # both outcomes occur (the fuzz is not vacuous)


def _bf16():
    return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)


@pytest.mark.parametrize("combo", ["f16", "bf16", "f32q-f16", "f32q-bf16"])
@pytest.mark.parametrize("nq,length,page_size,hq,hk", [(1, 2100, 16, 8, 2), (1, 37, 5, 2, 2), (40, 300, 7, 4, 2),
                                                      (1, 1000, 16, 16, 2), (1, 500, 6, 12, 1)])
def test_16bit_pages_match_contiguous_attention(isa, combo, nq, length, page_size, hq, hk):
    """16-bit pages (and float32 q over them) are read in place like contiguous 16-bit K/V: one sequence
    gives the bits of normexp.attention over its gathered 16-bit keys (decode on every set; a prefill on the
    SIMD sets, the scalar one rounding P V once per page segment), lse float32, out in q's dtype."""
    kv = np.dtype(np.float16) if combo.endswith("f16") and not combo.endswith("bf16") else _bf16()
    qd = np.dtype(np.float32) if combo.startswith("f32q") else kv
    d, dv = 32, 16
    k_pages, v_pages, table, ks, vs = make_cache([length], page_size, hk, d, dv)
    k_pages, v_pages = k_pages.astype(kv), v_pages.astype(kv)
    ks = [k.astype(kv) for k in ks]
    vs = [v.astype(kv) for v in vs]
    q = RNG.standard_normal((nq, hq, d)).astype(qd)
    opts = dict(window=200, softcap=10.0, sinks=[0.3] * hq)
    out, lse = normexp.paged_attention(q, k_pages, v_pages, table, [length], query_start=[0, nq], return_lse=True,
                                       **opts)
    want, want_lse = normexp.attention(q.transpose(1, 0, 2), ks[0], vs[0], is_causal=True,
                                       causal_alignment="bottom_right", return_lse=True, **opts)
    assert out.dtype == qd and lse.dtype == np.float32
    np.testing.assert_array_equal(lse, want_lse.T)
    got, ref = out.astype(np.float64), want.transpose(1, 0, 2).astype(np.float64)
    if isa == "scalar" and nq > 4:
        # float32 accumulation rounded per segment, then the output's own rounding: within 2 ulps of q's dtype.
        rtol = {np.dtype(np.float32): 2 ** -22, np.dtype(np.float16): 2 ** -9}.get(qd, 2 ** -7)
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, ref)


def test_16bit_pages_batch_and_errors():
    """A ragged batch on bfloat16 pages against per-sequence attention (to the bfloat16 output's rounding);
    mixed page dtypes and float16 q over bfloat16 pages are refused naming the combinations."""
    bf = _bf16()
    lens, nqs = [700, 1, 40, 9], [1, 0, 5, 1]
    k_pages, v_pages, table, ks, vs = make_cache(lens, 16, 2, 32, 32)
    k_pages, v_pages = k_pages.astype(bf), v_pages.astype(bf)
    starts = np.concatenate([[0], np.cumsum(nqs)]).astype(np.int32)
    q = RNG.standard_normal((int(starts[-1]), 4, 32)).astype(bf)
    out = normexp.paged_attention(q, k_pages, v_pages, table, lens, query_start=starts)
    assert out.dtype == bf
    for s, n in enumerate(nqs):
        if n == 0:
            continue
        want = normexp.attention(q[starts[s]:starts[s + 1]].transpose(1, 0, 2), ks[s].astype(bf), vs[s].astype(bf),
                                 is_causal=True, causal_alignment="bottom_right")
        np.testing.assert_allclose(out[starts[s]:starts[s + 1]].astype(np.float64),
                                   want.transpose(1, 0, 2).astype(np.float64), rtol=2 ** -7, atol=1e-6)
    with pytest.raises(TypeError, match="float32 q with float16 or bfloat16"):
        normexp.paged_attention(q.astype(np.float16), k_pages, v_pages, table, lens, query_start=starts)
    with pytest.raises(TypeError, match="float32 q with float16 or bfloat16"):
        normexp.paged_attention(q.astype(np.float32), k_pages, v_pages.astype(np.float16), table, lens,
                                query_start=starts)
