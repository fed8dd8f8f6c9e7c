"""The float32 log_softmax of the default accuracy, written y = fl(fl(x - m) - fl(c)) in float32 at unit
temperature (c = log(sum), counted and log1p'd; cpp/src/kernels/kernel_table.hpp, below log_sum_out) and rounded
once from double with a temperature: its error bound (docs/accuracy.md), shift invariance, signed zeros,
traversals, layouts and thread counts, on every ISA this CPU runs (normexp.use_isa).

The bound: 1.5 ULP from the output's three roundings (x - m <= 0 <= c: no cancellation), which the scalar set
meets (its sum is exact far below a float32 ULP); the SIMD sets' float32 exps (<= 1 ULP each) reach c through the
sum, up to 1 ULP more near the maximum (a row [743.7077, 738.8576]: 1.36 ULP on AVX2 and AVX-512).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sps

import normexp

ISAS = normexp.available_isas()
SIMD = [i for i in ISAS if i != "scalar"]
F32 = np.float32
TINY = np.finfo(F32).tiny


@pytest.fixture(params=ISAS)
def isa(request):
    with normexp.use_isa(request.param):
        yield request.param


def ref_ls(x, axis=-1, T=1.0):
    """long double x/T - m - log1p(rest), one maximal term left out of rest."""
    xl = np.moveaxis(np.asarray(x, dtype=np.longdouble) / np.longdouble(T), axis, -1)
    m = np.max(xl, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(xl - m)
        first = np.argmax(xl == m, axis=-1)[..., None]
        rest = np.sum(np.where(np.arange(xl.shape[-1]) == first, 0, e), axis=-1, keepdims=True)
        r = (xl - m) - np.log1p(rest)
    return np.moveaxis(r, -1, axis)


def ulp_err(got, ref):
    """|got - ref| in ULPs of got's dtype at ref (finite normal results only; others 0)."""
    got = np.asarray(got)
    r = np.asarray(ref, dtype=np.longdouble)
    sp = np.spacing(np.abs(r.astype(got.dtype))).astype(np.longdouble)
    with np.errstate(invalid="ignore"):
        e = (np.abs(got.astype(np.longdouble) - r) / sp).astype(np.float64)
    ok = np.isfinite(r) & (np.abs(r) >= np.finfo(got.dtype).tiny)
    return np.where(ok, e, 0.0)


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view({2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize])


