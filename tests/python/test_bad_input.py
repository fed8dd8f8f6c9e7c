"""Every public function rejects every kind of bad argument with the documented exception (TypeError or
ValueError, with a message that names the argument) and leaves ``out=`` and its inputs unchanged.

Table-driven: FUNCTIONS lists the public functions with a call template; BAD lists the bad arguments
that apply to each (an argument name -> (bad value, expected exception, words the message must contain)).
To cover attention, sampling or the C API (through ctypes: negative sizes, null pointers -> error
codes), add a FUNCTIONS row and its BAD entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

import normexp
from normexp import special


@dataclass
class Fn:
    name: str
    call: Callable[..., Any]  # call(x, **kwargs)
    out_shape: Callable[[tuple], tuple] | None  # result shape for out=, None if out= is not accepted
    has_temperature: bool = False
    has_where: bool = False
    has_b: bool = False
    axis_kw: str = "axis"
    tuple_axes: bool = False
    extra: dict = field(default_factory=dict)


X_SHAPE = (3, 5)
FUNCTIONS = [
    Fn("softmax", normexp.softmax, lambda s: s, has_temperature=True, has_where=True),
    Fn("log_softmax", normexp.log_softmax, lambda s: s, has_temperature=True, has_where=True),
    Fn("logsumexp", normexp.logsumexp, lambda s: s[:-1], has_b=True),
    Fn("special.softmax", special.softmax, None, tuple_axes=True),
    Fn("special.log_softmax", special.log_softmax, None, tuple_axes=True),
    Fn("special.logsumexp", special.logsumexp, None, has_b=True, tuple_axes=True),
]

AxisError = np.exceptions.AxisError  # a ValueError (and IndexError), like NumPy's


def _ragged():
    return [[1.0, 2.0], [3.0]]


# (kind, applies(fn), kwargs or x builder, exception, message words)
BAD: list[tuple[str, Callable[[Fn], bool], Callable[[Fn], dict], type, tuple[str, ...]]] = [
    # ---- x ----
    ("x complex", lambda f: True, lambda f: {"x": np.ones(X_SHAPE, np.complex64)}, TypeError, ("complex",)),
    ("x strings", lambda f: True, lambda f: {"x": np.array([["a", "b"], ["c", "d"]])}, TypeError, ()),
    ("x objects", lambda f: True, lambda f: {"x": np.array([{}, None], dtype=object)}, TypeError, ()),
    ("x datetime", lambda f: True, lambda f: {"x": np.array(["2024-01-01"], dtype="datetime64[D]")}, TypeError, ()),
    ("x longdouble", lambda f: np.dtype(np.longdouble).itemsize > 8, lambda f: {"x": np.ones(X_SHAPE, np.longdouble)}, TypeError, ("float64",)),
    ("x ragged", lambda f: True, lambda f: {"x": _ragged()}, (TypeError, ValueError), ()),
    ("x structured", lambda f: True, lambda f: {"x": np.zeros(3, dtype=[("a", "f4"), ("b", "f4")])}, TypeError, ()),
    # ---- axis ----
    ("axis out of range", lambda f: True, lambda f: {f.axis_kw: 2}, AxisError, ("axis",)),
    ("axis negative out of range", lambda f: True, lambda f: {f.axis_kw: -3}, AxisError, ("axis",)),
    ("axis float", lambda f: True, lambda f: {f.axis_kw: 1.0}, TypeError, ("axis",)),
    ("axis string", lambda f: True, lambda f: {f.axis_kw: "1"}, TypeError, ("axis",)),
    ("axis None (not accepted)", lambda f: not f.tuple_axes, lambda f: {f.axis_kw: None}, TypeError, ("axis",)),
    ("axis tuple (not accepted)", lambda f: not f.tuple_axes, lambda f: {f.axis_kw: (0, 1)}, TypeError, ("axis",)),
    ("axis tuple repeated", lambda f: f.tuple_axes, lambda f: {f.axis_kw: (0, -2)}, ValueError, ("repeated",)),
    ("axis tuple out of range", lambda f: f.tuple_axes, lambda f: {f.axis_kw: (0, 5)}, AxisError, ("axis",)),
    # ---- out ----
    ("out wrong shape", lambda f: f.out_shape is not None, lambda f: {"out": np.zeros((3, 4), np.float32)}, ValueError, ("out", "shape")),
    ("out wrong dtype", lambda f: f.out_shape is not None, lambda f: {"out": np.zeros(f.out_shape(X_SHAPE), np.float64)}, TypeError, ("out", "dtype")),
    ("out read-only", lambda f: f.out_shape is not None, lambda f: {"out": _readonly(np.zeros(f.out_shape(X_SHAPE), np.float32))}, ValueError, ("out",)),
    ("out a list", lambda f: f.out_shape is not None, lambda f: {"out": np.zeros(f.out_shape(X_SHAPE)).tolist()}, TypeError, ("out",)),
    ("out keepdims shape", lambda f: f.name == "logsumexp", lambda f: {"out": np.zeros((3, 1), np.float32)}, ValueError, ("out", "shape")),
    # ---- temperature ----
    ("temperature 0", lambda f: f.has_temperature, lambda f: {"temperature": 0.0}, ValueError, ("temperature",)),
    ("temperature negative", lambda f: f.has_temperature, lambda f: {"temperature": -1.0}, ValueError, ("temperature",)),
    ("temperature NaN", lambda f: f.has_temperature, lambda f: {"temperature": float("nan")}, ValueError, ("temperature",)),
    ("temperature inf", lambda f: f.has_temperature, lambda f: {"temperature": float("inf")}, ValueError, ("temperature",)),
    ("temperature string", lambda f: f.has_temperature, lambda f: {"temperature": "1"}, TypeError, ("temperature",)),
    ("temperature bool", lambda f: f.has_temperature, lambda f: {"temperature": True}, TypeError, ("temperature",)),
    ("temperature complex", lambda f: f.has_temperature, lambda f: {"temperature": 1j}, TypeError, ("temperature",)),
    ("temperature array", lambda f: f.has_temperature, lambda f: {"temperature": np.ones(3)}, TypeError, ("temperature",)),
    # ---- where ----
    ("where int mask", lambda f: f.has_where, lambda f: {"where": np.ones(X_SHAPE, np.int32)}, TypeError, ("where",)),
    ("where float mask", lambda f: f.has_where, lambda f: {"where": np.ones(X_SHAPE)}, TypeError, ("where",)),
    ("where wrong shape", lambda f: f.has_where, lambda f: {"where": np.ones((4,), bool)}, ValueError, ("where",)),
    ("where larger shape", lambda f: f.has_where, lambda f: {"where": np.ones((2, 3, 5), bool)}, ValueError, ("where",)),
    # ---- b ----
    ("b complex", lambda f: f.has_b, lambda f: {"b": np.ones(X_SHAPE, complex)}, TypeError, ("b",)),
    ("b strings", lambda f: f.has_b, lambda f: {"b": np.array(["a"] * 5)}, TypeError, ("b",)),
    ("b wrong shape", lambda f: f.has_b, lambda f: {"b": np.ones((4,))}, ValueError, ("b",)),
    ("b larger shape", lambda f: f.name == "logsumexp", lambda f: {"b": np.ones((2, 3, 5))}, ValueError, ("b",)),
]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


CASES = [(f, kind, make, exc, words) for f in FUNCTIONS for (kind, applies, make, exc, words) in BAD if applies(f)]


@pytest.mark.parametrize("fn,kind,make,exc,words", CASES, ids=[f"{f.name}-{k}" for f, k, *_ in CASES])
def test_bad_argument_is_rejected_and_nothing_is_written(fn, kind, make, exc, words):
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    kwargs = make(fn)
    x = kwargs.pop("x", x)
    x_before = np.array(x, copy=True) if isinstance(x, np.ndarray) else None
    out = kwargs.get("out")
    if isinstance(out, np.ndarray):
        if out.flags.writeable:
            out[...] = 7  # sentinel
        out_before = out.copy()
    b = kwargs.get("b")
    b_before = b.copy() if isinstance(b, np.ndarray) else None
    with pytest.raises(exc) as info:
        fn.call(x, **kwargs)
    msg = str(info.value).lower()
    assert msg, "the exception must say what to change"
    for w in words:
        assert w in msg, f"message {msg!r} should mention {w!r}"
    # Nothing was written: not the input, not out, not the weights.
    if x_before is not None:
        assert x.tobytes() == x_before.tobytes()
    if isinstance(out, np.ndarray):
        assert np.array_equal(out, out_before)
    if b_before is not None:
        assert np.array_equal(b, b_before)


def test_table_covers_every_public_function():
    # A new public reduction must get rows here (and in reliability_cases.CASES).
    public = {n for n in normexp.__all__ if callable(getattr(normexp, n)) and n not in
              {"set_num_threads", "get_num_threads", "isa", "available_isas", "use_isa"}}
    public |= {f"special.{n}" for n in special.__all__}
    assert public <= {f.name for f in FUNCTIONS}, public - {f.name for f in FUNCTIONS}


@pytest.mark.parametrize("bad", [0.5, "2", None, [1]])
def test_set_num_threads_rejects_non_integers(bad):
    before = normexp.get_num_threads()
    with pytest.raises(TypeError):
        normexp.set_num_threads(bad)
    assert normexp.get_num_threads() == before


def test_use_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="not available"):
        with normexp.use_isa("avx1024"):
            pass


def test_native_layer_rejects_what_python_never_passes():
    # _core is private, but must not crash on misuse either: mismatched dtypes, ranks, unknown ops.
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError):
        normexp._core.reduce("softmax", x, np.zeros((2, 3), np.float64), -1, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce("softmax", x, np.zeros((6,), np.float32), -1, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce("sum", x, np.zeros((2, 3), np.float32), -1, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce("softmax", x, np.zeros((2, 3), np.float32), 5, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce("softmax", x, np.zeros((2, 3), np.float32), -1, float("nan"))
    with pytest.raises(ValueError):
        normexp._core.reduce("softmax", x, np.zeros((2, 3), np.float32), -1, 1.0, "avx1024")
    with pytest.raises(TypeError):
        normexp._core.reduce("softmax", x.astype(np.int32), np.zeros((2, 3), np.int32), -1, 1.0)
