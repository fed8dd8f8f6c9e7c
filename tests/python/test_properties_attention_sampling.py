"""Property tests (hypothesis) for attention, merge_attention and the output layer (sample, cross_entropy):
invariants that need no reference implementation.

* attention: every output row with a finite lse is a convex combination of the rows of v its query may
  see, so per column min(v) <= out <= max(v); a row with no visible key is 0 with lse -inf.
* merge_attention of the attentions over a split of the keys equals the attention over all of them.
* sample: the index lies in the kept set of the documented cuts (top_k, then top_p, then min_p); greedy
  is the first argmax; -inf entries are never drawn.
* cross_entropy >= 0 and equals -log_softmax at the label.

Profiles as in test_properties.py ("ci" derandomized under CI=true).
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import normexp
from test_properties import PROPS

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]


def _eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


@st.composite
def attention_inputs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    hk = draw(st.integers(1, 2))
    hq = hk * draw(st.integers(1, 3))  # grouped-query heads too
    lq, lk = draw(st.integers(1, 7)), draw(st.integers(1, 9))
    d, dv = draw(st.integers(1, 8)), draw(st.integers(1, 5))
    vals = st.floats(-4, 4, width=32)
    q = draw(hnp.arrays(dtype, (hq, lq, d), elements=vals))
    k = draw(hnp.arrays(dtype, (hk, lk, d), elements=vals))
    v = draw(hnp.arrays(dtype, (hk, lk, dv), elements=st.floats(-1e3, 1e3, width=32)))
    return q, k, v


def _kv_head(hq: int, hk: int) -> np.ndarray:
    return np.arange(hq) // (hq // hk)


@PROPS
@given(
    attention_inputs(),
    st.booleans(),
    st.sampled_from(["top_left", "bottom_right"]),
    st.none() | st.integers(1, 6),
    st.none() | st.floats(0.5, 50),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_attention_rows_are_convex_combinations_of_v(qkv, causal, alignment, window, softcap, use_mask, use_alibi, data):
    q, k, v = qkv
    hq, lq, _ = q.shape
    hk, lk, dv = v.shape
    mask = data.draw(hnp.arrays(np.bool_, (lq, lk))) if use_mask else None
    slopes = np.linspace(0.1, 1.0, hq) if use_alibi else None
    out, lse = normexp.attention(
        q, k, v, is_causal=causal, causal_alignment=alignment, window=window, softcap=softcap, mask=mask,
        alibi_slopes=slopes, return_lse=True,
    )
    assert out.shape == (hq, lq, dv) and lse.shape == (hq, lq) and out.dtype == q.dtype
    vh = v[_kv_head(hq, hk)]  # (hq, lk, dv): the values each query head reads
    lo, hi = vh.min(axis=1), vh.max(axis=1)  # (hq, dv)
    # A weighted mean of <= 9 rows, accumulated with relative error <= (lk + 4) eps of max|v| (the sum of
    # weights, the products and the final division each add rounding); this bound is an ample margin.
    tol = (lk + 4) * _eps(q.dtype) * max(1.0, float(np.abs(v).max()))
    finite = np.isfinite(lse)
    assert not np.isnan(lse).any() and not np.isposinf(lse).any()
    for h in range(hq):
        rows = out[h][finite[h]]
        assert np.all(rows >= lo[h] - tol) and np.all(rows <= hi[h] + tol)
        assert np.all(out[h][~finite[h]] == 0)  # no visible key: 0 and lse -inf, never NaN
    if mask is not None:  # a query whose keys are all masked out sees nothing
        assert np.all(~finite[:, ~mask.any(axis=1)])


@PROPS
@given(attention_inputs(), st.none() | st.floats(0.5, 50), st.booleans(), st.data())
def test_merge_of_a_split_equals_the_whole(qkv, softcap, use_mask, data):
    q, k, v = qkv
    hq, lq, _ = q.shape
    lk = k.shape[1]
    assume(lk >= 2)
    cut = data.draw(st.integers(1, lk - 1))
    mask = data.draw(hnp.arrays(np.bool_, (lq, lk))) if use_mask else np.ones((lq, lk), bool)
    whole, lse = normexp.attention(q, k, v, mask=mask, softcap=softcap, return_lse=True)
    parts = [
        normexp.attention(q, k[:, s], v[:, s], mask=mask[:, s], softcap=softcap, return_lse=True)
        for s in (slice(0, cut), slice(cut, lk))
    ]
    out, mlse = normexp.merge_attention([p[0] for p in parts], [p[1] for p in parts])
    note(f"cut={cut}")
    assert out.dtype == whole.dtype and out.shape == whole.shape
    assert np.array_equal(np.isfinite(mlse), np.isfinite(lse))
    fin = np.isfinite(lse)
    # Scores are at most 4 * 4 * 8 / sqrt(d) + log(9) < 60 in size. Each part's lse is rounded to the dtype
    # (absolute error <= 60 eps), which scales its weight by exp(+-60 eps); with the accumulation error of
    # both computations ((lk + 4) eps each) the outputs differ by <= (2 lk + 8 + 2 * 60) eps * max|v|.
    # The parts and the whole run different tiles, whose dot products sum in different orders: a score may
    # differ by twice the dot product's bound, (d + 2) eps sum|q_i k_i| scale, which cancelling terms make
    # large against the score itself (q.k = -0.73 from terms of 9.6: 1.4e-6 apart, 11 eps of an lse of
    # -0.29). The lse moves by at most that difference, an output by twice it times max|v|.
    eps = _eps(q.dtype)
    d = q.shape[-1]
    kq = np.abs(k[_kv_head(hq, k.shape[0])].astype(np.float64))
    dots = 2 * (d + 2) * eps * np.einsum("hqd,hkd->hqk", np.abs(q.astype(np.float64)), kq).max(-1) / np.sqrt(d)
    vmax = max(1.0, float(np.abs(v).max()))
    tol_out = (2 * lk + 8 + 120) * eps * vmax + 2 * dots[fin][:, None] * vmax
    assert np.all(np.abs(out - whole)[fin] <= tol_out)
    assert np.all(out[~fin] == 0)
    # lse: log of a sum of two rounded exponentials vs one computed directly: a few eps of |lse| + 1.
    assert np.all(np.abs(mlse[fin] - lse[fin]) <= 8 * eps * (1 + np.abs(lse[fin])) + dots[fin])


# ---- sample -----------------------------------------------------------------------------------------
@st.composite
def logits_rows(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rows, vocab = draw(st.integers(1, 4)), draw(st.integers(1, 40))
    # Halves in [-8, 8] make many exact ties; -inf entries are never drawn (each row keeps a finite one).
    x = draw(hnp.arrays(dtype, (rows, vocab), elements=st.integers(-16, 16).map(lambda i: i / 2)))
    holes = draw(hnp.arrays(np.bool_, (rows, vocab)))
    holes[:, draw(st.integers(0, vocab - 1))] = False
    x[holes] = -np.inf
    return x


@PROPS
@given(
    logits_rows(),
    st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]),  # powers of two: x / T is exact, so ties and order hold
    st.none() | st.integers(1, 45),
    st.none() | st.floats(0.01, 1.0),
    st.none() | st.floats(0.0, 1.0),
    st.integers(0, 2**32),
)
def test_sample_draws_inside_the_kept_set(x, t, top_k, top_p, min_p, seed):
    idx = normexp.sample(x, temperature=t, top_k=top_k, top_p=top_p, min_p=min_p, rng=seed)
    assert idx.shape == (x.shape[0],) and idx.dtype == np.int64
    for r, i in enumerate(idx):
        s = x[r].astype(np.float64) / t
        assert 0 <= i < s.size and np.isfinite(s[i])
        kept = np.isfinite(s)
        if top_k is not None and top_k < s.size:  # ties at the k-th largest are kept
            kept &= s >= np.sort(s)[::-1][top_k - 1]
        assert kept[i], "outside the top-k set"
        p = np.where(kept, np.exp(s - s.max()), 0.0)
        p /= p.sum()
        # top_p keeps the smallest prefix (by probability) reaching top_p, plus ties with its last member:
        # the mass strictly above p[i] must be below top_p. Slack 1e-4: the kernel's probabilities are
        # float32 (relative error < 1e-6 each, summed over <= 40 entries).
        if top_p is not None and top_p < 1:
            assert p[p > p[i]].sum() < top_p + 1e-4, "outside the top-p set"
        if min_p is not None:  # p / p_max = exp(s - s_max): same slack
            assert p[i] >= min_p * p.max() * (1 - 1e-4), "below min_p"


@PROPS
@given(logits_rows())
def test_greedy_is_the_first_argmax(x):
    assert np.array_equal(normexp.sample(x, temperature=0.0), np.argmax(x, axis=-1))


# ---- cross_entropy ----------------------------------------------------------------------------------
@PROPS
@given(
    st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=st.floats(-1e4, 1e4, width=32))
    ),
    st.floats(0.0, 1.0),
    st.data(),
)
def test_cross_entropy_is_nonnegative_and_minus_log_softmax(x, smoothing, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    classes = x.shape[axis]
    assume(classes > 0)
    shape = tuple(int(n) for i, n in enumerate(x.shape) if i != axis % x.ndim)
    labels = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(0, classes - 1)))
    loss = normexp.cross_entropy(x, labels, axis=axis, reduction="none", label_smoothing=smoothing)
    eps = _eps(x.dtype)
    big = max(1.0, float(np.abs(x).max())) if x.size else 1.0
    # lse >= max >= x[label] holds exactly in floating point, but the smoothing term lse - mean(x) may round
    # below 0 by the rounding of the mean and of lse: <= 4 eps * max|x|.
    assert np.all(np.asarray(loss) >= -4 * eps * big)
    plain = normexp.cross_entropy(x, labels, axis=axis, reduction="none")
    ls = normexp.log_softmax(x, axis=axis)
    want = -np.take_along_axis(ls, np.expand_dims(labels, axis), axis=axis).squeeze(axis)
    assert np.all(np.asarray(plain) >= 0)
    # Both are lse - x[label], computed in different passes: each within 2 eps of (|lse| + |x|) <= 3 max|x|.
    assert np.allclose(plain, want, rtol=0, atol=12 * eps * big)