def random_rows(seed, count=600):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.choice(list(range(1, 71)) + [128, 1000]))
        x = rng.standard_normal(n) * 10 ** rng.uniform(-3, 3) + rng.choice([0.0, rng.uniform(-1e4, 1e4), 3e38, -3e38])
        k = rng.integers(6)
        if k == 1 and n > 1:
            x[rng.integers(n)] = x.max() + rng.uniform(3, 20)  # dominant maximum, small normal y there
        if k == 2 and n > 1:
            x[rng.integers(n, size=3)] = x.max()  # ties
        if k == 3 and n > 1:
            x[rng.integers(n, size=n // 2)] = -np.inf
        if k == 4:
            x[:] = x[0]
        x = np.where(np.isinf(x), x, np.clip(x, -np.finfo(F32).max, np.finfo(F32).max)).astype(F32)
        yield x


# ---- the formation itself (scalar set: its sum is exact to far below a float32 ULP) -------------------------

def test_scalar_within_bound():
    with normexp.use_isa("scalar"):
        worst = max(ulp_err(normexp.log_softmax(x), ref_ls(x)).max() for x in random_rows(1))
    assert worst <= 1.5, worst


def test_scalar_at_the_maximum_rounded_once():
    """At the maximum y = -fl(c): c rounded once (plus log_sum_float's 2^-30 relative); elsewhere 1.5 ULP."""
    rng = np.random.default_rng(2)
    a = (rng.choice([-1, 1], 50000) * 10 ** rng.uniform(0, 5, 50000)).astype(F32)
    b = (a.astype(np.float64) - rng.uniform(3, 20, 50000)).astype(F32)
    x = np.stack([a, b], 1)
    r = ref_ls(x)
    with normexp.use_isa("scalar"):
        y = normexp.log_softmax(x)
    assert ulp_err(y[:, 0], r[:, 0]).max() <= 0.5 + 2.0**-5
    assert ulp_err(y[:, 1], r[:, 1]).max() <= 1.5


def test_invariant_to_a_row_constant(isa):
    """y depends on x only through fl(x - m): scores whose differences are exact give the same bits after a
    per-row shift (dyadic scores k/16 with |k| < 2^19 plus c/16)."""
    rng = np.random.default_rng(11)
    for n in [1, 2, 15, 16, 17, 100, 128, 1000, 4099]:
        x = (rng.integers(-(2**19), 2**19, (5, n)) / 16).astype(F32)
        c = (rng.integers(-(2**19), 2**19, (5, 1)) / 16).astype(F32)
        assert np.array_equal(bits(normexp.log_softmax(x + c)), bits(normexp.log_softmax(x))), n
        assert np.array_equal(bits(normexp.log_softmax((x + c).T, axis=0)), bits(normexp.log_softmax(x.T, axis=0)))


@pytest.mark.parametrize("T", [0.7, 3e-3, 250.0, 1.0000001])
def test_scalar_temperature_path(T):
    """With a temperature: rounded once from double; c's 2^-30 relative error costs <= 2^-6 ULP."""
    rng = np.random.default_rng(3)
    a = (rng.choice([-1, 1], 30000) * 10 ** rng.uniform(0, 4, 30000)).astype(F32)
    b = (a.astype(np.float64) - rng.uniform(3, 20, 30000)).astype(F32)
    x = np.stack([a, b], 1)
    with normexp.use_isa("scalar"), np.errstate(all="ignore"):
        y = normexp.log_softmax(x, temperature=T)
    assert ulp_err(y, ref_ls(x, T=T)).max() <= 0.5 + 2.0**-5


def test_unit_temperature_is_default(isa):
    x = np.random.default_rng(4).standard_normal((9, 333)).astype(F32) * 40
    assert np.array_equal(bits(normexp.log_softmax(x, temperature=1.0)), bits(normexp.log_softmax(x)))
    # 1.0000001 takes the double path: within 0.52 ULP on the scalar set, and not the unit-temperature bits
    y = normexp.log_softmax(x, temperature=1.0000001)
    assert ulp_err(y, ref_ls(x, T=1.0000001)).max() <= (0.52 if isa == "scalar" else 2.0)


# ---- every ISA: the bound --------------------------------------------------------------------------------

BOUND = {"scalar": 1.5}  # SIMD: the float32 exps of the sum add up to 1 ULP


def test_all_isas_within_bound_random(isa):
    worst = max(ulp_err(normexp.log_softmax(x), ref_ls(x)).max() for x in random_rows(5, 400))
    assert worst <= BOUND.get(isa, 2.5), f"{isa}: {worst:.3f} ULP"


@pytest.mark.parametrize("row", [[3688.9023, 3680.2249], [743.7077, 738.8576]])
def test_dominant_max_two_entries(isa, row):
    """y = -log1p(exp(-d)) at the maximum: the sum's exp error (SIMD float32 exp, <= 1 ULP) passes into y."""
    x = np.array(row, F32)
    e = ulp_err(normexp.log_softmax(x), ref_ls(x)).max()
    assert e <= BOUND.get(isa, 2.5), f"{isa}: {e:.3f} ULP"


# ---- bit identity -----------------------------------------------------------------------------------------

def test_exact_sum_rows_same_bits_on_every_isa():
    """Rows whose sum is exact on every set (ties at the max, -inf, equal values): identical bits."""
    rng = np.random.default_rng(6)
    xs = []
    for n in list(range(1, 70)) + [1000, 4097]:
        x = np.full(n, -np.inf, F32)
        x[rng.integers(n, size=max(1, n // 3))] = F32(rng.uniform(-1e4, 1e4))
        xs.append(x)
        xs.append(np.full(n, F32(rng.uniform(-3e38, 3e38)), F32))
    outs = {}
    for i in ISAS:
        with normexp.use_isa(i):
            outs[i] = [bits(normexp.log_softmax(x)) for x in xs]
    for i in ISAS:
        for a, b in zip(outs[i], outs["scalar"]):
            assert np.array_equal(a, b), i


def test_simd_close_to_scalar():
    for x in random_rows(7, 300):
        with normexp.use_isa("scalar"):
            s = normexp.log_softmax(x)
        for i in SIMD:
            with normexp.use_isa(i):
                y = normexp.log_softmax(x)
            with np.errstate(invalid="ignore"):
                d = np.abs(y.astype(np.float64) - s) / np.spacing(np.abs(s)).astype(np.float64)
            d = np.where(np.isfinite(s) & (np.abs(s) >= TINY), d, 0)
            assert d.max() <= 2.0, (i, d.max())


@pytest.mark.parametrize("n", [65537, 200000])
def test_threads_and_layouts_bit_identical(isa, n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 30 + 5000).astype(F32)
    x[rng.integers(n)] += 25
    base = None
    old = normexp.get_num_threads()
    try:
        for nt in (1, 2):
            normexp.set_num_threads(nt)
            for y in (normexp.log_softmax(x), normexp.log_softmax(np.stack([x, x])[1]),
                      normexp.log_softmax(np.stack([x, -x]).T, axis=0)[:, 0],
                      normexp.log_softmax(np.repeat(x, 2)[::2])):
                if base is None:
                    base = bits(y)
                assert np.array_equal(bits(y), base), nt
    finally:
        normexp.set_num_threads(old)
    assert ulp_err(normexp.log_softmax(x), ref_ls(x)).max() <= BOUND.get(isa, 2.5)


@pytest.mark.parametrize("w", [1, 7, 16, 17, 33, 70, 1030])
def test_traversals_bit_identical(isa, w):
    rng = np.random.default_rng(w)
    x = (rng.standard_normal((37, w)) * 20 + 700).astype(F32)
    x[3] += 40
    yc = normexp.log_softmax(x, axis=0)
    # SIMD: the float32 exps of the sum put up to 1.9 ULP (2.0 along rows) into y here
    assert ulp_err(yc, ref_ls(x, axis=0)).max() <= BOUND.get(isa, 2.5)
    o = np.empty_like(x)
    normexp.log_softmax(x, axis=0, out=o)
    assert np.array_equal(bits(o), bits(yc))
    xi = x.copy()
    normexp.log_softmax(xi, axis=0, out=xi)
    assert np.array_equal(bits(xi), bits(yc))
    assert np.array_equal(bits(normexp.log_softmax(x, axis=0, where=np.ones(x.shape, bool))), bits(yc))
    x3 = np.ascontiguousarray(np.broadcast_to(x, (3,) + x.shape))
    assert np.array_equal(bits(normexp.log_softmax(x3, axis=1)[2]), bits(yc))
    yr = normexp.log_softmax(x, axis=-1)
    assert np.array_equal(bits(normexp.log_softmax(np.repeat(x, 2, axis=1)[:, ::2], axis=-1)), bits(yr))
    mk = rng.random(x.shape) < 0.6
    mk[:, 0] = True
    a = normexp.log_softmax(x, axis=-1, where=mk)
    b = normexp.log_softmax(np.where(mk, x, -np.inf).astype(F32), axis=-1)
    assert np.array_equal(bits(np.where(mk, a, 0)), bits(np.where(mk, b, 0)))
    if isa == "scalar":  # rows and columns agree bit for bit on the scalar set
        assert np.array_equal(bits(normexp.log_softmax(np.ascontiguousarray(x.T), axis=-1).T), bits(yc))


# ---- special values (SciPy's rules, signed zeros included) -------------------------------------------------

@pytest.mark.parametrize("row", [[-0.0], [-0.0, -np.inf], [-np.inf, -0.0, -np.inf]])
def test_signed_zero_of_exact_zero_result(isa, row):
    """An exactly 0 result is +0.0, as SciPy's, float64's and every mode's (a formula of the form (x - a) - b
    with a = b = +0 gives -0.0 for x = -0.0)."""
    x = np.array(row, F32)
    y = normexp.log_softmax(x)
    r = sps.log_softmax(x.astype(np.float64))
    z = r == 0
    assert np.array_equal(np.signbit(y[z]), np.signbit(r[z])), y
    yc = normexp.log_softmax(x[:, None] * np.ones((1, 5), F32), axis=0)
    assert not np.signbit(yc[z]).any(), yc


def test_special_rows_match_scipy(isa):
    inf, nan = np.inf, np.nan
    rows = [[nan, 1.0], [inf, 1.0], [-inf, -inf], [inf, inf, -inf], [1.0, -inf], [3e38, -3e38],
            [3.4028235e38, -3.4028235e38, 3.4028235e38], [1e-45, -1e-45, 0.0]]
    for r in rows:
        x = np.array(r, F32)
        with np.errstate(all="ignore"):
            ref = sps.log_softmax(x.astype(np.float64)).astype(F32)
            y = normexp.log_softmax(x)
        assert np.array_equal(np.isnan(y), np.isnan(ref)), r
        f = ~np.isnan(ref)
        assert np.array_equal(y[f], ref[f]), (r, y, ref)
    for shape, ax in [((0,), 0), ((0, 3), 0), ((3, 0), 1), ((0, 3), 1)]:
        assert normexp.log_softmax(np.zeros(shape, F32), axis=ax).shape == shape


# ---- 16-bit types --------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_16bit_within_1ulp(isa, dt):
    if dt == "bfloat16":
        ml = pytest.importorskip("ml_dtypes")
        dtype = ml.bfloat16
    else:
        dtype = np.float16
    rng = np.random.default_rng(9)
    for n in [1, 5, 17, 33, 64, 1000]:
        x = (rng.standard_normal((4, n)) * rng.choice([0.1, 1, 5, 20])).astype(dtype)
        x[:, 0] += dtype(12)
        r = ref_ls(x.astype(np.float64)).astype(np.float64).astype(dtype)
        for y in (normexp.log_softmax(x), normexp.log_softmax(np.ascontiguousarray(x.T), axis=0).T):
            a = bits(y).astype(np.int64)
            b = bits(r).astype(np.int64)
            a = np.where(a < 0, -32768 - a, a)
            b = np.where(b < 0, -32768 - b, b)
            assert np.abs(a - b).max() <= 1, (dt, n)
