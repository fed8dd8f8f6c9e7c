"""Absurd values for every argument of every public function: each call either succeeds or raises
TypeError or ValueError (NumPy's AxisError, a ValueError, for axes) whose message names the argument.

Never SystemError, OverflowError, RuntimeError, MemoryError, pybind11's "incompatible function arguments"
dump, or an error that does not say which argument is wrong.

The functions are enumerated from the modules' ``__all__`` and their parameters from their signatures:
TABLE must have a row for every public function and an entry for every parameter, so a new function or
argument fails test_table_covers_every_public_function_and_argument until it is added here. Every
absurd value (VALUES) is tried on every argument, each in an otherwise valid call (TABLE's base
arguments); dask results are computed, so errors raised inside tasks count too.
"""

from __future__ import annotations

import inspect
import re
import types
import warnings
from typing import Any, Callable

import numpy as np
import pytest

import normexp
from normexp import special

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import normexp.dask as nd  # noqa: E402

INF, NAN = float("inf"), float("nan")


def _ragged() -> list:
    return [[1, "a"], [2.0]]


# ---- the absurd values: (label, factory) so that every call gets fresh objects ----------------------------
VALUES: list[tuple[str, Callable[[], Any]]] = [
    # huge and tiny Python ints
    *[(f"int {v}", (lambda v=v: v)) for v in (2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**70, -(2**31) - 1,
                                               -(2**63), -(2**63) - 1, -(2**70), 10**400, -(10**400), 0, -1)],
    # special floats
    *[(f"float {v!r}", (lambda v=v: v)) for v in (INF, -INF, NAN, -0.0, 0.0, 1e308, -1e308, 1.7976931348623157e308,
                                                   5e-324, -5e-324, 1e-300, 3.5e38, 1e39, 0.5, -0.5, 2.5)],
    # bools
    ("True", lambda: True),
    ("False", lambda: False),
    # wrong types
    ("str", lambda: "str"),
    ("empty str", lambda: ""),
    ("bytes", lambda: b"bytes"),
    ("None", lambda: None),
    ("complex", lambda: 1 + 2j),
    ("object()", lambda: object()),
    ("ragged mixed list", _ragged),
    ("ragged list", lambda: [[1, 2], [3]]),
    ("list of lists of mixed type", lambda: [[1.0, None], ["x", 2j]]),
    ("dict", lambda: {"a": 1}),
    ("empty dict", lambda: {}),
    ("set", lambda: {1, 2}),
    ("empty tuple", lambda: ()),
    ("tuple of huge ints", lambda: (2**70, -(2**70))),
    ("slice", lambda: slice(1, 2)),
    ("Ellipsis", lambda: Ellipsis),
    ("a builtin function", lambda: len),
    ("a class", lambda: int),
    # NumPy scalars of many dtypes
    ("np.int8(-128)", lambda: np.int8(-128)),
    ("np.uint8(255)", lambda: np.uint8(255)),
    ("np.int16(-32768)", lambda: np.int16(-32768)),
    ("np.uint16(65535)", lambda: np.uint16(65535)),
    ("np.int32(-2**31)", lambda: np.int32(-(2**31))),
    ("np.uint32(2**32-1)", lambda: np.uint32(2**32 - 1)),
    ("np.int64(-2**63)", lambda: np.int64(-(2**63))),
    ("np.int64(2**63-1)", lambda: np.int64(2**63 - 1)),
    ("np.uint64(2**64-1)", lambda: np.uint64(2**64 - 1)),
    ("np.uint64(1)", lambda: np.uint64(1)),
    ("np.float16(65504)", lambda: np.float16(65504)),
    ("np.float16(nan)", lambda: np.float16(NAN)),
    ("np.float16(-inf)", lambda: np.float16(-INF)),
    ("np.float32(3.4e38)", lambda: np.float32(3.4e38)),
    ("np.float32(1e-45)", lambda: np.float32(1e-45)),
    ("np.float32(-0.0)", lambda: np.float32(-0.0)),
    ("np.float64(nan)", lambda: np.float64(NAN)),
    ("np.float64(5e-324)", lambda: np.float64(5e-324)),
    ("np.float64(1e308)", lambda: np.float64(1e308)),
    ("np.longdouble(1e4000)", lambda: np.longdouble("1e4000")),
    ("np.longdouble(1e-4000)", lambda: np.longdouble("1e-4000")),
    ("np.complex64(1j)", lambda: np.complex64(1j)),
    ("np.complex128(1+1j)", lambda: np.complex128(1 + 1j)),
    ("np.bool_(True)", lambda: np.bool_(True)),
    ("np.bool_(False)", lambda: np.bool_(False)),
    ("np.datetime64", lambda: np.datetime64("2020-01-01")),
    ("np.timedelta64", lambda: np.timedelta64(5, "s")),
    ("np.str_", lambda: np.str_("a")),
    ("np.bytes_", lambda: np.bytes_(b"a")),
    ("np.void", lambda: np.void(b"\x00")),
    # absurd arrays
    ("0-d object array of a huge int", lambda: np.array(2**70, dtype=object)),
    ("object array", lambda: np.array([None, 1], dtype=object)),
    ("float64 extremes", lambda: np.array([1e308, -1e308])),
    ("inf and nan", lambda: np.array([INF, NAN])),
    ("empty", lambda: np.zeros((0,))),
    ("empty 3-d", lambda: np.zeros((2, 0, 3))),
    ("6-d", lambda: np.ones((1, 1, 1, 1, 1, 1))),
    ("strings", lambda: np.array(["a", "b"])),
    ("complex array", lambda: np.ones(2, np.complex64)),
    ("structured", lambda: np.zeros(3, dtype=[("a", "f4"), ("b", "f4")])),
    ("byte-swapped", lambda: np.ones((3, 5), ">f4")),
    ("float16 array", lambda: np.ones((3, 5), np.float16)),
    ("bool array", lambda: np.array([True, False])),
    ("uint64 array", lambda: np.array([2**64 - 1, 0], np.uint64)),
    ("datetime array", lambda: np.array(["2024-01-01"], dtype="datetime64[D]")),
]


