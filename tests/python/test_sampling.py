"""normexp.sample / cross_entropy / fit_temperature / calibration_error.

Statistical tests: every chi-square test below uses a fixed seed, so its outcome is deterministic (the
tokens are identical on every ISA and thread count, which is itself tested). The significance level is
alpha = 1e-3: with the seed fixed the test cannot be flaky, and a real defect in the cuts or the
weights (a token kept that should be cut, a temperature applied twice, an off-by-one in the inverse CDF)
moves the p-value far below alpha at these sample sizes, as the negative controls show (p < 1e-6 for
distributions that differ by a 10% temperature change or 10% of one token's probability).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import normexp

ALPHA = 1e-3
ISAS = normexp.available_isas()


@pytest.fixture(params=ISAS)
def each_isa(request):
    with normexp.use_isa(request.param):
        yield request.param


# ---- a float64 reference of the documented sampler ----------------------------------------------------
def reference_probs(logits, temperature=1.0, top_k=None, top_p=None, min_p=None):
    """The distribution sample() must follow, per the docstring, in float64 (one row)."""
    x = np.asarray(logits, dtype=np.float64)
    z = (x - x.max()) / temperature
    w = np.exp(z)
    keep = np.ones(x.shape, bool)
    if top_k is not None and top_k < x.size:
        kth = np.sort(x)[::-1][top_k - 1]
        keep &= x >= kth
    if top_p is not None and top_p < 1:
        q = np.where(keep, w, 0.0)
        q = q / q.sum()
        order = np.argsort(-q, kind="stable")
        cum = np.cumsum(q[order])
        n_keep = int(np.searchsorted(cum, top_p * (1 - 1e-12))) + 1
        keep &= q >= q[order][n_keep - 1]
    if min_p is not None and min_p > 0:
        keep &= w >= min_p  # w / w.max() with w.max() == 1
    p = np.where(keep, w, 0.0)
    return p / p.sum(), keep


def chi_square_p(counts, probs):
    """p-value of a chi-square goodness-of-fit test, merging the categories with expected count < 5."""
    n = counts.sum()
    exp = probs * n
    order = np.argsort(exp)
    c, e = counts[order].astype(float), exp[order]
    # Merge the smallest expectations into one bin until it reaches 5.
    small = np.cumsum(e) < 5
    k = int(small.sum())
    if k:
        c = np.concatenate([[c[: k + 1].sum()], c[k + 1 :]])
        e = np.concatenate([[e[: k + 1].sum()], e[k + 1 :]])
    return stats.chisquare(c, e).pvalue


def draw(logits, n, seed, **kw):
    """n independent draws from one row: the row repeated n times, one call."""
    batch = np.broadcast_to(np.asarray(logits), (n, len(logits)))
    return normexp.sample(batch, rng=seed, **kw)


def logits_row(seed, v=40, scale=2.0, dtype=np.float64):
    return (np.random.default_rng(seed).standard_normal(v) * scale).astype(dtype)


CASES = [
    dict(),
    dict(temperature=0.7),
    dict(temperature=1.8),
    dict(top_k=7),
    dict(top_p=0.8),
    dict(min_p=0.05),
    dict(temperature=1.3, top_k=12, top_p=0.9),
    dict(temperature=0.8, top_k=20, top_p=0.95, min_p=0.02),
    dict(top_k=35, top_p=0.7),  # top_k above kListMaxK? no: list path; large-k path tested below
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", CASES, ids=[str(c) for c in CASES])
def test_distribution_matches_softmax_after_cuts(kw, dtype):
    x = logits_row(1, dtype=dtype)
    n = 40_000
    tok = draw(x, n, seed=123, **kw)
    p, keep = reference_probs(x, **kw)
    counts = np.bincount(tok, minlength=x.size)
    assert counts[~keep].sum() == 0, "a token outside the kept set was sampled"
    assert chi_square_p(counts[keep], p[keep]) > ALPHA


def test_large_vocab_block_path_and_large_k():
    """Vocabulary of 5000 with the block inverse CDF (no top_k) and a top_k above the list limit (4096)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(5000) * 1.5
    x[:10] += 6  # a few dominant tokens so counts per category are large
    for kw in (dict(), dict(top_k=4500, top_p=0.6), dict(min_p=0.01), dict(top_k=4500), dict(top_k=20, top_p=0.95)):
        tok = draw(x, 12_000, seed=5, **kw)
        p, keep = reference_probs(x, **kw)
        counts = np.bincount(tok, minlength=x.size)
        assert counts[~keep].sum() == 0
        assert chi_square_p(counts[keep], p[keep]) > ALPHA, kw


