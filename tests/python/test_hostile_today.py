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