# ---- the table: every public function, a valid call, and its parameters -----------------------------------
def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)


def _att() -> dict:
    g = np.random.default_rng(1)
    return {
        "q": g.standard_normal((2, 4, 3)).astype(np.float32),
        "k": g.standard_normal((2, 5, 3)).astype(np.float32),
        "v": g.standard_normal((2, 5, 3)).astype(np.float32),
    }


def _merge() -> dict:
    a = _att()
    o1, l1 = normexp.attention(a["q"], a["k"][:, :2], a["v"][:, :2], return_lse=True)
    o2, l2 = normexp.attention(a["q"], a["k"][:, 2:], a["v"][:, 2:], return_lse=True)
    return {"outs": [o1, o2], "lses": [l1, l2]}


def _ce() -> dict:
    return {"logits": (_x() * 3)[:3, :4], "labels": np.array([0, 3, 2])}


def _fit() -> dict:
    # Labels drawn independently of the logits: not separable, so the fitted temperature is interior.
    g = np.random.default_rng(3)
    return {"logits": g.standard_normal((16, 4)).astype(np.float32), "labels": g.integers(0, 4, 16)}


def _lm() -> dict:
    g = np.random.default_rng(5)
    return {"hidden": g.standard_normal((3, 5)).astype(np.float32), "weight": g.standard_normal((7, 5)).astype(np.float32)}


def _dask_x() -> Any:
    return da.from_array(_x(), chunks=(3, 2))  # the class axis over three chunks: the merge path


