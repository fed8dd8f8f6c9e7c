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
    # normexp.special takes complex input as SciPy does (tests/python/test_scipy_suite.py)
    ("x complex", lambda f: not f.name.startswith("special."), lambda f: {"x": np.ones(X_SHAPE, np.complex64)}, TypeError, ("complex",)),
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
    ("b complex", lambda f: f.has_b and not f.name.startswith("special."), lambda f: {"b": np.ones(X_SHAPE, complex)}, TypeError, ("b",)),
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


# ---- attention and the output layer --------------------------------------------------------------------
# These functions take several arrays, so their rows are whole calls: CALLS[name] builds fresh valid keyword
# arguments, and each row of CALL_BAD replaces some of them with bad ones. The test checks the exception
# type and message words, and that no array argument (out= included, filled with a sentinel) was written.
def _rng():
    return np.random.default_rng(0)


def _att_args():
    g = _rng()
    return {
        "q": g.standard_normal((2, 4, 3)).astype(np.float32),
        "k": g.standard_normal((2, 5, 3)).astype(np.float32),
        "v": g.standard_normal((2, 5, 3)).astype(np.float32),
    }


def _merge_args():
    a = _att_args()
    o1, l1 = normexp.attention(a["q"], a["k"][:, :2], a["v"][:, :2], return_lse=True)
    o2, l2 = normexp.attention(a["q"], a["k"][:, 2:], a["v"][:, 2:], return_lse=True)
    return {"outs": [o1, o2], "lses": [l1, l2]}


def _paged_args():
    g = _rng()
    return {
        "q": g.standard_normal((3, 4, 3)).astype(np.float32),
        "k_pages": g.standard_normal((5, 2, 2, 3)).astype(np.float32),
        "v_pages": g.standard_normal((5, 2, 2, 3)).astype(np.float32),
        "block_table": np.array([[4, 0, -1], [2, 1, 3]], np.int32),
        "seq_lens": np.array([3, 5], np.int32),
        "query_start": np.array([0, 1, 3], np.int32),
    }


def _logits_args():
    g = _rng()
    return {"logits": (g.standard_normal((4, 6)) * 3).astype(np.float32)}


def _ce_args():
    return {**_logits_args(), "labels": np.array([0, 5, 2, 3])}


def _ece_args():
    a = _ce_args()
    return {"probs": normexp.softmax(a["logits"].astype(np.float64)), "labels": a["labels"]}


def _lm_args():
    g = _rng()
    return {"hidden": g.standard_normal((4, 5)).astype(np.float32), "weight": g.standard_normal((6, 5)).astype(np.float32)}


def _lm_ce_args():
    return {**_lm_args(), "labels": np.array([0, 5, 2, 3])}


CALLS: dict[str, tuple[Callable[..., Any], Callable[[], dict]]] = {
    "attention": (normexp.attention, _att_args),
    "merge_attention": (normexp.merge_attention, _merge_args),
    "paged_attention": (normexp.paged_attention, _paged_args),
    "sample": (normexp.sample, _logits_args),
    "cross_entropy": (normexp.cross_entropy, _ce_args),
    "fit_temperature": (normexp.fit_temperature, _ce_args),
    "calibration_error": (normexp.calibration_error, _ece_args),
    "linear_logsumexp": (normexp.linear_logsumexp, _lm_args),
    "linear_cross_entropy": (normexp.linear_cross_entropy, _lm_ce_args),
}