@pytest.mark.parametrize("arrangement", ["random", "ascending", "descending", "ties", "neg_inf"])
@pytest.mark.parametrize("k", [1, 5, 50, 400])
def test_top_k_set_is_exact(arrangement, k, each_isa):
    """The kept set is exactly {x >= k-th largest}, however the large entries are placed (the streaming
    selection starts from block maxima, which is weakest when the top entries share a block)."""
    rng = np.random.default_rng(k)
    x = rng.standard_normal(5000).astype(np.float32)
    if arrangement == "ascending":
        x.sort()
    elif arrangement == "descending":
        x[::-1].sort()
    elif arrangement == "ties":
        x = np.round(x * 2).astype(np.float32)
    elif arrangement == "neg_inf":
        x[rng.choice(5000, 4990, replace=False)] = -np.inf
    kth = np.sort(x)[::-1][k - 1]
    allowed = np.flatnonzero((x >= kth) & np.isfinite(x))
    tok = draw(x, 4000, seed=3, top_k=k, temperature=1000.0)  # ~uniform over the kept set
    got = np.unique(tok)
    assert set(got) <= set(allowed)
    if allowed.size <= 50:  # 4000 near-uniform draws miss one of <= 50 tokens with probability < 1e-30
        np.testing.assert_array_equal(got, allowed)


def test_negative_controls_detect_wrong_distributions():
    """The chi-square test has power: a 10% temperature error or one token's probability moved is caught."""
    x = logits_row(1)
    counts = np.bincount(draw(x, 40_000, seed=123), minlength=x.size)
    p_wrong_t, _ = reference_probs(x, temperature=1.1)
    assert chi_square_p(counts, p_wrong_t) < 1e-12
    p, _ = reference_probs(x)
    moved = p.copy()
    top = np.argmax(p)
    moved[top] *= 0.9
    moved /= moved.sum()
    assert chi_square_p(counts, moved) < 1e-6


def test_greedy_is_argmax_lowest_index_on_ties(each_isa):
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((6, 7, 1001)).astype(dtype)
        np.testing.assert_array_equal(normexp.sample(x, temperature=0), np.argmax(x, axis=-1))
        t = np.round(rng.standard_normal((50, 33))).astype(dtype)  # many ties at the max
        t[3] = 0
        t[4, [5, 9, 30]] = 100
        got = normexp.sample(t, temperature=0, top_k=3, top_p=0.1)
        np.testing.assert_array_equal(got, np.argmax(t, axis=-1))  # np.argmax returns the first maximum
        assert got[3] == 0 and got[4] == 5


def test_ties_at_the_top_k_boundary_are_kept():
    x = np.array([5.0, 3.0, 3.0, 3.0, 1.0, -2.0])
    tok = draw(x, 20_000, seed=11, top_k=2)
    counts = np.bincount(tok, minlength=x.size)
    assert counts[4:].sum() == 0 and (counts[:4] > 0).all()
    p, keep = reference_probs(x, top_k=2)
    np.testing.assert_array_equal(keep, [True, True, True, True, False, False])
    assert chi_square_p(counts[:4], p[:4]) > ALPHA
    # all equal: uniform
    tok = draw(np.zeros(10), 20_000, seed=2, top_k=1)
    assert chi_square_p(np.bincount(tok, minlength=10), np.full(10, 0.1)) > ALPHA