def _paged() -> dict:
    g = np.random.default_rng(1)
    return {
        "q": g.standard_normal((2, 4, 3)).astype(np.float32),
        "k_pages": g.standard_normal((4, 2, 2, 3)).astype(np.float32),
        "v_pages": g.standard_normal((4, 2, 2, 3)).astype(np.float32),
        "block_table": np.array([[3, 0], [1, 2]], np.int32),
        "seq_lens": np.array([3, 4], np.int32),
    }


def _dask_att() -> dict:
    a = _att()
    return {"q": a["q"], "k": da.from_array(a["k"], chunks=(2, 2, 3)), "v": da.from_array(a["v"], chunks=(2, 2, 3))}


def _use_isa(**kw: Any) -> None:
    with normexp.use_isa(**kw):
        pass


# qualified name -> (call, base kwargs factory, the parameters' names)
TABLE: dict[str, tuple[Callable[..., Any], Callable[[], dict], set[str]]] = {
    "normexp.softmax": (normexp.softmax, lambda: {"x": _x()}, {"x", "axis", "temperature", "where", "accuracy", "out"}),
    "normexp.log_softmax": (normexp.log_softmax, lambda: {"x": _x()}, {"x", "axis", "temperature", "where", "accuracy", "out"}),
    "normexp.logsumexp": (normexp.logsumexp, lambda: {"x": _x()}, {"x", "axis", "b", "keepdims", "return_sign", "accuracy", "out"}),
    "normexp.set_num_threads": (normexp.set_num_threads, lambda: {"n": 1}, {"n"}),
    "normexp.get_num_threads": (normexp.get_num_threads, dict, set()),
    "normexp.isa": (normexp.isa, dict, set()),
    "normexp.available_isas": (normexp.available_isas, dict, set()),
    "normexp.isa_extensions": (normexp.isa_extensions, dict, set()),
    "normexp.use_isa": (_use_isa, lambda: {"name": "scalar"}, {"name"}),
    "normexp.attention": (
        normexp.attention, _att,
        {"q", "k", "v", "mask", "is_causal", "scale", "window", "softcap", "alibi_slopes", "causal_alignment",
         "sinks", "return_lse", "out"},
    ),
    "normexp.merge_attention": (normexp.merge_attention, _merge, {"outs", "lses"}),
    "normexp.paged_attention": (
        normexp.paged_attention, _paged,
        {"q", "k_pages", "v_pages", "block_table", "seq_lens", "query_start", "is_causal", "scale", "sinks", "window",
         "softcap", "alibi_slopes", "return_lse", "out"},
    ),
    "normexp.sample": (normexp.sample, lambda: {"logits": _x(), "rng": 0},
                       {"logits", "temperature", "top_k", "top_p", "min_p", "logit_bias", "prev_tokens",
                        "repetition_penalty", "presence_penalty", "frequency_penalty", "return_logprobs", "rng"}),
    "normexp.cross_entropy": (normexp.cross_entropy, _ce,
                              {"logits", "labels", "axis", "reduction", "ignore_index", "label_smoothing"}),
    "normexp.fit_temperature": (normexp.fit_temperature, _fit,
                                {"logits", "labels", "axis", "ignore_index", "bounds", "max_iter"}),
    "normexp.calibration_error": (
        normexp.calibration_error, lambda: {"probs": normexp.softmax(_ce()["logits"]), "labels": np.array([0, 3, 2])},
        {"probs", "labels", "n_bins", "axis"},
    ),
    "normexp.linear_logsumexp": (normexp.linear_logsumexp, _lm, {"hidden", "weight", "bias"}),
    "normexp.linear_cross_entropy": (
        normexp.linear_cross_entropy, lambda: {**_lm(), "labels": np.array([0, 2, 1])},  # valid for any vocab >= 3
        {"hidden", "weight", "labels", "bias", "ignore_index", "label_smoothing", "reduction"},
    ),
    "normexp.special.softmax": (special.softmax, lambda: {"x": _x()}, {"x", "axis"}),
    "normexp.special.log_softmax": (special.log_softmax, lambda: {"x": _x()}, {"x", "axis"}),
    "normexp.special.logsumexp": (special.logsumexp, lambda: {"a": _x(), "b": np.ones(5)},
                                  {"a", "axis", "b", "keepdims", "return_sign"}),
    "normexp.dask.softmax": (nd.softmax, lambda: {"x": _dask_x()}, {"x", "axis", "temperature", "where", "accuracy", "split_every"}),
    "normexp.dask.log_softmax": (nd.log_softmax, lambda: {"x": _dask_x()},
                                 {"x", "axis", "temperature", "where", "accuracy", "split_every"}),
    "normexp.dask.logsumexp": (nd.logsumexp, lambda: {"x": _dask_x()}, {"x", "axis", "keepdims", "accuracy", "split_every"}),
    "normexp.dask.attention": (
        nd.attention, _dask_att,
        {"q", "k", "v", "mask", "is_causal", "scale", "window", "softcap", "alibi_slopes", "causal_alignment",
         "sinks", "return_lse", "split_every"},
    ),
}