def _ro(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _with_nan(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[1, 2] = np.nan
    return a


def _with_inf(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[2, 0] = np.inf
    return a


def _row_neg_inf(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[3] = -np.inf
    return a


F32, F64 = np.float32, np.float64
NAN, INF = float("nan"), float("inf")
# (function, kind, change(args) -> overrides, exception, message words)
CALL_BAD: list[tuple[str, str, Callable[[dict], dict], Any, tuple[str, ...]]] = [
    # ---- attention: tensors ----
    ("attention", "q int", lambda a: {"q": a["q"].astype(np.int32)}, TypeError, ("q", "float32")),
    ("attention", "q complex", lambda a: {"q": a["q"].astype(np.complex64)}, TypeError, ("q",)),
    ("attention", "q float16", lambda a: {"q": a["q"].astype(np.float16)}, TypeError, ("q", "float32")),
    ("attention", "q strings", lambda a: {"q": np.array([["a", "b"], ["c", "d"]])}, TypeError, ("q",)),
    ("attention", "q ragged", lambda a: {"q": _ragged()}, (TypeError, ValueError), ("q",)),
    ("attention", "mixed dtypes", lambda a: {"k": a["k"].astype(F64)}, TypeError, ("dtype", "float64")),
    ("attention", "q 1-d", lambda a: {"q": a["q"][0, 0]}, ValueError, ("q", "dimensions")),
    ("attention", "k rank differs", lambda a: {"k": a["k"][0]}, ValueError, ("dimensions",)),
    ("attention", "head_dim differs", lambda a: {"k": a["k"][..., :2]}, ValueError, ("head_dim", "3", "2")),
    ("attention", "key length differs", lambda a: {"v": a["v"][:, :4]}, ValueError, ("key length", "dimension -2")),
    ("attention", "kv heads differ", lambda a: {"v": a["v"][:1]}, ValueError, ("heads", "dimension -3")),
    ("attention", "q heads not a multiple", lambda a: {"q": np.concatenate([a["q"], a["q"][:1]])}, ValueError, ("heads", "multiple")),
    ("attention", "batch differs", lambda a: {"q": a["q"][None], "k": np.stack([a["k"]] * 2), "v": np.stack([a["v"]] * 2)}, ValueError, ("batch",)),
    # ---- attention: mask ----
    ("attention", "mask int", lambda a: {"mask": np.ones((4, 5), np.int32)}, TypeError, ("mask", "bool")),
    ("attention", "mask complex", lambda a: {"mask": np.ones((4, 5), np.complex64)}, TypeError, ("mask",)),
    ("attention", "mask strings", lambda a: {"mask": np.array(["a", "b"])}, TypeError, ("mask",)),
    ("attention", "mask shape", lambda a: {"mask": np.ones((4, 4), bool)}, ValueError, ("mask", "broadcast")),
    ("attention", "mask float shape", lambda a: {"mask": np.zeros((3, 4, 5), F32)}, ValueError, ("mask", "broadcast")),
    ("attention", "mask too many dims", lambda a: {"mask": np.ones((1, 1, 2, 4, 5), bool)}, ValueError, ("mask", "dimensions")),
    # ---- attention: scalars ----
    ("attention", "scale NaN", lambda a: {"scale": NAN}, ValueError, ("scale", "finite")),
    ("attention", "scale inf", lambda a: {"scale": INF}, ValueError, ("scale", "finite")),
    ("attention", "scale 0", lambda a: {"scale": 0.0}, ValueError, ("scale", "non-zero")),
    ("attention", "scale string", lambda a: {"scale": "1"}, TypeError, ("scale",)),
    ("attention", "scale bool", lambda a: {"scale": True}, TypeError, ("scale",)),
    ("attention", "scale array", lambda a: {"scale": np.ones(2)}, TypeError, ("scale",)),
    ("attention", "window 0", lambda a: {"window": 0}, ValueError, ("window", ">= 1")),
    ("attention", "window negative", lambda a: {"window": -3}, ValueError, ("window",)),
    ("attention", "window float", lambda a: {"window": 2.0}, TypeError, ("window", "integer")),
    ("attention", "window bool", lambda a: {"window": True}, TypeError, ("window",)),
    ("attention", "softcap 0", lambda a: {"softcap": 0.0}, ValueError, ("softcap", "> 0")),
    ("attention", "softcap negative", lambda a: {"softcap": -30.0}, ValueError, ("softcap",)),
    ("attention", "softcap NaN", lambda a: {"softcap": NAN}, ValueError, ("softcap",)),
    ("attention", "softcap inf", lambda a: {"softcap": INF}, ValueError, ("softcap",)),
    ("attention", "softcap string", lambda a: {"softcap": "30"}, TypeError, ("softcap",)),
    ("attention", "alibi_slopes shape", lambda a: {"alibi_slopes": np.ones(3)}, ValueError, ("alibi_slopes", "broadcast")),
    ("attention", "alibi_slopes NaN", lambda a: {"alibi_slopes": np.array([NAN, 1.0])}, ValueError, ("alibi_slopes", "finite")),
    ("attention", "alibi_slopes inf", lambda a: {"alibi_slopes": np.array([INF, 1.0])}, ValueError, ("alibi_slopes", "finite")),
    ("attention", "alibi_slopes complex", lambda a: {"alibi_slopes": np.ones(2, complex)}, TypeError, ("alibi_slopes",)),
    ("attention", "alibi_slopes strings", lambda a: {"alibi_slopes": np.array(["a", "b"])}, TypeError, ("alibi_slopes",)),
    ("attention", "causal_alignment unknown", lambda a: {"causal_alignment": "bottom"}, ValueError, ("causal_alignment", "bottom_right")),
    ("attention", "causal_alignment case", lambda a: {"causal_alignment": "TOP_LEFT"}, ValueError, ("causal_alignment",)),
    ("attention", "causal_alignment None", lambda a: {"causal_alignment": None}, ValueError, ("causal_alignment",)),
    # Regression: a string or an array was read by its truthiness (is_causal="no" meant causal) or failed
    # with NumPy's "truth value of an array is ambiguous".
    ("attention", "is_causal string", lambda a: {"is_causal": "no"}, TypeError, ("is_causal",)),
    ("attention", "is_causal array", lambda a: {"is_causal": np.array([True, False])}, TypeError, ("is_causal",)),
    ("attention", "return_lse string", lambda a: {"return_lse": "yes"}, TypeError, ("return_lse",)),
    # ---- attention: out ----
    ("attention", "out shape", lambda a: {"out": np.zeros((2, 4, 2), F32)}, ValueError, ("out", "shape")),
    ("attention", "out dtype", lambda a: {"out": np.zeros((2, 4, 3), F64)}, TypeError, ("out", "dtype")),
    ("attention", "out read-only", lambda a: {"out": _ro(np.zeros((2, 4, 3), F32))}, ValueError, ("out", "read-only")),
    ("attention", "out a list", lambda a: {"out": np.zeros((2, 4, 3)).tolist()}, TypeError, ("out",)),
    ("attention", "out 2-d shape", lambda a: {"q": a["q"][0], "k": a["k"][0], "v": a["v"][0], "out": np.zeros((4, 2), F32)}, ValueError, ("out", "shape")),
    ("attention", "out with a bad option", lambda a: {"out": np.zeros((2, 4, 3), F32), "window": 0}, ValueError, ("window",)),
    # ---- paged_attention ----
    ("paged_attention", "page index past the pool", lambda a: {"block_table": np.array([[4, 5, -1], [2, 1, 3]], np.int32)}, IndexError, ("block_table[0, 1]", "sequence 0")),
    ("paged_attention", "negative page index", lambda a: {"block_table": np.array([[4, 0, -1], [2, 1, -1]], np.int32)}, IndexError, ("block_table[1, 2]", "sequence 1")),
    ("paged_attention", "too few columns", lambda a: {"seq_lens": np.array([3, 7], np.int32)}, ValueError, ("seq_lens[1]", "columns")),
    ("paged_attention", "negative length", lambda a: {"seq_lens": np.array([-1, 5], np.int32)}, ValueError, ("seq_lens[0]", "negative")),
    ("paged_attention", "query_start decreasing", lambda a: {"query_start": np.array([0, 4, 3], np.int32)}, ValueError, ("query_start", "sequence 1")),
    ("paged_attention", "query_start end", lambda a: {"query_start": np.array([0, 1, 2], np.int32)}, ValueError, ("query_start[2]",)),
    ("paged_attention", "float table", lambda a: {"block_table": a["block_table"].astype(F32)}, TypeError, ("block_table", "integer")),
    ("paged_attention", "k_pages float64", lambda a: {"k_pages": a["k_pages"].astype(F64)}, TypeError, ("dtype",)),
    ("paged_attention", "q 4-d", lambda a: {"q": a["q"][None]}, ValueError, ("q", "3 dimensions")),
    ("paged_attention", "out shape", lambda a: {"out": np.zeros((3, 4, 2), F32)}, ValueError, ("out", "shape")),
    ("paged_attention", "out with a bad table", lambda a: {"out": np.zeros((3, 4, 3), F32), "seq_lens": np.array([3, 99], np.int32)}, ValueError, ("seq_lens[1]",)),
    ("paged_attention", "sinks NaN", lambda a: {"sinks": [np.nan] * 4}, ValueError, ("sinks",)),
    # ---- merge_attention ----
    ("merge_attention", "outs mixed dtypes", lambda a: {"outs": [a["outs"][0], a["outs"][1].astype(F64)]}, TypeError, ("outs[1]", "dtype")),
    ("merge_attention", "lses dtype", lambda a: {"lses": [a["lses"][0], a["lses"][1].astype(F64)]}, TypeError, ("lses[1]", "dtype")),
    ("merge_attention", "outs int", lambda a: {"outs": [a["outs"][0].astype(np.int32), a["outs"][1]]}, TypeError, ("outs[0]",)),
    ("merge_attention", "part counts differ", lambda a: {"lses": a["lses"][:1]}, ValueError, ("parts",)),
    ("merge_attention", "no parts", lambda a: {"outs": [], "lses": []}, ValueError, ("at least one",)),
    ("merge_attention", "outs shapes differ", lambda a: {"outs": [a["outs"][0], a["outs"][1][:1]]}, ValueError, ("outs[1]", "shape")),
    ("merge_attention", "lses shape", lambda a: {"lses": [a["lses"][0], a["lses"][1][:, :3]]}, ValueError, ("lses[1]", "shape")),
    ("merge_attention", "outs 0-d", lambda a: {"outs": [np.float32(1)], "lses": [np.float32(0)]}, ValueError, ("dimension",)),
    # Regression: a non-sequence failed with "'int' object is not iterable", naming no argument.
    ("merge_attention", "outs an int", lambda a: {"outs": 5}, TypeError, ("outs", "sequence")),
    ("merge_attention", "lses None", lambda a: {"lses": None}, TypeError, ("lses", "sequence")),
    ("merge_attention", "outs a string", lambda a: {"outs": "ab"}, TypeError, ("outs", "sequence")),
    # ---- sample ----
    ("sample", "logits complex", lambda a: {"logits": a["logits"].astype(np.complex64)}, TypeError, ("logits", "complex")),
    ("sample", "logits strings", lambda a: {"logits": np.array(["a", "b"])}, TypeError, ("logits",)),
    ("sample", "logits scalar", lambda a: {"logits": np.float32(1)}, ValueError, ("logits", "dimension")),
    ("sample", "empty vocabulary", lambda a: {"logits": np.zeros((2, 0), F32)}, ValueError, ("vocabulary", "empty")),
    ("sample", "NaN logits", lambda a: {"logits": _with_nan(a["logits"])}, ValueError, ("row 1", "nan")),
    ("sample", "NaN logits greedy", lambda a: {"logits": _with_nan(a["logits"]), "temperature": 0.0}, ValueError, ("nan",)),
    ("sample", "+inf logits", lambda a: {"logits": _with_inf(a["logits"])}, ValueError, ("row 2", "+inf")),
    ("sample", "row of -inf", lambda a: {"logits": _row_neg_inf(a["logits"])}, ValueError, ("row 3", "-inf")),
    ("sample", "temperature negative", lambda a: {"temperature": -1.0}, ValueError, ("temperature",)),
    ("sample", "temperature NaN", lambda a: {"temperature": NAN}, ValueError, ("temperature", "nan")),
    ("sample", "temperature inf", lambda a: {"temperature": INF}, ValueError, ("temperature",)),
    ("sample", "temperature string", lambda a: {"temperature": "1"}, TypeError, ("temperature",)),
    ("sample", "top_k row negative", lambda a: {"top_k": np.array([5, 0, -1, 2])}, ValueError, ("top_k[2]", ">= 0")),
    ("sample", "top_k rows float", lambda a: {"top_k": np.ones(4)}, TypeError, ("top_k", "integers")),
    ("sample", "temperature rows shape", lambda a: {"temperature": np.ones(3)}, ValueError, ("temperature", "(4,)")),
    ("sample", "temperature row NaN", lambda a: {"temperature": np.array([1, 0, NAN, 1])}, ValueError, ("temperature[2]",)),
    ("sample", "top_p row 0", lambda a: {"top_p": np.array([1, 0.5, 0.9, 0])}, ValueError, ("top_p[3]", "(0, 1]")),
    ("sample", "min_p row above 1", lambda a: {"min_p": np.array([0, 1.5, 0, 0])}, ValueError, ("min_p[1]",)),
    ("sample", "repetition_penalty 0", lambda a: {"repetition_penalty": 0.0}, ValueError, ("repetition_penalty", "> 0")),
    ("sample", "repetition_penalty inf", lambda a: {"repetition_penalty": INF}, ValueError, ("repetition_penalty",)),
    ("sample", "presence_penalty negative", lambda a: {"presence_penalty": -0.1}, ValueError, ("presence_penalty", ">= 0")),
    ("sample", "frequency_penalty row negative", lambda a: {"frequency_penalty": np.array([0, 0, 0, -1.0])}, ValueError,
     ("frequency_penalty[3]",)),
    ("sample", "prev_tokens beyond vocab", lambda a: {"prev_tokens": np.array([[1], [2], [40], [3]]), "presence_penalty": 1.0},
     IndexError, ("prev_tokens", "row 2", "40")),
    ("sample", "prev_tokens below -1", lambda a: {"prev_tokens": np.array([[1], [-2], [0], [3]])}, IndexError, ("prev_tokens", "row 1")),
    ("sample", "prev_tokens floats", lambda a: {"prev_tokens": np.ones((4, 2))}, TypeError, ("prev_tokens",)),
    ("sample", "prev_tokens shape", lambda a: {"prev_tokens": np.ones((3, 2), np.int64)}, ValueError, ("prev_tokens",)),
    ("sample", "logit_bias shape", lambda a: {"logit_bias": np.zeros(7)}, ValueError, ("logit_bias",)),
    ("sample", "logit_bias NaN", lambda a: {"logit_bias": np.full(a["logits"].shape[-1], NAN)}, ValueError, ("logit_bias", "nan")),
    ("sample", "logit_bias complex", lambda a: {"logit_bias": np.zeros(a["logits"].shape[-1], complex)}, TypeError, ("logit_bias",)),
    ("sample", "return_logprobs string", lambda a: {"return_logprobs": "yes"}, TypeError, ("return_logprobs",)),
    ("sample", "top_k negative", lambda a: {"top_k": -2}, ValueError, ("top_k",)),
    ("sample", "top_k float", lambda a: {"top_k": 2.0}, TypeError, ("top_k", "integer")),
    ("sample", "top_k bool", lambda a: {"top_k": True}, TypeError, ("top_k",)),
    ("sample", "top_p 0", lambda a: {"top_p": 0.0}, ValueError, ("top_p", "(0, 1]")),
    ("sample", "top_p negative", lambda a: {"top_p": -0.5}, ValueError, ("top_p",)),
    ("sample", "top_p above 1", lambda a: {"top_p": 1.5}, ValueError, ("top_p",)),
    ("sample", "top_p NaN", lambda a: {"top_p": NAN}, ValueError, ("top_p",)),
    ("sample", "top_p string", lambda a: {"top_p": "0.9"}, TypeError, ("top_p",)),
    ("sample", "min_p negative", lambda a: {"min_p": -0.1}, ValueError, ("min_p", "[0, 1]")),
    ("sample", "min_p above 1", lambda a: {"min_p": 1.5}, ValueError, ("min_p",)),
    ("sample", "min_p NaN", lambda a: {"min_p": NAN}, ValueError, ("min_p",)),
    ("sample", "min_p array of the wrong shape", lambda a: {"min_p": np.array([0.1])}, ValueError, ("min_p", "shape")),
    ("sample", "rng string", lambda a: {"rng": "seed"}, TypeError, ("rng", "generator")),
    ("sample", "rng float", lambda a: {"rng": 1.5}, TypeError, ("rng",)),
    ("sample", "rng bool", lambda a: {"rng": True}, TypeError, ("rng",)),
    ("sample", "rng RandomState", lambda a: {"rng": np.random.RandomState(0)}, TypeError, ("rng", "randomstate")),
    ("sample", "rng negative seed", lambda a: {"rng": -1}, ValueError, ("rng", "seed")),
    # ---- cross_entropy ----
    ("cross_entropy", "label too large", lambda a: {"labels": np.array([0, 6, 2, 3])}, ValueError, ("labels", "6", "out of range")),
    ("cross_entropy", "label negative", lambda a: {"labels": np.array([0, 1, -1, 3])}, ValueError, ("labels", "-1", "position (2,)")),
    ("cross_entropy", "label -100 without ignore_index", lambda a: {"labels": np.array([0, 1, -100, 3])}, ValueError, ("labels", "ignore_index")),
    ("cross_entropy", "label not the ignored one", lambda a: {"labels": np.array([0, 1, -1, 3]), "ignore_index": -100}, ValueError, ("labels", "-1")),
    ("cross_entropy", "label uint64 huge", lambda a: {"labels": np.array([0, 1, 2**64 - 1, 3], np.uint64)}, ValueError, ("labels", "out of range")),
    ("cross_entropy", "labels float", lambda a: {"labels": a["labels"].astype(F64)}, TypeError, ("labels", "integer")),
    ("cross_entropy", "labels bool", lambda a: {"labels": a["labels"] > 1}, TypeError, ("labels", "integer")),
    ("cross_entropy", "labels shape", lambda a: {"labels": a["labels"][:3]}, ValueError, ("labels", "shape")),
    ("cross_entropy", "labels for the wrong axis", lambda a: {"axis": 0}, ValueError, ("labels", "shape")),
    ("cross_entropy", "axis out of range", lambda a: {"axis": 2}, AxisError, ("axis",)),
    ("cross_entropy", "axis float", lambda a: {"axis": 1.0}, TypeError, ("axis",)),
    ("cross_entropy", "reduction unknown", lambda a: {"reduction": "avg"}, ValueError, ("reduction", "mean")),
    ("cross_entropy", "reduction None", lambda a: {"reduction": None}, ValueError, ("reduction",)),
    ("cross_entropy", "label_smoothing negative", lambda a: {"label_smoothing": -0.1}, ValueError, ("label_smoothing", "[0, 1]")),
    ("cross_entropy", "label_smoothing above 1", lambda a: {"label_smoothing": 1.1}, ValueError, ("label_smoothing",)),
    ("cross_entropy", "label_smoothing NaN", lambda a: {"label_smoothing": NAN}, ValueError, ("label_smoothing",)),
    ("cross_entropy", "label_smoothing string", lambda a: {"label_smoothing": "0.1"}, TypeError, ("label_smoothing",)),
    ("cross_entropy", "ignore_index float", lambda a: {"ignore_index": -100.0}, TypeError, ("ignore_index", "integer")),
    ("cross_entropy", "ignore_index string", lambda a: {"ignore_index": "-100"}, TypeError, ("ignore_index",)),
    ("cross_entropy", "ignore_index bool", lambda a: {"ignore_index": False}, TypeError, ("ignore_index",)),
    ("cross_entropy", "NaN logits", lambda a: {"logits": _with_nan(a["logits"])}, ValueError, ("row 1", "nan")),
    ("cross_entropy", "+inf logits", lambda a: {"logits": _with_inf(a["logits"])}, ValueError, ("+inf",)),
    ("cross_entropy", "row of -inf", lambda a: {"logits": _row_neg_inf(a["logits"])}, ValueError, ("-inf",)),
    ("cross_entropy", "logits complex", lambda a: {"logits": a["logits"].astype(complex)}, TypeError, ("logits", "complex")),
    ("cross_entropy", "logits scalar", lambda a: {"logits": np.float32(1), "labels": np.int64(0)}, ValueError, ("logits", "dimension")),
    # ---- fit_temperature ----
    ("fit_temperature", "bounds reversed", lambda a: {"bounds": (10.0, 0.1)}, ValueError, ("bounds", "low < high")),
    ("fit_temperature", "bounds low 0", lambda a: {"bounds": (0.0, 10.0)}, ValueError, ("bounds",)),
    ("fit_temperature", "bounds high inf", lambda a: {"bounds": (0.1, INF)}, ValueError, ("bounds",)),
    ("fit_temperature", "bounds NaN", lambda a: {"bounds": (NAN, 10.0)}, ValueError, ("bounds[0]", "nan")),
    ("fit_temperature", "bounds string", lambda a: {"bounds": (0.1, "10")}, TypeError, ("bounds[1]",)),
    # Regression: (1,) raised IndexError, None and 5 "not subscriptable", (1, 2, 3) was accepted.
    ("fit_temperature", "bounds one value", lambda a: {"bounds": (0.1,)}, TypeError, ("bounds", "pair")),
    ("fit_temperature", "bounds three values", lambda a: {"bounds": (0.1, 1.0, 10.0)}, TypeError, ("bounds", "pair")),
    ("fit_temperature", "bounds None", lambda a: {"bounds": None}, TypeError, ("bounds", "pair")),
    ("fit_temperature", "bounds a number", lambda a: {"bounds": 5.0}, TypeError, ("bounds", "pair")),
    ("fit_temperature", "max_iter 0", lambda a: {"max_iter": 0}, ValueError, ("max_iter", ">= 1")),
    ("fit_temperature", "max_iter float", lambda a: {"max_iter": 10.5}, TypeError, ("max_iter",)),
    ("fit_temperature", "label out of range", lambda a: {"labels": np.array([0, 6, 2, 3])}, ValueError, ("labels", "out of range")),
    ("fit_temperature", "labels float", lambda a: {"labels": a["labels"].astype(F32)}, TypeError, ("labels", "integer")),
    ("fit_temperature", "labels shape", lambda a: {"labels": a["labels"][None]}, ValueError, ("labels", "shape")),
    ("fit_temperature", "every row ignored", lambda a: {"labels": np.full(4, -100), "ignore_index": -100}, ValueError, ("labelled",)),
    ("fit_temperature", "no rows", lambda a: {"logits": np.zeros((0, 6), F32), "labels": np.zeros(0, np.int64)}, ValueError, ("labelled",)),
    ("fit_temperature", "NaN logits", lambda a: {"logits": _with_nan(a["logits"])}, ValueError, ("nan",)),
    ("fit_temperature", "+inf logits", lambda a: {"logits": _with_inf(a["logits"])}, ValueError, ("+inf",)),
    ("fit_temperature", "logits complex", lambda a: {"logits": a["logits"].astype(complex)}, TypeError, ("logits",)),
    ("fit_temperature", "axis out of range", lambda a: {"axis": -3}, AxisError, ("axis",)),
    ("fit_temperature", "ignore_index float", lambda a: {"ignore_index": 1.5}, TypeError, ("ignore_index",)),
    # ---- calibration_error ----
    ("calibration_error", "probs negative", lambda a: {"probs": a["probs"] - 0.5}, ValueError, ("probs", "[0, 1]")),
    ("calibration_error", "probs above 1", lambda a: {"probs": a["probs"] + 1}, ValueError, ("probs", "[0, 1]")),
    ("calibration_error", "probs NaN", lambda a: {"probs": _with_nan(a["probs"])}, ValueError, ("probs", "nan")),
    ("calibration_error", "probs complex", lambda a: {"probs": a["probs"].astype(complex)}, TypeError, ("probs",)),
    ("calibration_error", "probs strings", lambda a: {"probs": np.array([["a", "b"]])}, TypeError, ("probs",)),
    ("calibration_error", "probs scalar", lambda a: {"probs": 0.5, "labels": 0}, ValueError, ("probs", "dimension")),
    ("calibration_error", "no classes", lambda a: {"probs": np.zeros((4, 0))}, ValueError, ("probs", "class axis")),
    ("calibration_error", "label out of range", lambda a: {"labels": np.array([0, 1, 2, 6])}, ValueError, ("labels", "out of range")),
    ("calibration_error", "label negative", lambda a: {"labels": np.array([0, 1, -1, 3])}, ValueError, ("labels",)),
    ("calibration_error", "labels float", lambda a: {"labels": a["labels"].astype(F64)}, TypeError, ("labels", "integer")),
    ("calibration_error", "labels shape", lambda a: {"labels": a["labels"][:2]}, ValueError, ("labels", "shape")),
    ("calibration_error", "n_bins 0", lambda a: {"n_bins": 0}, ValueError, ("n_bins", ">= 1")),
    ("calibration_error", "n_bins float", lambda a: {"n_bins": 15.0}, TypeError, ("n_bins",)),
    ("calibration_error", "axis out of range", lambda a: {"axis": 2}, AxisError, ("axis",)),
    # ---- the fused LM head ----
    ("linear_logsumexp", "dim mismatch", lambda a: {"weight": a["weight"][:, :4]}, ValueError, ("hidden", "weight", "dim")),
    ("linear_logsumexp", "weight 1-d", lambda a: {"weight": a["weight"][0]}, ValueError, ("weight", "2-d")),
    ("linear_logsumexp", "hidden scalar", lambda a: {"hidden": np.float32(1)}, ValueError, ("hidden", "dimension")),
    ("linear_logsumexp", "dtypes differ", lambda a: {"weight": a["weight"].astype(F64)}, TypeError, ("hidden", "weight", "dtype")),
    ("linear_logsumexp", "float64 hidden, float16 weight", lambda a: {"hidden": a["hidden"].astype(F64), "weight": a["weight"].astype(np.float16)}, TypeError, ("hidden", "float32")),
    ("linear_logsumexp", "int hidden", lambda a: {"hidden": a["hidden"].astype(np.int64)}, TypeError, ("hidden", "float32")),
    ("linear_logsumexp", "bias shape", lambda a: {"bias": np.zeros(5, np.float32)}, ValueError, ("bias", "shape")),
    ("linear_logsumexp", "bias strings", lambda a: {"bias": np.array(["a"] * 6)}, TypeError, ("bias",)),
    ("linear_cross_entropy", "label too large", lambda a: {"labels": np.array([0, 6, 2, 3])}, IndexError, ("labels", "6", "out of range")),
    ("linear_cross_entropy", "label negative", lambda a: {"labels": np.array([0, 1, -1, 3])}, IndexError, ("labels", "-1", "position (2,)")),
    ("linear_cross_entropy", "label -100 without ignore_index", lambda a: {"labels": np.array([0, 1, -100, 3]), "ignore_index": None}, IndexError, ("labels", "ignore_index")),
    ("linear_cross_entropy", "labels float", lambda a: {"labels": a["labels"].astype(F64)}, TypeError, ("labels", "integer")),
    ("linear_cross_entropy", "labels shape", lambda a: {"labels": a["labels"][:3]}, ValueError, ("labels", "shape")),
    ("linear_cross_entropy", "reduction unknown", lambda a: {"reduction": "avg"}, ValueError, ("reduction", "mean")),
    ("linear_cross_entropy", "label_smoothing above 1", lambda a: {"label_smoothing": 1.1}, ValueError, ("label_smoothing", "[0, 1]")),
    ("linear_cross_entropy", "label_smoothing NaN", lambda a: {"label_smoothing": NAN}, ValueError, ("label_smoothing",)),
    ("linear_cross_entropy", "ignore_index float", lambda a: {"ignore_index": -100.0}, TypeError, ("ignore_index", "integer")),
]


def _arrays(obj: Any) -> list[np.ndarray]:
    """Every ndarray in an argument (lists and tuples of arrays too)."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [a for o in obj for a in _arrays(o)]
    return []


@pytest.mark.parametrize(
    "fname,kind,change,exc,words", CALL_BAD, ids=[f"{f}-{k}" for f, k, *_ in CALL_BAD]
)
def test_bad_call_is_rejected_and_nothing_is_written(fname, kind, change, exc, words):
    fn, base = CALLS[fname]
    kwargs = base()
    kwargs.update(change(kwargs))
    out = kwargs.get("out")
    if isinstance(out, np.ndarray) and out.flags.writeable:
        out[...] = 7  # sentinel
    arrays = [a for v in kwargs.values() for a in _arrays(v)]
    before = [(a.dtype, a.shape, a.tobytes()) for a in arrays]
    with pytest.raises(exc) as info:
        fn(**kwargs)
    msg = str(info.value).lower()
    assert msg, "the exception must say what to change"
    for w in words:
        assert w.lower() in msg, f"message {msg!r} should mention {w!r}"
    for a, (dt, sh, data) in zip(arrays, before):
        assert a.dtype == dt and a.shape == sh and a.tobytes() == data, "an argument was written"


@pytest.mark.parametrize("fname", list(CALLS))
def test_call_table_base_arguments_are_valid(fname):
    # Each row changes only what its kind says: the base call itself must succeed.
    fn, base = CALLS[fname]
    fn(**base())


def test_table_covers_every_public_function():
    # A new public function must get rows here (FUNCTIONS or CALLS) and in reliability_cases.CASES.
    # Classes (TemperatureFit, a result type) and modules (special) are not functions: excluded by type.
    public = {
        n for n in normexp.__all__
        if callable(getattr(normexp, n)) and not isinstance(getattr(normexp, n), type)
        and n not in {"set_num_threads", "get_num_threads", "isa", "available_isas", "isa_extensions", "use_isa"}
    }
    public |= {f"special.{n}" for n in special.__all__}
    covered = {f.name for f in FUNCTIONS} | set(CALLS)
    assert public <= covered, public - covered
    assert {f for f, *_ in CALL_BAD} == set(CALLS)


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
    # _core is private, but must not crash on misuse either: mismatched dtypes, ranks, shapes, axes.
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError):
        normexp._core.reduce(normexp._core.Reduction.softmax, x, np.zeros((2, 3), np.float64), -1, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce(normexp._core.Reduction.softmax, x, np.zeros((6,), np.float32), -1, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce(normexp._core.Reduction.softmax, x, np.zeros((2, 3), np.float32), 5, 1.0)
    with pytest.raises(ValueError):
        normexp._core.reduce(normexp._core.Reduction.softmax, x, np.zeros((2, 3), np.float32), -1, float("nan"))
    with pytest.raises(ValueError):
        normexp._core.reduce(normexp._core.Reduction.softmax, x, np.zeros((2, 3), np.float32), -1, 1.0, "avx1024")
    with pytest.raises(TypeError):
        normexp._core.reduce(normexp._core.Reduction.softmax, x.astype(np.int32), np.zeros((2, 3), np.int32), -1, 1.0)


def test_native_op_is_the_bound_enum_and_never_an_unchecked_value():
    # The op crosses into _core only as normexp._core.Reduction (the fast path has one entry point per
    # op and takes none): a string or an int is refused by the binding, and an enum built from an
    # out-of-range int (pybind11 allows Reduction(7)) is refused by the library before anything is read
    # or written.
    core = normexp._core
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert sorted(core.Reduction.__members__) == ["log_softmax", "logsumexp", "softmax"]
    assert not hasattr(core, "fast_reduce")
    bogus = core.Reduction(7)
    for op in ("softmax", 0, 7, None):
        with pytest.raises(TypeError):
            core.reduce(op, x, np.zeros_like(x), 1, 1.0)
        with pytest.raises(TypeError):
            core.normalize_with(op, x, np.zeros_like(x), np.zeros((2, 1), np.float32), np.zeros((2, 1, 2)), 1)
    for call in (
        lambda y: core.reduce(bogus, x, y, 1, 1.0),
        lambda y: core.normalize_with(bogus, x, y, np.zeros((2, 1), np.float32), np.zeros((2, 1, 2)), 1),
    ):
        y = np.full_like(x, 5.0)
        with pytest.raises(ValueError, match="unknown reduction 7"):
            call(y)
        np.testing.assert_array_equal(y, 5.0)  # nothing written
    with pytest.raises(ValueError, match="softmax or log_softmax"):
        core.normalize_with(core.Reduction.logsumexp, x, np.zeros_like(x), np.zeros((2, 1), np.float32),
                            np.zeros((2, 1, 2)), 1)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_native_reduce_refuses_an_out_smaller_than_the_result(op):
    # The binding checks out's whole shape (it once checked only the rank): a smaller out would be
    # written past its end.
    core = normexp._core
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    for shape in [(3, 1), (1, 4), (2, 4)] if op != "logsumexp" else [(2, 1), (3, 0)]:
        with pytest.raises(ValueError, match="shape"):
            core.reduce(core.Reduction.__members__[op], x, np.zeros(shape), 1, 1.0)


@pytest.mark.parametrize("axis", [None, (0, 1), [0]], ids=["None", "tuple", "list"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_several_axes_point_to_normexp_special(name, axis):
    """The top-level reductions work along one axis; axis=None or a tuple is SciPy's, in normexp.special."""
    x = np.arange(6.0).reshape(2, 3)
    with pytest.raises(TypeError, match=rf"axis must be an integer, got .*use normexp\.special\.{name}"):
        getattr(normexp, name)(x, axis=axis)
    # ... where it means what SciPy means (the whole array, for None).
    assert np.allclose(getattr(special, name)(x, axis=None if axis is None else (0, 1)),
                       getattr(special, name)(x.reshape(-1), axis=-1).reshape(() if name == "logsumexp" else x.shape))


@pytest.mark.parametrize("value", [np.float16(np.inf), np.float32(-1.0), np.float64(-np.inf)])
def test_numpy_scalar_options_are_shown_as_values(value):
    """A NumPy scalar in a message reads as its value ("got inf"), not NumPy's repr ("np.float16(inf)")."""
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0 \(0 means greedy\), got (inf|-1\.0|-inf)$"):
        normexp.sample(np.zeros((2, 8), np.float32), temperature=value, rng=0)
