"""cross_entropy with -inf, +inf and NaN scores, label smoothing, ignore_index and every reduction, against
torch.nn.functional.cross_entropy (and an exact reference where PyTorch overflows).

The defect class: the smoothing term's row sum was Neumaier-compensated, and the compensation of a -inf
entry is -inf - (-inf) = NaN, so a -inf score anywhere in a row made the loss NaN with
label_smoothing > 0 (PyTorch: inf). Deliberate differences from PyTorch, checked here too: a used row
with NaN or +inf, or of only -inf, raises ValueError (PyTorch returns NaN); label_smoothing = 1 with a
-inf label's score gives inf (PyTorch: 0 * inf = NaN, although the label's term has weight 0).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import normexp

torch = pytest.importorskip("torch")
F = torch.nn.functional

NINF, INF, NAN = -np.inf, np.inf, np.nan
EPS = [0.0, 0.1, 0.5, 1.0]
REDUCTIONS = ["mean", "sum", "none"]


def _torch(logits: np.ndarray, labels: np.ndarray, axis: int, reduction: str, ignore_index, eps: float):
    x = torch.from_numpy(np.moveaxis(logits, axis, 1).copy())
    y = torch.from_numpy(labels.astype(np.int64))
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    return F.cross_entropy(x, y, reduction=reduction, label_smoothing=eps, **kw).numpy()


def _base(dtype) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(7)
    return (g.standard_normal((6, 5)) * 3).astype(dtype), np.array([0, 4, 2, 3, 1, 2])


# Which rows carry the special values (row index -> how it is modified); labels as in _base.
def _special(dtype, kind: str) -> np.ndarray:
    x, y = _base(dtype)
    if kind == "-inf at the label":
        x[0, y[0]] = NINF
        x[3, y[3]] = NINF
    elif kind == "-inf elsewhere":
        x[1, 0] = NINF
        x[2, [0, 1, 3, 4]] = NINF  # only the label's class is finite: its probability is 1
    elif kind == "-inf everywhere but one":
        x[4, [0, 2, 3, 4]] = NINF
    elif kind == "-inf at the label and elsewhere":
        x[5, [0, 2, 4]] = NINF
    return x


KINDS = ["-inf at the label", "-inf elsewhere", "-inf everywhere but one", "-inf at the label and elsewhere"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore", [False, True])
def test_neg_inf_scores_match_torch(dtype, kind, eps, reduction, ignore, isa):
    x = _special(dtype, kind)
    _, y = _base(dtype)
    if ignore:
        y = y.copy()
        y[[1, 3]] = -100  # one of them holds a -inf label's score in "-inf at the label"
    ign = -100 if ignore else None
    got = normexp.cross_entropy(x, y, reduction=reduction, label_smoothing=eps, ignore_index=ign)
    want = _torch(x, y, 1, reduction, ign, eps)
    assert np.asarray(got).dtype == dtype
    w = np.asarray(want, np.float64)
    g = np.asarray(got, np.float64)
    if eps == 1.0:
        # PyTorch forms (1 - eps) * nll = 0 * inf = NaN for a -inf label's score; the label's term has
        # weight 0 and the smoothing term is +inf there (the row holds -inf): inf.
        w = np.where(np.isnan(w), np.inf, w)
    assert not np.any(np.isnan(g)), g
    np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
    np.testing.assert_allclose(g, w, rtol=2e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_axis_1_with_neg_inf_and_ignored_rows(dtype, eps, reduction):
    # PyTorch's (N, C, d) layout: axis=1, labels (N, d); ignored positions hold NaN or a row of -inf.
    g = np.random.default_rng(8)
    x = (g.standard_normal((3, 4, 5)) * 2).astype(dtype)
    y = g.integers(0, 4, (3, 5))
    x[0, :, 1] = NINF
    x[0, y[0, 2], 2] = NINF
    x[1, :, 3] = NAN
    y[[0, 1], [1, 3]] = -100
    x[2, 0, 0] = NINF
    got = normexp.cross_entropy(x, y, axis=1, reduction=reduction, label_smoothing=eps, ignore_index=-100)
    want = _torch(x, y, 1, reduction, -100, eps)
    if eps == 1.0:
        want = np.where(np.isnan(want), np.inf, want)
    np.testing.assert_array_equal(np.isinf(np.asarray(got)), np.isinf(want))
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=2e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", EPS)
@pytest.mark.parametrize("bad", ["nan", "+inf", "all -inf"])
def test_nan_inf_and_empty_rows_raise_where_torch_answers_nan(dtype, eps, bad):
    x, y = _base(dtype)
    if bad == "nan":
        x[2, 1] = NAN
    elif bad == "+inf":
        x[2, 1] = INF
    else:
        x[2] = NINF
    assert np.isnan(_torch(x, y, 1, "none", None, eps)[2])
    with pytest.raises(ValueError, match="row 2"):
        normexp.cross_entropy(x, y, label_smoothing=eps)
    # Ignored, the row takes no part (PyTorch agrees), next to a used row holding -inf.
    y2 = y.copy()
    y2[2] = -100
    x[4, (y[4] + 1) % 5] = NINF
    for reduction in REDUCTIONS:
        got = normexp.cross_entropy(x, y2, label_smoothing=eps, ignore_index=-100, reduction=reduction)
        want = _torch(x, y2, 1, reduction, -100, eps)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6 if dtype == np.float32 else 1e-12)


def _exact_loss(row: list[float], label: int, eps: float) -> float:
    """(1 - eps) (lse - x_label) + eps (lse - mean x), with the mean in exact rationals (no overflow)."""
    m = max(row)
    lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
    mean = Fraction(sum(Fraction(v) for v in row), len(row))
    return float((1 - Fraction(eps)) * (Fraction(lse) - Fraction(row[label])) + Fraction(eps) * (Fraction(lse) - mean))


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
@pytest.mark.parametrize(
    "row,label",
    [
        ([1e308, 1e308, 0.0], 0),
        ([1e308, -1e308, 0.0], 0),  # PyTorch: inf (its log_softmax -2e308 overflows); the loss is 1e307
        ([-1e308, -1.7e308, -1.7e308, 5.0], 3),
        ([1.7e308] * 8 + [-1.7e308], 2),
    ],
)
def test_smoothing_mean_of_huge_float64_scores(row, label, eps):
    # The row sum overflows float64 while the mean does not: it is summed scaled (exact by 2^-64).
    got = normexp.cross_entropy(np.array([row]), np.array([label]), label_smoothing=eps, reduction="none")
    want = _exact_loss(row, label, eps)
    assert np.isfinite(got[0]) and got[0] == pytest.approx(want, rel=1e-13)