# Public names that are not functions taking arguments.
NOT_FUNCTIONS = {
    "normexp.special": "a module (its functions have rows)",
    "normexp.__version__": "a string",
    "normexp.TemperatureFit": "a result type (a NamedTuple: its fields hold what fit_temperature computed)",
}


def _public() -> dict[str, Any]:
    found = {}
    for modname, mod in (("normexp", normexp), ("normexp.special", special), ("normexp.dask", nd)):
        for name in mod.__all__:
            found[f"{modname}.{name}"] = getattr(mod, name)
    return found


def _params(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)


def test_table_covers_every_public_function_and_argument():
    public = _public()
    for qual, obj in public.items():
        if qual in NOT_FUNCTIONS:
            assert isinstance(obj, (types.ModuleType, str, type)), qual
            continue
        assert qual in TABLE, f"{qual} has no row in TABLE: add its base call and its parameters"
        assert TABLE[qual][2] == _params(obj), (qual, _params(obj) ^ TABLE[qual][2])
    assert set(TABLE) <= set(public), set(TABLE) - set(public)


@pytest.mark.parametrize("qual", sorted(TABLE))
def test_table_base_call_is_valid(qual):
    call, base, _ = TABLE[qual]
    _compute(call(**base()))


def _compute(r: Any) -> Any:
    """dask results are computed (errors inside tasks count); others are returned as they are."""
    if isinstance(r, tuple) and any(isinstance(v, da.Array) for v in r):
        return dask.compute(*r, scheduler="sync")
    if isinstance(r, da.Array):
        return r.compute(scheduler="sync")
    return r


