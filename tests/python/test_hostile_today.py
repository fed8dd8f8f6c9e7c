"""Hostile tests of what landed on 2026-12-03 (16-bit reductions and attention, attention sinks,
paged_attention, the sampler's serving controls, the fused LM head, the transformers backend), each a
regression test of a defect found by attacking the new code with odd shapes, layouts and values and
comparing against a float64 NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest

import normexp


def _logits64(hidden: np.ndarray, weight: np.ndarray, bias=None) -> np.ndarray:
    z = hidden.astype(np.float64) @ weight.astype(np.float64).T
    return z if bias is None else z + np.asarray(bias, dtype=np.float64)


def _lse64(z: np.ndarray) -> np.ndarray:
    if z.shape[-1] == 0:
        return np.full(z.shape[:-1], -np.inf)
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[..., 0]


# ---- the fused LM head on empty operands (python/bindings/lm_head.cpp) ---------------------------------
# NumPy gives a zero-size array strides of 0 (np.ones((3, 0)).strides == (0, 0)), which the binding's
# layout check took for a broadcast row and rejected with "must have unit stride along dim and forward
# rows", although an empty array is never read.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, vocab, dim", [(2, 3, 0), (4, 0, 4), (1, 5, 0), (3, 0, 0)])
def test_linear_logsumexp_of_empty_operands(isa, dtype, rows, vocab, dim):
    hidden = np.ones((rows, dim), dtype)
    weight = np.ones((vocab, dim), dtype)
    bias = np.arange(vocab, dtype=np.float64)
    want = _lse64(_logits64(hidden, weight, bias))  # log(sum exp(bias)) for dim 0, -inf for vocab 0
    got = normexp.linear_logsumexp(hidden, weight, bias=bias)
    assert got.dtype == dtype and got.shape == (rows,)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_cross_entropy_with_dim_zero(isa, dtype):
    hidden = np.ones((2, 0), dtype)
    weight = np.ones((3, 0), dtype)
    bias = np.array([1.0, 2.0, 3.0])
    labels = np.array([1, 2])
    z = _logits64(hidden, weight, bias)
    lse = _lse64(z)
    eps = 0.2
    want = (1 - eps) * (lse - z[np.arange(2), labels]) + eps * (lse - z.mean(axis=-1))  # PyTorch's definition
    got = normexp.linear_cross_entropy(hidden, weight, labels, bias=bias, label_smoothing=eps, reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_linear_cross_entropy_with_an_empty_vocabulary():
    hidden = np.ones((2, 4))
    weight = np.ones((0, 4))
    with pytest.raises(IndexError, match="out of range"):  # no label can be in range: PyTorch's error
        normexp.linear_cross_entropy(hidden, weight, [0, 0])
    assert np.isnan(normexp.linear_cross_entropy(hidden, weight, [-100, -100]))  # every row ignored


# ---- bfloat16 sinks, ALiBi slopes and additive masks (python/normexp/attention.py, dask.py) --------------
# A bfloat16 model's parameters and masks are bfloat16 (gpt-oss's sinks, the additive mask a bfloat16
# model builds), and attention takes bfloat16 q, k, v; but sinks, alibi_slopes and mask tested the NumPy
# kind ("f"), which ml_dtypes' bfloat16 is not (kind "V"): "sinks must be real numbers, got dtype
# bfloat16". float16 ones were accepted.
def test_bfloat16_sinks_slopes_and_mask_are_their_float32_values(isa):
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(11)
    q, k, v = (rng.standard_normal(s).astype(bf16) for s in [(1, 2, 3, 8), (1, 2, 10, 8), (1, 2, 10, 8)])
    sinks = np.array([0.5, -1.25]).astype(bf16)
    slopes = np.array([0.25, 0.0625]).astype(bf16)
    mask = rng.standard_normal((3, 10)).astype(bf16)
    got = normexp.attention(q, k, v, sinks=sinks, alibi_slopes=slopes, mask=mask)
    want = normexp.attention(
        q, k, v, sinks=sinks.astype(np.float32), alibi_slopes=slopes.astype(np.float32), mask=mask.astype(np.float32)
    )
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    # paged_attention's sinks (float32 q and pages) go through the same check
    pages = rng.standard_normal((4, 2, 1, 8)).astype(np.float32)
    qp = rng.standard_normal((2, 2, 8)).astype(np.float32)
    args = (qp, pages, pages, [[0, 1], [2, 3]], [3, 4])
    got = normexp.paged_attention(*args, sinks=sinks)
    want = normexp.paged_attention(*args, sinks=sinks.astype(np.float32))
    assert got.tobytes() == want.tobytes()


def test_bfloat16_torch_sinks_and_mask():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 3, 8, generator=g).to(torch.bfloat16)
    mask = torch.randn(3, 3, generator=g).to(torch.bfloat16)
    sinks = torch.tensor([0.5, -1.0], dtype=torch.bfloat16)
    got = normexp.attention(q, q, q, sinks=sinks, mask=mask)
    want = normexp.attention(q, q, q, sinks=sinks.float(), mask=mask.float())
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)


def test_bfloat16_additive_mask_in_dask_attention():
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    da = pytest.importorskip("dask.array")
    import normexp.dask

    rng = np.random.default_rng(12)
    q, k, v = (rng.standard_normal(s).astype(bf16) for s in [(1, 2, 3, 8), (1, 2, 40, 8), (1, 2, 40, 8)])
    mask = rng.standard_normal((3, 40)).astype(bf16)
    kc, vc = (da.from_array(a, chunks=(1, 2, 16, 8)) for a in (k, v))
    got = normexp.dask.attention(da.from_array(q), kc, vc, mask=mask).compute()
    want = normexp.attention(q, k, v, mask=mask.astype(np.float32))
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


# ---- a bias the fused head's dtype cannot hold (python/normexp/lm_head.py) -----------------------------
# A float64 bias of 1e300 with float32 hidden/weight was cast to +inf with a RuntimeWarning and every row
# came back NaN; attention refuses the same overflow in an additive mask with a ValueError.
@pytest.mark.parametrize("value", [1e300, -1e300, 3.5e38])
def test_linear_head_refuses_a_bias_that_overflows_float32(value):
    hidden = np.ones((2, 4), np.float32)
    weight = np.ones((3, 4), np.float32)
    bias = np.array([0.0, value, 1.0])
    with pytest.raises(ValueError, match="bias: the value .* overflows float32 .the dtype of the logits"):
        normexp.linear_logsumexp(hidden, weight, bias=bias)
    with pytest.raises(ValueError, match="bias: the value .* overflows float32 .the dtype of the logits"):
        normexp.linear_cross_entropy(hidden, weight, [0, 1], bias=bias)


def test_linear_head_keeps_infinite_and_representable_biases():
    hidden = np.ones((2, 4), np.float32)
    weight = np.ones((3, 4), np.float32)
    bias = np.array([-np.inf, 3e38, 0.0])  # -inf excludes a token; 3e38 is a float32
    got = normexp.linear_logsumexp(hidden, weight, bias=bias)
    np.testing.assert_allclose(got, np.float32(3e38), rtol=1e-6)
    got = normexp.linear_logsumexp(hidden.astype(np.float64), weight.astype(np.float64), bias=[1e300, 0.0, -np.inf])
    np.testing.assert_allclose(got, 1e300)


# ---- logsumexp's weights b in bfloat16 (python/normexp/_api.py: weighted_logsumexp) --------------------
# bfloat16 scores were taken, but bfloat16 weights raised "b: expected real numbers, got dtype bfloat16"
# (a NumPy kind test; ml_dtypes' bfloat16 is kind 'V'); float16 weights were taken.
def test_logsumexp_takes_bfloat16_weights():
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 5)).astype(bf16)
    b = rng.standard_normal((3, 5)).astype(bf16)
    got, sign = normexp.logsumexp(x, axis=1, b=b, return_sign=True)
    want, want_sign = normexp.logsumexp(x, axis=1, b=b.astype(np.float64), return_sign=True)
    assert got.dtype == bf16 and got.tobytes() == want.tobytes() and sign.tobytes() == want_sign.tobytes()


# ---- byte-swapped operands of the fused head (python/normexp/lm_head.py: _matrix) -----------------------
# A big-endian float32 or float16 array ('>f4', '>f2' on x86, e.g. read from a file) raised "the fused head
# takes float32, float64, float16 or bfloat16 arrays, got >f2"; every other function takes such input.
@pytest.mark.parametrize("wdtype", [np.float32, np.float64, np.float16])
def test_linear_head_takes_byte_swapped_operands(wdtype):
    rng = np.random.default_rng(14)
    hdtype = np.float64 if wdtype == np.float64 else np.float32
    hidden = rng.standard_normal((3, 16)).astype(hdtype)
    weight = rng.standard_normal((40, 16)).astype(wdtype)
    labels = np.array([1, 2, 39])
    swapped_h = hidden.astype(hidden.dtype.newbyteorder(">"))
    swapped_w = weight.astype(weight.dtype.newbyteorder(">"))
    want = normexp.linear_logsumexp(hidden, weight)
    got = normexp.linear_logsumexp(swapped_h, swapped_w)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    want = normexp.linear_cross_entropy(hidden, weight, labels, reduction="none")
    got = normexp.linear_cross_entropy(swapped_h, swapped_w, labels, reduction="none")
    assert got.tobytes() == want.tobytes()