def test_top_p_keeps_the_smallest_set():
    x = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    # p = 0.75: 0.5 alone is short, 0.5 + 0.3 reaches it -> {0, 1}
    tok = draw(x, 5000, seed=1, top_p=0.75)
    assert set(np.unique(tok)) == {0, 1}
    tok = draw(x, 5000, seed=1, top_p=0.5)  # 0.5 reaches 0.5 exactly (up to float32 weights): {0} or {0,1}
    assert 0 in tok and set(np.unique(tok)) <= {0, 1}
    tok = draw(x, 5000, seed=1, top_p=0.4)
    assert set(np.unique(tok)) == {0}
    tok = draw(x, 5000, seed=1, min_p=0.5)  # >= 0.25: {0, 1}
    assert set(np.unique(tok)) == {0, 1}


def test_masked_tokens_are_never_sampled():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, 300))
    x[:, ::2] = -np.inf
    for kw in (dict(), dict(top_k=5), dict(top_p=0.9), dict(top_k=250)):
        tok = normexp.sample(x, rng=0, **kw)
        assert (tok % 2 == 1).all()


@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.6, top_k=40), dict(top_p=0.9), dict(min_p=0.05),
                                dict(temperature=1.4, top_k=50, top_p=0.95, min_p=0.01), dict(top_k=6000, top_p=0.8),
                                dict(temperature=0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_tokens_on_every_isa_and_thread_count(kw, dtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((12, 32000)) * 3).astype(dtype)  # 384k elements: threaded when allowed
    results = []
    old = normexp.get_num_threads()
    try:
        for isa in ISAS:
            for threads in (1, 2, 4):
                normexp.set_num_threads(threads)
                with normexp.use_isa(isa):
                    results.append(normexp.sample(x, rng=2024, **kw))
    finally:
        normexp.set_num_threads(0 if old >= 1 else old)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("kw", [dict(), dict(top_k=3), dict(top_k=300), dict(top_p=0.999), dict(min_p=1e-4),
                                dict(logit_bias={1: 0.0}), dict(presence_penalty=1.0)])
def test_float32_rows_whose_span_overflows_under_a_huge_temperature(kw, each_isa):
    """Finite float32 logits spanning more than float32's range (x - max overflows to -inf for the lowest)
    under a temperature so large that those entries keep a weight (here exp(-6)): sampled as their float64
    values are, token for token and logprob for logprob, instead of with those weights zeroed (the old
    result: token 1 never drawn)."""
    kw = dict(kw)
    if "logit_bias" in kw:
        kw["logit_bias"] = np.zeros(5, np.float32)
    if "presence_penalty" in kw:
        kw["prev_tokens"] = np.full((4000, 1), 4)
    row = np.array([3e38, -3e38, 0.0, 1e38, -1e38], np.float32)
    x32 = np.broadcast_to(row, (4000, 5))
    x64 = x32.astype(np.float64)
    for threads in (1, 2):
        old = normexp.get_num_threads()
        normexp.set_num_threads(threads)
        try:
            t32, lp32 = normexp.sample(x32, temperature=1e38, rng=5, return_logprobs=True, **kw)
            t64, lp64 = normexp.sample(x64, temperature=1e38, rng=5, return_logprobs=True, **kw)
        finally:
            normexp.set_num_threads(0 if old >= 1 else old)
        np.testing.assert_array_equal(t32, t64)
        np.testing.assert_array_equal(lp32, lp64.astype(np.float32))  # logprobs come in the logits dtype
    if "top_k" not in kw or kw["top_k"] > 3:
        p1 = math.exp(-6) / (1 + math.exp(-6) + math.exp(-3) + math.exp(-2) + math.exp(-4))
        assert 0 < (t32 == 1).sum() < 4000 * p1 * 3  # expected ~9 of 4000
    # Per-row temperatures: the even rows at 1e38 (sampled as float64), the odd ones at 1.
    temps = np.where(np.arange(4000) % 2 == 0, 1e38, 1.0)
    a = normexp.sample(x32, temperature=temps, rng=6)
    b = normexp.sample(x64, temperature=temps, rng=6)
    np.testing.assert_array_equal(a[::2], b[::2])
    assert (a[1::2] == 0).all()  # temperature 1: the maximum by e^(1e38) to 1


def test_top_k_at_or_above_vocab_keeps_everything():
    x = logits_row(9, v=30)
    base = normexp.sample(np.broadcast_to(x, (500, 30)), rng=4)
    for k in (30, 31, 10**30):
        np.testing.assert_array_equal(normexp.sample(np.broadcast_to(x, (500, 30)), rng=4, top_k=k), base)


@pytest.mark.parametrize("kw", [dict(), dict(top_k=40), dict(top_k=40, top_p=0.9), dict(top_p=0.9), dict(min_p=0.02),
                                dict(top_k=5000, top_p=0.5), dict(temperature=0)])
def test_single_row_split_over_threads_gives_the_same_tokens(kw):
    """Batch 1 with a long row: the passes are split over threads (chunk-parallel); tokens must not
    change with the thread count or the ISA. Many seeds, so many different uniforms are exercised."""
    rng = np.random.default_rng(21)
    x = (rng.standard_normal((1, 150_000)) * 2.5).astype(np.float32)
    x[0, rng.choice(150_000, 15, replace=False)] += 9
    old = normexp.get_num_threads()
    try:
        ref = None
        for isa in ISAS:
            for threads in (1, 2, 3):
                normexp.set_num_threads(threads)
                with normexp.use_isa(isa):
                    got = [int(normexp.sample(x, rng=seed, **kw)[0]) for seed in range(15)]
                if ref is None:
                    ref = got
                assert got == ref, (isa, threads)
    finally:
        normexp.set_num_threads(0 if old >= 1 else old)
    if "top_k" in kw and kw["top_k"] <= 40:  # every token is one of the 40 largest
        assert set(ref) <= set(np.argsort(-x[0])[:40].tolist())


def test_rng_forms_and_reproducibility():
    x = logits_row(5, v=100)
    batch = np.broadcast_to(x, (64, 100))
    a = normexp.sample(batch, rng=7)
    b = normexp.sample(batch, rng=np.random.default_rng(7))
    c = normexp.sample(batch, rng=np.int64(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    g = np.random.default_rng(7)
    first, second = normexp.sample(batch, rng=g), normexp.sample(batch, rng=g)
    np.testing.assert_array_equal(first, a)
    assert not np.array_equal(first, second)  # the generator advanced (64 draws agreeing: p ~ 1e-30)
    # one uniform per row: the second call equals rows 64..127 of one call of 128 rows
    both = normexp.sample(np.broadcast_to(x, (128, 100)), rng=7)
    np.testing.assert_array_equal(both[64:], second)
    # greedy does not consume the generator
    g = np.random.default_rng(7)
    normexp.sample(batch, temperature=0, rng=g)
    np.testing.assert_array_equal(normexp.sample(batch, rng=g), a)
    # rng=None works (fresh entropy)
    assert normexp.sample(batch).shape == (64,)


def test_shapes_dtypes_and_layouts():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 50))
    t = normexp.sample(x, rng=1)
    assert t.shape == (3, 4) and t.dtype == np.int64
    one = normexp.sample(x[0, 0], rng=1)
    assert isinstance(one, np.int64)
    assert normexp.sample(np.zeros((0, 50)), rng=1).shape == (0,)
    # non-contiguous views give the same tokens as their contiguous copies
    big = rng.standard_normal((50, 8, 3))
    view = np.moveaxis(big, 0, -1)  # vocab axis strided
    np.testing.assert_array_equal(normexp.sample(view, rng=3), normexp.sample(np.ascontiguousarray(view), rng=3))
    sl = rng.standard_normal((10, 200))[::2, ::2]
    np.testing.assert_array_equal(normexp.sample(sl, rng=3), normexp.sample(sl.copy(), rng=3))
    # float16 / int / list inputs
    assert normexp.sample(x.astype(np.float16), temperature=0).tolist() == np.argmax(x.astype(np.float16), -1).tolist()
    assert normexp.sample([1, 5, 2], temperature=0) == 1
    ml = pytest.importorskip("ml_dtypes")
    xb = x.astype(ml.bfloat16)
    np.testing.assert_array_equal(normexp.sample(xb, temperature=0), np.argmax(xb.astype(np.float32), -1))


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(top_k=-1), ValueError, "top_k must be >= 0"),  # 0 means no cut
        (dict(top_k=-3), ValueError, "top_k must be >= 0"),
        (dict(top_k=2.5), TypeError, "top_k must be an integer"),
        (dict(top_k=True), TypeError, "top_k"),
        (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(top_p=float("nan")), ValueError, "top_p must not be NaN"),
        (dict(min_p=-0.1), ValueError, r"min_p must be in \[0, 1\]"),
        (dict(min_p=1.01), ValueError, "min_p"),
        (dict(temperature=-1.0), ValueError, "temperature must be a finite number >= 0"),
        (dict(temperature=float("inf")), ValueError, "temperature"),
        (dict(temperature="hot"), TypeError, "temperature must be a real number"),
        (dict(rng="seed"), TypeError, "rng must be a numpy.random.Generator"),
        (dict(rng=-1), ValueError, "non-negative"),
        (dict(rng=np.random.RandomState(0)), TypeError, "rng"),
    ],
)
def test_bad_options(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        normexp.sample(np.zeros((2, 5)), **kw)


def test_bad_logits(each_isa):
    x = np.random.default_rng(0).standard_normal((4, 300))
    for bad, msg in ((np.nan, "row 2 contains NaN"), (np.inf, r"row 2 contains \+inf")):
        y = x.copy()
        y[2, 177] = bad
        for kw in (dict(), dict(temperature=0), dict(top_k=5), dict(top_p=0.5)):
            with pytest.raises(ValueError, match=msg):
                normexp.sample(y, rng=0, **kw)
    y = x.copy()
    y[1] = -np.inf
    with pytest.raises(ValueError, match="row 1 is all -inf"):
        normexp.sample(y, rng=0)
    with pytest.raises(ValueError, match="vocabulary"):
        normexp.sample(np.zeros((3, 0)), rng=0)
    with pytest.raises(ValueError, match="at least one dimension"):
        normexp.sample(np.float64(1.0), rng=0)
    with pytest.raises(TypeError, match="complex"):
        normexp.sample(np.zeros(3, complex), rng=0)
    with pytest.raises(TypeError):
        normexp.sample(np.array(["a", "b"]), rng=0)


# ---- cross_entropy ------------------------------------------------------------------------------------
def ce_reference(x, y, axis=-1, ignore_index=None, label_smoothing=0.0, reduction="mean"):
    """float64 (longdouble) reference of torch.nn.functional.cross_entropy's value."""
    xl = np.moveaxis(np.asarray(x, dtype=np.longdouble), axis, -1)
    m = xl.max(-1, keepdims=True)
    e = np.exp(xl - m)
    first = np.argmax(xl, axis=-1)[..., None]
    np.put_along_axis(e, first, 0, -1)  # lse - m = log1p(sum of the others): full accuracy near certainty
    l1p = np.log1p(e.sum(-1))
    m = m[..., 0]
    yy = np.asarray(y)
    ign = np.zeros(yy.shape, bool) if ignore_index is None else yy == ignore_index
    ysafe = np.where(ign, 0, yy)
    xy = np.take_along_axis(xl, ysafe[..., None], -1)[..., 0]
    loss = (1 - label_smoothing) * ((m - xy) + l1p) + label_smoothing * ((m - xl.mean(-1)) + l1p)
    loss = np.where(ign, 0, loss)
    if reduction == "none":
        return loss.astype(np.float64)
    if reduction == "sum":
        return float(loss.sum())
    cnt = (~ign).sum()
    return float(loss.sum() / cnt) if cnt else math.nan


# Bounds: float32 per-row losses carry the kernels' exp (<= 1 ULP, 6e-8) summed into double, log1p of
# the rest near the maximum, and one final rounding to float32: 2e-6 relative is >= 10x that; float64:
# 1e-12 relative (1 ULP exp, double sums of <= 1000 terms) with the same margin.
RTOL = {np.float32: 2e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_float64_reference(dtype, each_isa):
    rng = np.random.default_rng(10)
    for shape, axis in (((64, 1000), -1), ((5, 7, 3), 1), ((4, 9, 6), 0), ((37,), 0), ((3, 20001), -1)):
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        lshape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
        y = rng.integers(0, shape[axis], lshape)
        for kw in (dict(), dict(label_smoothing=0.1), dict(ignore_index=2), dict(ignore_index=-100, label_smoothing=0.3)):
            yk = y.copy()
            if "ignore_index" in kw and yk.size > 1:
                yk.flat[::3] = kw["ignore_index"]
            for red in ("mean", "sum", "none"):
                got = normexp.cross_entropy(x, yk, axis=axis, reduction=red, **kw)
                ref = ce_reference(x, yk, axis=axis, reduction=red, **kw)
                assert np.asarray(got).dtype == dtype
                np.testing.assert_allclose(np.asarray(got, dtype=np.float64), ref, rtol=RTOL[dtype], atol=0,
                                           err_msg=f"{shape} axis={axis} {kw} {red}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_batched_rows_match_single_rows(dtype, each_isa):
    """Contiguous rows of at most one chunk take the several-rows kernel (rows_exp_sum) in batches of 64; a
    row it skips (-inf everywhere, NaN, +inf) goes through the single-row path. Every loss must be the bits of
    the single-row path, which a class axis with a stride takes: rows across batch ends, special rows among
    them, ignored rows, smoothing."""
    rng = np.random.default_rng(31)
    big = np.finfo(dtype).max / 4
    for n in (1, 2, 7, 128, 1000, 4096, 4097):
        rows = 150
        x = (rng.standard_normal((rows, n)) * 5).astype(dtype)
        y = rng.integers(0, n, rows)
        x[3, :] = -np.inf
        x[3, y[3]] = 1.5  # only the label's class finite
        if n > 1:
            x[64, y[64]] = -np.inf  # the label's score -inf: an infinite loss
            x[65, : n // 2] = big  # a huge maximum
            x[127, 0] = np.finfo(dtype).tiny / 8  # a subnormal
        y[[5, 70, 149]] = -100
        for eps in (0.0, 0.3):
            got = normexp.cross_entropy(x, y, reduction="none", ignore_index=-100, label_smoothing=eps)
            want = normexp.cross_entropy(np.asfortranarray(x), y, reduction="none", ignore_index=-100,
                                         label_smoothing=eps)
            assert np.array_equal(got, want, equal_nan=True), (n, eps)
        # Rows the kernel skips raise, naming the row, as the single-row path does.
        for bad in (np.nan, np.inf):
            xb = x.copy()
            xb[66, 0] = bad
            for arr in (xb, np.asfortranarray(xb)):
                with pytest.raises(ValueError, match=r"row 66\b"):
                    normexp.cross_entropy(arr, y, ignore_index=-100)
        xb = x.copy()
        xb[100, :] = -np.inf
        with pytest.raises(ValueError, match=r"row 100\b"):
            normexp.cross_entropy(xb, y, ignore_index=-100)


def test_cross_entropy_accuracy_near_certainty():
    """A confident correct prediction: loss ~ exp(-30) keeps its relative accuracy (log1p of the rest)."""
    x = np.array([[30.0, 0.0, -1.0]], dtype=np.float32)
    got = normexp.cross_entropy(x, [0], reduction="none")
    ref = ce_reference(x, [0], reduction="none")
    np.testing.assert_allclose(got, ref, rtol=2e-6)
    assert got[0] > 0


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(12)
    for dtype, rtol, atol in ((np.float32, 1e-5, 2e-6), (np.float64, 1e-12, 0.0)):
        # torch float32 rounds lse and lse - x_y in float32: a few ULP of lse (~1e-6 absolute for losses
        # of a few units), so small losses agree to an absolute 2e-6, large ones to 1e-5 relative.
        x = (rng.standard_normal((16, 5, 6)) * 3).astype(dtype)  # (N, C, d): classes on axis 1
        y = rng.integers(0, 5, (16, 6))
        y[::4, 0] = -100
        for red in ("mean", "sum", "none"):
            for ls in (0.0, 0.2):
                want = F.cross_entropy(torch.from_numpy(x), torch.from_numpy(y), reduction=red, label_smoothing=ls,
                                       ignore_index=-100).numpy()
                got = normexp.cross_entropy(x, y, axis=1, reduction=red, label_smoothing=ls, ignore_index=-100)
                np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{dtype} {red} {ls}")
        # -inf logits (masked classes) and a row whose label is masked: torch gives inf, so do we
        x2 = rng.standard_normal((3, 4)).astype(dtype)
        x2[0, 1] = -np.inf
        y2 = np.array([1, 2, 3])
        want = F.cross_entropy(torch.from_numpy(x2), torch.from_numpy(y2), reduction="none").numpy()
        got = normexp.cross_entropy(x2, y2, reduction="none")
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
        assert np.isinf(got[0])
    # all rows ignored: mean is NaN in both
    x = rng.standard_normal((2, 3)).astype(np.float32)
    y = np.array([-100, -100])
    assert math.isnan(F.cross_entropy(torch.from_numpy(x), torch.from_numpy(y)).item())
    assert math.isnan(normexp.cross_entropy(x, y, ignore_index=-100))


def test_cross_entropy_bad_inputs():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"labels: 5 at position \(2,\) is out of range \[0, 5\)"):
        normexp.cross_entropy(x, [0, 1, 5, 2])
    with pytest.raises(ValueError, match="out of range"):
        normexp.cross_entropy(x, [0, -1, 2, 2])
    with pytest.raises(ValueError, match="ignore_index=-100"):
        normexp.cross_entropy(x, [0, -100, 2, 2])
    with pytest.raises(TypeError, match="integer class indices"):
        normexp.cross_entropy(x, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="shape"):
        normexp.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="reduction"):
        normexp.cross_entropy(x, [0, 1, 2, 3], reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        normexp.cross_entropy(x, [0, 1, 2, 3], label_smoothing=1.5)
    y = x.copy()
    y[3, 2] = np.nan
    with pytest.raises(ValueError, match="row 3 contains NaN"):
        normexp.cross_entropy(y, [0, 1, 2, 3])
    # an ignored row is not read (PyTorch drops it too)
    assert normexp.cross_entropy(y, [0, 1, 2, -100], ignore_index=-100) == pytest.approx(math.log(5), rel=1e-6)
    y[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"\+inf"):
        normexp.cross_entropy(y, [0, 1, 2, 3])
    y[3] = -np.inf
    with pytest.raises(ValueError, match="all -inf"):
        normexp.cross_entropy(y, [0, 1, 2, 3])


# ---- fit_temperature / calibration_error -------------------------------------------------------------
def synthetic(n, classes, t_true, seed, dtype=np.float64):
    """Logits z and labels drawn from softmax(z / t_true): the MLE of T is t_true up to sampling noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, classes)) * 3
    p = np.exp(z / t_true - (z / t_true).max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = (p.cumsum(-1) > rng.random((n, 1))).argmax(-1)
    return z.astype(dtype), y


def nll64(z, y, t):
    zz = z.astype(np.float64) / t
    m = zz.max(-1)
    return float(np.mean(m + np.log(np.exp(zz - m[:, None]).sum(-1)) - zz[np.arange(len(y)), y]))


@pytest.mark.parametrize("t_true", [0.5, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_temperature_recovers_known_temperature(t_true, dtype):
    from scipy.optimize import minimize_scalar

    z, y = synthetic(20_000, 10, t_true, seed=int(t_true * 10), dtype=dtype)
    fit = normexp.fit_temperature(z, y)
    assert fit.converged
    # Sampling noise: the MLE of T from 20000 rows has a relative std of about 1%; 5% is ~5 sigma.
    assert abs(fit.temperature / t_true - 1) < 0.05
    # The optimizer: the minimizer of the float64 NLL to 1e-5 relative (float32 data: the NLL derivative
    # is accurate to ~1e-7 relative; Newton stops at that noise) and the NLLs themselves.
    ref = minimize_scalar(lambda lt: nll64(z, y, math.exp(lt)), bounds=(-5, 5), method="bounded",
                          options={"xatol": 1e-10})
    assert abs(fit.temperature / math.exp(ref.x) - 1) < 1e-5
    assert fit.nll_before == pytest.approx(nll64(z, y, 1.0), rel=1e-6)
    assert fit.nll_after == pytest.approx(nll64(z, y, fit.temperature), rel=1e-6)
    assert fit.nll_after <= fit.nll_before
    assert fit.iterations < 30


def test_fit_temperature_separable_data_warns():
    z = np.eye(4) * 5.0
    y = np.arange(4)
    with pytest.warns(RuntimeWarning, match="no minimum found"):
        fit = normexp.fit_temperature(z, y, bounds=(0.01, 100))
    assert not fit.converged and fit.temperature == pytest.approx(0.01)


def test_fit_temperature_bad_inputs():
    z, y = synthetic(50, 3, 1.0, seed=1)
    with pytest.raises(ValueError, match="bounds"):
        normexp.fit_temperature(z, y, bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="out of range"):
        normexp.fit_temperature(z, y + 3)
    with pytest.raises(ValueError, match="at least one labelled row"):
        normexp.fit_temperature(z, np.full(50, -1), ignore_index=-1)


def ece_loop(p, y, n_bins):
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if sel.any():
            total += sel.sum() / len(y) * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return total


def test_calibration_error():
    z, y = synthetic(20_000, 10, 2.5, seed=3)
    p1 = normexp.softmax(z)
    fit = normexp.fit_temperature(z, y)
    p2 = normexp.softmax(z, temperature=fit.temperature)
    e1, e2 = normexp.calibration_error(p1, y), normexp.calibration_error(p2, y)
    assert e1 == pytest.approx(ece_loop(p1, y, 15), rel=1e-12)
    assert e2 == pytest.approx(ece_loop(p2, y, 15), rel=1e-12)
    # Overconfident at T = 1 (the labels follow T = 2.5); calibrated after scaling: the binned gap of a
    # calibrated model with 20000 rows is O(sqrt(bins / N)) ~ 0.03 at most, against ~0.3 before.
    assert e1 > 0.2 and e2 < 0.03
    assert normexp.calibration_error(p2, y, n_bins=5) == pytest.approx(ece_loop(p2, y, 5), rel=1e-12)
    # perfect one-hot predictions: 0
    assert normexp.calibration_error(np.eye(3), [0, 1, 2]) == 0.0
    with pytest.raises(ValueError, match="probabilities"):
        normexp.calibration_error(z, y)
    with pytest.raises(ValueError, match="n_bins"):
        normexp.calibration_error(p1, y, n_bins=0)
    with pytest.raises(ValueError, match="out of range"):
        normexp.calibration_error(p1, y + 10)


def test_readme_decoding_example():
    """The README's decoding example runs as written."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text().split("## Decoding", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(code, ns)
    np.testing.assert_array_equal(ns["greedy"], ns["logits"].argmax(-1))
    assert ns["tokens"].shape == (8,) and ns["fit"].converged


@pytest.mark.parametrize("label", [5, -1, -100, 2**40])
def test_label_out_of_range_is_one_error_everywhere(label):
    """Every function that takes class labels raises the same error for one out of range: an IndexError, as
    PyTorch's cross_entropy raises for such a target, that is also a ValueError."""
    torch = pytest.importorskip("torch")
    x = np.zeros((4, 5), np.float32)
    labels = np.array([0, 1, label, 2], np.int64)
    with pytest.raises(IndexError):
        torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(labels), ignore_index=-7)
    calls = {
        "cross_entropy": lambda: normexp.cross_entropy(x, labels),
        "linear_cross_entropy": lambda: normexp.linear_cross_entropy(np.ones((4, 3), np.float32),
                                                                     np.ones((5, 3), np.float32), labels,
                                                                     ignore_index=None),
        "fit_temperature": lambda: normexp.fit_temperature(x, labels),
        "calibration_error": lambda: normexp.calibration_error(np.full((4, 5), 0.2, np.float32), labels),
    }
    for name, call in calls.items():
        with pytest.raises(IndexError, match=f"labels: {label} at position \\(2,\\) is out of range") as e:
            call()
        assert isinstance(e.value, ValueError), name
