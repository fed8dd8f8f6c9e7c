"""SciPy's own test file for logsumexp/softmax/log_softmax, run against ``normexp.special``.

SciPy's installed test module ``scipy.special.tests.test_logsumexp`` is imported (not copied), the
names its tests call (``logsumexp``, ``softmax``, ``log_softmax`` and the helper ``_wrap_radians``)
are pointed at normexp.special's for the duration of each test, and its test classes and functions
are exposed here for pytest to collect. A newer SciPy's new cases are picked up without an edit here.
With SciPy 1.17.1 that is 407 cases: 400 that take the ``xp`` fixture, 7 that do not.

What SciPy's own conftest (the module ``scipy.conftest``) provides to that file is provided here, in
this module only, so the rest of the suite is unaffected:
  * ``xp``: the array-API namespace, NumPy only, as SciPy's fixture makes it
    (``array_namespace(np.empty(0))``). SciPy's other backends (array_api_strict, torch, cupy,
    jax.numpy, dask.array; selected there by ``SCIPY_ARRAY_API=1``) are out of scope, since normexp
    takes NumPy arrays: that leaves out the same 400 cases once per backend (800 with torch and dask,
    the two installed here). A ``skip_xp_backends``/``xfail_xp_backends`` mark that names numpy
    (SciPy 1.17.1's file has none) fails the case, so that it is decided on and listed in ``NOT_RUN``
    rather than skipped unseen; marks naming other backends do not apply.
  * ``devices``: NumPy's devices plus None, as in SciPy's fixture.
  * the marks ``skip_xp_backends``/``xfail_xp_backends``, which SciPy registers in its conftest: their
    unknown-mark warning is silenced for the import of SciPy's file only.

``NOT_RUN`` lists the SciPy cases deliberately not run here, each with its reason (they are reported
as skipped with it); it is empty. ``test_suite_is_wired`` checks that every SciPy test is exposed and
that the names really point at normexp during a test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import normexp.special as nx

import scipy.special  # the test extra installs SciPy; without it this file errors rather than skips
from scipy._lib._array_api import array_namespace

with warnings.catch_warnings():
    # skip_xp_backends / xfail_xp_backends are registered by scipy.conftest, which is not loaded here.
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    import scipy.special.tests.test_logsumexp as _scipy_tests

# The module globals of SciPy's test file that name the functions under test (_wrap_radians: SciPy's
# private helper for the imaginary part's branch, which its file tests directly; older files lack it).
PATCHED = {
    "logsumexp": nx.logsumexp,
    "softmax": nx.softmax,
    "log_softmax": nx.log_softmax,
    **({"_wrap_radians": nx._wrap_radians} if hasattr(_scipy_tests, "_wrap_radians") else {}),
}

# SciPy cases deliberately not run, with the reason; keys are test ids as pytest shows them here, a
# prefix of ``Class::method[params]`` (``"TestLogSumExp::test_device"`` covers all its parameters).
# Keep it minimal.
NOT_RUN: dict[str, str] = {}


def _scipy_test_names() -> list[str]:
    return sorted(
        name
        for name, obj in vars(_scipy_tests).items()
        if (name.startswith("Test") and isinstance(obj, type)) or (name.startswith("test") and callable(obj))
    )


# Expose SciPy's tests here under their own names (pytest collects them as items of this module).
for _name in _scipy_test_names():
    globals()[_name] = getattr(_scipy_tests, _name)
del _name


def _not_run_reason(nodeid: str) -> str | None:
    test_id = nodeid.split("::", 1)[1]
    for key, reason in NOT_RUN.items():
        if test_id == key or test_id.startswith(key + "[") or test_id.startswith(key + "::"):
            return reason
    return None


@pytest.fixture(autouse=True)
def _normexp_under_test(request, monkeypatch):
    reason = _not_run_reason(request.node.nodeid)
    if reason is not None:
        pytest.skip(f"not run against normexp (NOT_RUN): {reason}")
    for name, fn in PATCHED.items():
        assert hasattr(_scipy_tests, name), f"SciPy's test file no longer uses {name}"
        monkeypatch.setattr(_scipy_tests, name, fn)


def _xp_marks(request, kind: str) -> str | None:
    """The reason of a ``{kind}_xp_backends`` mark that names numpy (args ``("numpy",)``), if any.
    np_only, cpu_only and eager_only never exclude NumPy in scipy.conftest."""
    for mark in request.node.iter_markers(f"{kind}_xp_backends"):
        if mark.args and mark.args[0] == "numpy":
            return mark.kwargs.get("reason") or "do not run with array API backend: numpy"
    return None


@pytest.fixture(params=[pytest.param(np, id="numpy")])
def xp(request):
    for kind in ("skip", "xfail"):
        reason = _xp_marks(request, kind)
        if reason is not None:
            pytest.fail(f"SciPy marks this case {kind} for NumPy ({reason}): run it, or list it in NOT_RUN with why")
    return array_namespace(request.param.empty(0))


@pytest.fixture
def devices(xp):
    return xp.__array_namespace_info__().devices() + [None]


def test_suite_is_wired():
    names = _scipy_test_names()
    assert "TestLogSumExp" in names and "TestSoftmax" in names and "TestLogSoftmax" in names
    for key in NOT_RUN:
        assert key.split("::")[0].split("[")[0] in names, f"NOT_RUN: SciPy's file has no test {key!r}"
    for name in names:
        assert globals().get(name) is getattr(_scipy_tests, name), name
    # Inside a test (the autouse fixture is active) SciPy's file calls normexp's functions.
    for name, fn in PATCHED.items():
        assert getattr(_scipy_tests, name) is fn
    assert _scipy_tests.logsumexp is not scipy.special.logsumexp


# ---- beyond SciPy's file: the compatibility points it does not pin down ----------------------------------
# Compared with scipy.special itself: result type (NumPy scalar or array), dtype, shape and values.
def _same(got, want):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _same(g, w)
        return
    assert type(got) is type(want), (type(got), type(want))
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype, got.shape, want.shape)
    rtol = 1e-5 if got.dtype in (np.float32, np.complex64) else 1e-13
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "a,b",
    [
        (np.float32([1, 2]), 2.0),  # a Python float is weak: float32
        (np.float32([1, 2]), np.float64(2.0)),  # a NumPy scalar is not: float64
        (np.float32([1, 2]), np.int64([1, 2])),  # float32 with int64: float64
        (np.int32([1, 2]), np.float32([1, 2])),
        (np.int8([1, 2]), None),  # integers: float64, not np.exp's float16
        (np.array([True, False]), np.float32([1, 1])),
        (np.float16([1, 2]), None),
        (np.float16([1, 2]), np.float32([1, 1])),
        (np.float32([1, 2]), 2j),  # a complex weight makes the result complex64
        (np.float64([1, 2]), np.complex64([1, 1j])),
        (np.complex64([1, 2j]), np.float64([1, -1])),
        (2.5, None),
        (np.array(2.5, np.float32), [1.0, 2.0]),  # b enlarges a
        (1 + 2j, None),
    ],
)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("return_sign", [False, True])
def test_logsumexp_dtypes_and_scalars_as_scipy(a, b, keepdims, return_sign):
    kw = {"b": b, "keepdims": keepdims, "return_sign": return_sign}
    _same(nx.logsumexp(a, **kw), scipy.special.logsumexp(a, **kw))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize(
    "x,axis",
    [
        (1000, None),
        (np.float32(3.0), None),
        (np.array(-np.inf), 0),
        (2 + 3j, None),
        (np.array([[1 + 1j, 2 - 3j], [np.inf, 0j]]), 1),
        (np.arange(24.0).reshape(2, 3, 4) * (1 - 0.5j), (0, 2)),
        (np.complex64([[1j, 2], [3, 4j]]), None),
    ],
)
def test_elementwise_scalars_and_complex_as_scipy(name, x, axis):
    with np.errstate(all="ignore"):
        _same(getattr(nx, name)(x, axis=axis), getattr(scipy.special, name)(x, axis=axis))