def _names_argument(msg: str, arg: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", msg) is not None


CASES = [(qual, arg) for qual in sorted(TABLE) for arg in sorted(TABLE[qual][2])]


@pytest.fixture
def restore_threads():
    yield
    normexp.set_num_threads(0)  # the default: as many as OpenMP allows


@pytest.mark.parametrize("qual,arg", CASES, ids=[f"{q}-{a}" for q, a in CASES])
def test_absurd_value_is_accepted_or_refused_by_name(qual, arg, restore_threads):
    call, base, _ = TABLE[qual]
    problems = []
    for label, make in VALUES:
        kwargs = base()
        kwargs[arg] = make()
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. fit_temperature's "no minimum inside the bounds"
                _compute(call(**kwargs))
        except (TypeError, ValueError) as e:  # AxisError is a ValueError
            msg = str(e)
            if "incompatible function arguments" in msg:
                problems.append(f"{label}: pybind11 dump {msg[:120]!r}")
            elif not (_names_argument(msg, arg) or (arg == "n" and "set_num_threads" in msg)):
                problems.append(f"{label}: {type(e).__name__} does not name {arg!r}: {msg[:160]!r}")
        except Exception as e:  # noqa: BLE001 - anything else is the defect this test looks for
            problems.append(f"{label}: {type(e).__name__}: {str(e)[:160]!r}")
    assert not problems, f"{qual}({arg}=...):\n  " + "\n  ".join(problems)


# ---- specific regressions behind the table ------------------------------------------------------------------
@pytest.mark.parametrize("fn", [normexp.softmax, normexp.log_softmax, normexp.logsumexp])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_clears_overflow_of_huge_ints(fn, dtype):
    # The one-crossing fast path read axis=2**63 / temperature=10**400 with a C conversion that set
    # OverflowError and went on: SystemError "returned a result with an exception set".
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    for axis in (2**63, -(2**63) - 1, 2**70, 10**400):
        with pytest.raises(np.exceptions.AxisError):
            fn(x, axis=axis)
    if fn is not normexp.logsumexp:
        for t in (10**400, -(10**400)):
            with pytest.raises(ValueError, match="temperature"):
                fn(x, temperature=t)
        # A huge int that float64 holds is a valid temperature: the scores are ~0, softmax uniform.
        np.testing.assert_allclose(normexp.softmax(x, temperature=2**70), np.full((2, 3), 1 / 3), rtol=1e-6)


def test_huge_real_arguments_are_refused_by_name():
    x = _x()
    cases = [
        (normexp.sample, {"logits": x, "temperature": 10**400}, "temperature"),
        (normexp.sample, {"logits": x, "top_p": 10**400}, "top_p"),
        (normexp.sample, {"logits": x, "min_p": -(10**400)}, "min_p"),
        (normexp.cross_entropy, {**_ce(), "label_smoothing": 10**400}, "label_smoothing"),
        (normexp.fit_temperature, {**_ce(), "bounds": (1, 10**400)}, "bounds"),
        (normexp.attention, {**_att(), "scale": 10**400}, "scale"),
        (normexp.attention, {**_att(), "softcap": 10**400}, "softcap"),
    ]
    for fn, kw, name in cases:
        with pytest.raises(ValueError, match=name):
            fn(**kw)


@pytest.mark.parametrize("ign", [2**63, 2**70, -(2**63) - 1, -(2**70), 10**400])
def test_ignore_index_beyond_int64_matches_nothing(ign):
    # A valid int that no int64 label can equal: nothing is ignored (pybind11 refused it before).
    kw = _ce()
    for reduction in ("mean", "sum", "none"):
        want = normexp.cross_entropy(**kw, reduction=reduction)
        got = normexp.cross_entropy(**kw, reduction=reduction, ignore_index=ign)
        np.testing.assert_array_equal(got, want)
    kw = _fit()
    assert normexp.fit_temperature(**kw, ignore_index=ign) == normexp.fit_temperature(**kw)


def test_set_num_threads_clips_huge_counts(restore_threads):
    normexp.set_num_threads(0)
    cap = normexp.get_num_threads()
    normexp.set_num_threads(2**70)
    assert normexp.get_num_threads() == cap
    normexp.set_num_threads(1)
    normexp.set_num_threads(-(2**70))  # <= 0: as many as allowed
    assert normexp.get_num_threads() == cap


def test_calibration_error_with_bins_finer_than_float64():
    # n_bins beyond 2^53: each confidence's bin is computed exactly (the float product conf * n_bins
    # overflowed int64 and Python ints beyond float64 raised OverflowError).
    probs = np.array([[0.3, 0.7], [0.6, 0.4], [0.55, 0.45], [0.9, 0.1]])
    labels = np.array([1, 1, 0, 0])
    # Bins this fine separate every distinct confidence: ECE = mean |correct - conf| over the rows.
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    want = float(np.mean(np.abs(correct - conf)))
    for n in (2**53 + 1, 2**64, 2**70, 10**400):
        assert normexp.calibration_error(probs, labels, n_bins=n) == pytest.approx(want, rel=1e-15)
    # Two equal confidences share a bin however fine: their gaps add before the absolute value.
    p2 = np.array([[0.8, 0.2], [0.8, 0.2]])
    assert normexp.calibration_error(p2, np.array([0, 1]), n_bins=10**400) == pytest.approx(abs((1 - 0.8) + (0 - 0.8)) / 2)


@pytest.mark.parametrize("fn", [normexp.logsumexp, special.logsumexp])
def test_flags_are_not_read_by_truthiness(fn):
    x = _x()
    for name in ("keepdims", "return_sign"):
        for bad in ("no", np.array([True, False]), None, 2, 0.0):
            with pytest.raises(TypeError, match=name):
                fn(x, **{name: bad})
        fn(x, **{name: 1})  # the integers 0 and 1 are accepted, as NumPy's keepdims does


def test_choices_refuse_non_strings_by_name():
    # `value not in options` with an array raised NumPy's "truth value of an array is ambiguous".
    with pytest.raises(ValueError, match="reduction"):
        normexp.cross_entropy(**_ce(), reduction=np.array(["mean", "sum"]))
    with pytest.raises(ValueError, match="causal_alignment"):
        normexp.attention(**_att(), causal_alignment=np.array(["top_left", "x"]))
    with pytest.raises(TypeError, match="name"):
        with normexp.use_isa(np.array(["scalar", "avx2"])):
            pass
    with pytest.raises(TypeError, match="axis"):
        normexp.softmax(np.float64(1.0), axis=np.array([0, 1]))


def test_timedelta_is_not_a_real_number():
    # np.timedelta64 subclasses np.signedinteger, and float() accepts it.
    with pytest.raises(TypeError, match="temperature"):
        normexp.softmax(_x(), temperature=np.timedelta64(2, "s"))
    with pytest.raises(TypeError, match="scale"):
        normexp.attention(**_att(), scale=np.timedelta64(2, "s"))


# ---- float options held in q's dtype (float32): checked there --------------------------------------------
def _att32(lq: int = 4, lk: int = 5) -> dict:
    g = np.random.default_rng(2)
    return {
        "q": g.standard_normal((2, lq, 3)).astype(np.float32),
        "k": g.standard_normal((2, lk, 3)).astype(np.float32),
        "v": g.standard_normal((2, lk, 3)).astype(np.float32),
    }


F32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("module", ["numpy", "dask"])
@pytest.mark.parametrize(
    "kw,name",
    [
        ({"alibi_slopes": [1e39, 1.0]}, "alibi_slopes"),  # finite in float64, inf in float32: NaN before
        ({"alibi_slopes": [-1e39, 1.0]}, "alibi_slopes"),
        ({"alibi_slopes": [F32_MAX / 2, 1.0]}, "alibi_slopes"),  # fits, but times a distance of 4 does not
        ({"alibi_slopes": [1.0, -F32_MAX]}, "alibi_slopes"),
        ({"sinks": [1e39, 1.0]}, "sinks"),  # finite in float64, inf in float32 (the lse would be inf)
        ({"scale": 1e39}, "scale"),
        ({"scale": -1e39}, "scale"),
        ({"scale": 1e-46}, "scale"),  # rounds to 0 in float32: every score 0
        ({"softcap": 1e39}, "softcap"),  # inf * tanh(x / inf) = inf * 0 = NaN
        ({"softcap": 1e-46}, "softcap"),  # rounds to 0 in float32: the cap silently dropped
        ({"mask": np.full((4, 5), 1e39)}, "mask"),  # an additive float64 mask that float32 holds as inf
        ({"mask": np.full((4, 5), -1e39)}, "mask"),
    ],
)
def test_float32_attention_options_are_checked_in_float32(kw, name, module):
    a = _att32()
    with pytest.raises(ValueError, match=name) as info:
        if module == "numpy":
            normexp.attention(**a, **kw)
        else:
            k = da.from_array(a["k"], chunks=(2, 2, 3))
            v = da.from_array(a["v"], chunks=(2, 2, 3))
            # refused when the graph is built, not when a task runs
            nd.attention(a["q"], k, v, **kw)
    assert "float32" in str(info.value)
    # float64 inputs hold the same values: the call is valid there and its output is finite (on the
    # scalar specification kernels).
    a64 = {n: x.astype(np.float64) for n, x in a.items()}
    with normexp.use_isa("scalar"):
        out = normexp.attention(**a64, **kw)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("bottom_right", [False, True])
@pytest.mark.parametrize("lq,lk", [(4, 5), (5, 4), (1, 7), (7, 1), (1, 1)])
def test_alibi_at_the_float32_limit_is_finite(lq, lk, bottom_right):
    # The largest slope accepted: every bias -slope |j - diag(i)| is finite in float32, so the softmax
    # puts all weight on each query's nearest key(s) instead of masking the row or returning NaN.
    a = _att32(lq, lk)
    align = "bottom_right" if bottom_right else "top_left"
    off = lk - lq if bottom_right else 0
    dist = max(1, abs(lq - 1 + off), abs(lk - 1 - off))
    slope = np.nextafter(np.float64(F32_MAX / dist), 0)
    out = normexp.attention(**a, alibi_slopes=np.array([slope, slope]), causal_alignment=align)
    assert np.all(np.isfinite(out))
    diag = np.arange(lq) + off
    near = np.abs(np.arange(lk)[None, :] - diag[:, None])
    w = (near == near.min(axis=1, keepdims=True)).astype(np.float64)
    want = (w / w.sum(axis=1, keepdims=True)) @ a["v"].astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="alibi_slopes"):
        normexp.attention(**a, alibi_slopes=np.array([slope * 1.001, slope]), causal_alignment=align)


