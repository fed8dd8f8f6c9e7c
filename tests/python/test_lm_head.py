"""The fused output layer: linear_logsumexp and linear_cross_entropy against a float64 NumPy reference that
forms the logits, on every ISA (isa fixture), over vocabulary sizes that are not multiples of the driver's
block (128) or piece (4096), model dimensions that are not multiples of a vector, 1 to a few hundred rows
(the direct product below 5 rows, several row blocks above 192), with and without bias, every reduction,
ignore_index and label smoothing; the special values; the errors; bit-identity over thread counts.

Tolerances are derived, not tuned: a float32 logit computed as a dot product over dim terms is within
(dim + 2) u sum_d |h_d w_d| of the exact one (u = 2^-24; the bound of cpp/src/kernels/generic/attention.hpp),
log-sum-exp is 1-Lipschitz in the largest logit error, and the exp, sum and log add a few u of the result.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import normexp

SHAPES = [  # (rows, vocab, dim)
    (1, 1, 1),
    (1, 129, 7),
    (3, 4097, 33),  # direct product (<= 4 rows); two pieces, the second of one entry
    (5, 300, 16),
    (37, 1000, 100),
    (197, 8225, 19),  # two row blocks, three pieces
]


def unit(dtype) -> float:
    return 2.0**-24 if np.dtype(dtype) == np.float32 else 2.0**-53


def make(rng, rows, vocab, dim, dtype, scale=1.0, bias=True):
    h = (rng.standard_normal((rows, dim)) * scale).astype(dtype)
    w = (rng.standard_normal((vocab, dim)) / math.sqrt(dim) * 4).astype(dtype)
    b = (rng.standard_normal(vocab) * 2).astype(dtype) if bias else None
    return h, w, b


def logits64(h, w, b):
    x = np.asarray(h, np.float64) @ np.asarray(w, np.float64).T
    return x if b is None else x + np.asarray(b, np.float64)


def lse64(x):
    m = np.max(x, axis=-1, keepdims=True)
    return np.squeeze(m, -1) + np.log(np.sum(np.exp(x - m), axis=-1))


def logit_error(h, w):
    """Per row: the bound on the error of every computed logit of that row."""
    dim = h.shape[1]
    mags = np.abs(np.asarray(h, np.float64)) @ np.abs(np.asarray(w, np.float64)).T
    return (dim + 2) * unit(h.dtype) * (np.max(mags, axis=1) + 1) + 2 * unit(h.dtype)


def ce64(x, y, eps, ignore):
    """Per-row torch cross-entropy of float64 logits (0 for ignored rows), and the used-row mask."""
    used = y != ignore if ignore is not None else np.ones(len(y), bool)
    yy = np.where(used, y, 0)
    lse = lse64(x)
    nll = lse - x[np.arange(len(y)), yy]
    smooth = lse - np.mean(x, axis=-1)
    loss = (1 - eps) * nll + eps * smooth
    return np.where(used, loss, 0.0), used


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,vocab,dim", SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_logsumexp_matches_float64(isa, dtype, rows, vocab, dim, with_bias):
    rng = np.random.default_rng(rows * 7919 + vocab + dim)
    h, w, b = make(rng, rows, vocab, dim, dtype, bias=with_bias)
    got = normexp.linear_logsumexp(h, w, bias=b)
    assert got.dtype == dtype and got.shape == (rows,)
    ref = lse64(logits64(h, w, b))
    tol = logit_error(h, w) + 8 * unit(dtype) * (1 + np.abs(ref))
    assert np.all(np.abs(got - ref) <= tol), np.max(np.abs(got - ref) / tol)
    if with_bias:  # negative control: the bias is really added
        assert np.any(np.abs(lse64(logits64(h, w, None)) - ref) > tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,vocab,dim", SHAPES[1:])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_linear_cross_entropy_matches_float64(isa, dtype, rows, vocab, dim, eps):
    rng = np.random.default_rng(rows + vocab * 3 + dim)
    h, w, b = make(rng, rows, vocab, dim, dtype)
    y = rng.integers(0, vocab, rows)
    y[1::3] = -100  # ignored rows (every row but the first with rows = 1, 2)
    x = logits64(h, w, b)
    ref, used = ce64(x, y, eps, -100)
    tol = 2 * logit_error(h, w) + 16 * unit(dtype) * (1 + np.abs(lse64(x)) + np.max(np.abs(x), axis=1))
    none = normexp.linear_cross_entropy(h, w, y, bias=b, label_smoothing=eps, reduction="none")
    assert none.dtype == dtype and none.shape == (rows,)
    assert np.all(np.abs(none - ref) <= tol), np.max(np.abs(none - ref) / tol)
    assert np.all(none[~used] == 0)
    total = normexp.linear_cross_entropy(h, w, y, bias=b, label_smoothing=eps, reduction="sum")
    assert abs(float(total) - ref.sum()) <= tol.sum() + unit(dtype) * abs(ref.sum())
    mean = normexp.linear_cross_entropy(h, w, y, bias=b, label_smoothing=eps, reduction="mean")
    n = used.sum()
    if n:
        assert abs(float(mean) - ref.sum() / n) <= (tol.sum() + unit(dtype) * abs(ref.sum())) / n
    else:
        assert math.isnan(mean)
    if eps > 0:  # negative control: smoothing changes the loss by more than the tolerance
        ref0, _ = ce64(x, y, 0.0, -100)
        assert np.any(np.abs(ref0 - ref) > tol)


def test_cross_entropy_equals_unfused_normexp_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    h, w, b = make(rng, 64, 3001, 40, np.float32)
    y = rng.integers(0, 3001, 64)
    y[7] = -100
    for eps in (0.0, 0.25):
        for red in ("none", "sum", "mean"):
            got = normexp.linear_cross_entropy(h, w, y, bias=b, label_smoothing=eps, reduction=red)
            x = torch.from_numpy(h) @ torch.from_numpy(w).T + torch.from_numpy(b)
            ref = torch.nn.functional.cross_entropy(x, torch.from_numpy(y), label_smoothing=eps, reduction=red)
            np.testing.assert_allclose(np.asarray(got), ref.numpy(), rtol=2e-5, atol=2e-5)
            unfused = normexp.cross_entropy(x.numpy(), y, ignore_index=-100, label_smoothing=eps, reduction=red)
            np.testing.assert_allclose(np.asarray(got), np.asarray(unfused), rtol=2e-5, atol=2e-5)
    # torch tensors in, a torch tensor out
    t = normexp.linear_cross_entropy(torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(y))
    assert isinstance(t, torch.Tensor) and t.dim() == 0
    t = normexp.linear_logsumexp(torch.from_numpy(h), torch.from_numpy(w), bias=torch.from_numpy(b))
    assert isinstance(t, torch.Tensor) and tuple(t.shape) == (64,)
    ref = torch.logsumexp(torch.from_numpy(h) @ torch.from_numpy(w).T + torch.from_numpy(b), dim=-1)
    np.testing.assert_allclose(t.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_dimensions_and_layouts():
    rng = np.random.default_rng(8)
    h, w, b = make(rng, 24, 515, 12, np.float64)
    y = rng.integers(0, 515, 24)
    flat = normexp.linear_cross_entropy(h, w, y, bias=b, reduction="none")
    got = normexp.linear_cross_entropy(h.reshape(2, 3, 4, 12), w, y.reshape(2, 3, 4), bias=b, reduction="none")
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got.reshape(-1), flat)
    lse = normexp.linear_logsumexp(h.reshape(4, 6, 12), w, bias=b)
    assert lse.shape == (4, 6)
    np.testing.assert_array_equal(lse.reshape(-1), normexp.linear_logsumexp(h, w, bias=b))
    # a single row: a scalar; strided and transposed views give the same bits as contiguous copies
    assert np.ndim(normexp.linear_logsumexp(h[0], w)) == 0
    wt = np.asfortranarray(w)
    np.testing.assert_array_equal(normexp.linear_logsumexp(h[::2], wt), normexp.linear_logsumexp(h[::2].copy(), w))
    np.testing.assert_array_equal(normexp.linear_logsumexp(h[:, ::-1], w[:, ::-1]),
                                  normexp.linear_logsumexp(h[:, ::-1].copy(), w[:, ::-1].copy()))
    # a broadcast row (stride 0) is read as the same row every time, not as contiguous memory
    hb = np.broadcast_to(h[3], (5, 12))
    np.testing.assert_array_equal(normexp.linear_logsumexp(hb, w, bias=b),
                                  np.repeat(normexp.linear_logsumexp(h[3:4], w, bias=b), 5))
    wb = np.broadcast_to(w[7], (515, 12))
    np.testing.assert_array_equal(normexp.linear_logsumexp(h, wb), normexp.linear_logsumexp(h, wb.copy()))
    # dim 0: the logits are the bias
    np.testing.assert_allclose(normexp.linear_logsumexp(h[:, :0], w[:, :0], bias=b),
                               np.full(24, np.log(np.sum(np.exp(b.astype(np.float64))))), rtol=1e-13)
    # empty: no rows, and a vocabulary of 0 (log of an empty sum)
    assert normexp.linear_logsumexp(h[:0], w).shape == (0,)
    assert np.all(normexp.linear_logsumexp(h, w[:0]) == -np.inf)
    assert math.isnan(normexp.linear_cross_entropy(h[:0], w, y[:0]))


def test_all_ignored_rows():
    rng = np.random.default_rng(2)
    h, w, _ = make(rng, 6, 50, 8, np.float32)
    y = np.full(6, -100)
    assert math.isnan(normexp.linear_cross_entropy(h, w, y))
    assert normexp.linear_cross_entropy(h, w, y, reduction="sum") == 0
    assert np.all(normexp.linear_cross_entropy(h, w, y, reduction="none") == 0)
    # a custom ignore_index, and None (every label is used: -100 is then out of range)
    y2 = np.array([3, 7, 3, 1, 3, 0])
    got = normexp.linear_cross_entropy(h, w, y2, ignore_index=3, reduction="none")
    assert np.all(got[[0, 2, 4]] == 0) and np.all(got[[1, 3, 5]] > 0)
    with pytest.raises(IndexError, match="-100"):
        normexp.linear_cross_entropy(h, w, y, ignore_index=None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits(isa, dtype):
    # logits of order 1e4: exp would overflow anywhere but in the shifted form
    rng = np.random.default_rng(4)
    h, w, b = make(rng, 9, 700, 24, dtype, scale=3000.0)
    b = (b * 1000).astype(dtype)
    x = logits64(h, w, b)
    assert np.max(np.abs(x)) > 1e4
    got = normexp.linear_logsumexp(h, w, bias=b)
    ref = lse64(x)
    assert np.all(np.isfinite(got))
    tol = logit_error(h, w) + 8 * unit(dtype) * (1 + np.abs(ref))
    assert np.all(np.abs(got - ref) <= tol)
    y = np.argmin(x, axis=1)  # the least likely token: a loss of order 1e4, finite
    ce = normexp.linear_cross_entropy(h, w, y, bias=b, reduction="none")
    ref_ce, _ = ce64(x, y, 0.0, None)
    assert np.all(np.isfinite(ce)) and np.all(ref_ce > 1e3)
    np.testing.assert_allclose(ce, ref_ce, rtol=0, atol=float(3 * np.max(tol)))


def test_special_values(isa):
    rng = np.random.default_rng(6)
    h, w, b = make(rng, 8, 300, 10, np.float32)
    h[2, 4] = np.nan
    lse = normexp.linear_logsumexp(h, w, bias=b)
    assert np.isnan(lse[2]) and np.all(np.isfinite(np.delete(lse, 2)))
    y = rng.integers(0, 300, 8)
    ce = normexp.linear_cross_entropy(h, w, y, bias=b, reduction="none")
    assert np.isnan(ce[2]) and np.all(np.isfinite(np.delete(ce, 2)))
    assert math.isnan(normexp.linear_cross_entropy(h, w, y, bias=b))
    y[2] = -100  # an ignored row is not read: its NaN does not reach the mean
    assert math.isfinite(normexp.linear_cross_entropy(h, w, y, bias=b))
    # a -inf bias masks a token: the label's loss is inf, the others ignore it
    h[2, 4] = 0
    b[5] = -np.inf
    y[:] = 5
    y[1] = 6
    ce = normexp.linear_cross_entropy(h, w, y, bias=b, reduction="none")
    assert np.all(np.isinf(np.delete(ce, 1))) and np.isfinite(ce[1])
    assert np.all(np.isfinite(normexp.linear_logsumexp(h, w, bias=b)))
    # every logit -inf: lse -inf, the loss NaN (PyTorch's log_softmax is NaN there too)
    b[:] = -np.inf
    assert np.all(normexp.linear_logsumexp(h, w, bias=b) == -np.inf)
    assert np.all(np.isnan(normexp.linear_cross_entropy(h, w, y, bias=b, reduction="none")))


def test_bad_arguments():
    rng = np.random.default_rng(1)
    h, w, b = make(rng, 4, 20, 6, np.float32)
    y = np.array([0, 19, 3, 4])
    f = normexp.linear_cross_entropy
    with pytest.raises(IndexError, match="20 at position"):
        f(h, w, np.array([0, 20, 3, 4]))
    with pytest.raises(IndexError, match="-1"):
        f(h, w, np.array([0, -1, 3, 4]))
    with pytest.raises(ValueError, match="dim"):
        f(h, w[:, :5], y)
    with pytest.raises(ValueError, match="dim"):
        normexp.linear_logsumexp(h, w[:, :5])
    with pytest.raises(ValueError, match="weight must be 2-d"):
        normexp.linear_logsumexp(h, w[0])
    with pytest.raises(ValueError, match="hidden"):
        normexp.linear_logsumexp(np.float32(1.0), w)
    with pytest.raises(ValueError, match="bias must have shape"):
        f(h, w, y, bias=b[:-1])
    with pytest.raises(ValueError, match="labels have shape"):
        f(h, w, y[:3])
    with pytest.raises(TypeError, match="labels must be integer"):
        f(h, w, y.astype(np.float32))
    with pytest.raises(TypeError, match="same dtype"):
        f(h, w.astype(np.float64), y)
    with pytest.raises(TypeError, match="must be float32 or the weight's dtype"):
        normexp.linear_logsumexp(h.astype(np.float64), w.astype(np.float16))
    with pytest.raises(TypeError, match="same dtype"):
        normexp.linear_logsumexp(h.astype(np.float16), w)
    with pytest.raises(TypeError, match="hidden"):
        normexp.linear_logsumexp(h.astype(np.int32), w)
    with pytest.raises(TypeError, match="bias"):
        normexp.linear_logsumexp(h, w, bias=np.array(["a"] * 20))
    with pytest.raises(ValueError, match="label_smoothing"):
        f(h, w, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        f(h, w, y, label_smoothing=float("nan"))
    with pytest.raises(TypeError, match="label_smoothing"):
        f(h, w, y, label_smoothing="0.1")
    with pytest.raises(ValueError, match="reduction"):
        f(h, w, y, reduction="avg")
    with pytest.raises(TypeError, match="ignore_index"):
        f(h, w, y, ignore_index=1.5)
    # the native layer refuses what the Python layer would never pass, without a crash
    from normexp import _core

    loss = np.zeros(4)
    with pytest.raises(ValueError, match="labels"):
        _core.linear_cross_entropy(h, w, y.astype(np.int32), None, loss, 0.0, True, -100)
    with pytest.raises(ValueError, match="outside"):
        _core.linear_cross_entropy(h, w, np.array([0, 20, 3, 4]), None, loss, 0.0, True, -100)
    with pytest.raises(ValueError, match="unit stride"):
        _core.linear_logsumexp(h, np.asfortranarray(w), None, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="out"):
        _core.linear_logsumexp(h, w, None, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="forward rows"):
        _core.linear_logsumexp(np.broadcast_to(h[0], (4, 6)), w, None, np.zeros(4, np.float32))


THREADS = textwrap.dedent(
    """
    import hashlib, json
    import numpy as np
    import normexp
    rng = np.random.default_rng(9)
    cases = []
    for rows, vocab, dim, dt in [(2, 20000, 64, np.float32), (400, 9000, 40, np.float32), (230, 5000, 24, np.float64)]:
        h = rng.standard_normal((rows, dim)).astype(dt)
        w = rng.standard_normal((vocab, dim)).astype(dt)
        b = rng.standard_normal(vocab).astype(dt)
        y = rng.integers(0, vocab, rows)
        cases.append((h, w, b, y))
    out = {}
    for n in (1, 2, 3, 4):
        normexp.set_num_threads(n)
        assert normexp.get_num_threads() == n
        d = hashlib.sha256()
        for h, w, b, y in cases:
            d.update(normexp.linear_logsumexp(h, w, bias=b).tobytes())
            d.update(normexp.linear_cross_entropy(h, w, y, bias=b, label_smoothing=0.1, reduction="none").tobytes())
        out[n] = d.hexdigest()
    print(json.dumps(out))
    """
)


def test_bit_identical_for_1_to_4_threads(tmp_path):
    script = tmp_path / "lm_head_threads.py"
    script.write_text(THREADS)
    env = dict(os.environ, OMP_NUM_THREADS="4")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(set(out.values())) == 1, out


@pytest.mark.parametrize("wdtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("rows,vocab,dim", SHAPES)
@pytest.mark.parametrize("hidden16", [False, True])
def test_16bit_weight_matches_float64(isa, wdtype, rows, vocab, dim, hidden16):
    """A float16 / bfloat16 weight is read in place and widened in registers: the results are those of the
    float32 computation on the widened weight (float64 reference of the same 16-bit values, float32 bound),
    float32, for both functions; a 16-bit hidden is taken as float32."""
    wd = np.dtype(np.float16) if wdtype == "float16" else np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    rng = np.random.default_rng(rows * 31 + vocab + dim)
    h, w, b = make(rng, rows, vocab, dim, np.float32)
    w16 = w.astype(wd)
    hin = h.astype(wd) if hidden16 else h
    h32 = hin.astype(np.float32)
    x = logits64(h32, w16.astype(np.float32), b)
    got = normexp.linear_logsumexp(hin, w16, bias=b)
    assert got.dtype == np.float32 and got.shape == (rows,)
    ref = lse64(x)
    tol = logit_error(h32, w16.astype(np.float32)) + 8 * unit(np.float32) * (1 + np.abs(ref))
    assert np.all(np.abs(got - ref) <= tol), np.max(np.abs(got - ref) / tol)
    # Negative control: the unrounded float32 weight gives other results than the tolerance allows.
    if vocab > 1 and wdtype == "bfloat16":
        assert np.any(np.abs(lse64(logits64(h32, w, b)) - ref) > tol)
    y = rng.integers(0, vocab, rows)
    ce_ref, _ = ce64(x, y, 0.1, -100)
    ce = normexp.linear_cross_entropy(hin, w16, y, bias=b, label_smoothing=0.1, reduction="none")
    assert ce.dtype == np.float32
    ce_tol = 2 * logit_error(h32, w16.astype(np.float32)) + 16 * unit(np.float32) * (1 + np.abs(ref) + np.max(np.abs(x), axis=1))
    assert np.all(np.abs(ce - ce_ref) <= ce_tol), np.max(np.abs(ce - ce_ref) / ce_tol)


def test_16bit_weight_torch_and_threads():
    """A torch bfloat16 weight tensor goes in without a copy and a tensor comes out; the result does not
    depend on the thread count."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    h, w, _ = make(rng, 300, 5000, 64, np.float32, bias=False)
    wt = torch.from_numpy(w).to(torch.bfloat16)
    ht = torch.from_numpy(h)
    got = normexp.linear_logsumexp(ht, wt)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    want = torch.logsumexp(ht @ wt.float().T, dim=-1)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)
    before = normexp.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            normexp.set_num_threads(n)
            results.append(normexp.linear_logsumexp(h, wt.view(torch.int16).numpy().view(
                np.dtype(pytest.importorskip("ml_dtypes").bfloat16))))
    finally:
        normexp.set_num_threads(before)
    assert all(np.array_equal(results[0], r) for r in results[1:])