def test_fit_temperature_low_bound_is_checked_in_the_logits_dtype():
    kw = _fit()
    with pytest.raises(ValueError, match=r"bounds\[0\]"):
        normexp.fit_temperature(kw["logits"].astype(np.float32), kw["labels"], bounds=(1e-40, 10.0))
    normexp.fit_temperature(kw["logits"].astype(np.float64), kw["labels"], bounds=(1e-40, 10.0))


# ---- messages print small numbers as numbers ----------------------------------------------------------------
def test_native_messages_print_numbers_in_g_format():
    # std::to_string printed 1e-45 as "0.000000" in the message that says it is too small.
    x32 = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"temperature 1e-45 is too small") as info:
        normexp._core.reduce(normexp._core.Reduction.softmax, x32, np.zeros_like(x32), -1, 1e-45)
    assert "0.000000" not in str(info.value)
    with pytest.raises(ValueError, match=r"got -1e-300"):
        normexp._core.reduce(normexp._core.Reduction.softmax, x32, np.zeros_like(x32), -1, -1e-300)
    out = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\], got -1e-320"):
        normexp._core.sample(x32, None, out, 0.0, 0, -1e-320, 0.0)
    with pytest.raises(ValueError, match=r"min_p must be in \[0, 1\], got -2.5e-07"):
        normexp._core.sample(x32, None, out, 0.0, 0, 1.0, -2.5e-7)
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0 \(0 is greedy\), got -1e-10"):
        normexp._core.sample(x32, None, out, -1e-10, 0, 1.0, 0.0)
    labels = np.zeros(2, np.int64)
    loss = np.zeros(2)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got -1e-09"):
        normexp._core.cross_entropy(x32, labels, loss, 1, 1.0, -1e-9, False, 0)
    with pytest.raises(ValueError, match=r"temperature 1e-45 is too small for float32"):
        normexp._core.cross_entropy(x32, labels, loss, 1, 1e-45, 0.0, False, 0)
    # Python-side messages use repr / %g as well.
    with pytest.raises(ValueError, match=r"temperature 1e-45 is too small for float32"):
        normexp.softmax(x32, temperature=1e-45, where=np.ones(3, bool))
