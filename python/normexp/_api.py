"""Argument checking and dispatch for every public function: the one place where Python inputs become
the (float32 | float64, strided) arrays the native kernels take.

Rules:
  * float32/float64 compute in their own precision; float16 and ml_dtypes.bfloat16 compute in float32
    and return their own dtype; bool/integer inputs are promoted like ``np.exp`` promotes them. The
    reductions (softmax, log_softmax, logsumexp) read and write float16 / bfloat16 arrays in place
    (``kernel_dtype``): the kernels widen them in registers, so no float32 copy is made.
  * any axis, negative too, without a transposing copy; non-contiguous and negative strides work.
  * ``out=`` must have the result's shape and dtype and be writeable; it may be the input itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import operator
import reprlib
from typing import Any, Iterator

import numpy as np

from . import _core, _interop

_isa_override: contextvars.ContextVar[str] = contextvars.ContextVar("normexp_isa", default="")

_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))

# The native op of each reduction name: the bound enum is all that crosses into _core (never an int or a
# string), so no unchecked value reaches the C++ enum.
REDUCTION: dict[str, _core.Reduction] = {
    "softmax": _core.Reduction.softmax,
    "log_softmax": _core.Reduction.log_softmax,
    "logsumexp": _core.Reduction.logsumexp,
}

# The accuracy keyword of the reductions: the string a user passes -> the bound enum.
ACCURACY: dict[str, _core.Accuracy] = {"high": _core.Accuracy.high, "fast": _core.Accuracy.fast}


# Type numbers of the dtypes found to be ml_dtypes.bfloat16 (a user dtype: its number is fixed for the process).
_BF16_NUMS: set[int] = set()


def is_bfloat16(dtype: np.dtype) -> bool:
    """ml_dtypes.bfloat16: NumPy has no bfloat16, and ml_dtypes' is a kind 'V' dtype of 2 bytes named "bfloat16".
    Recognized by name once and by type number after that (NumPy builds a user dtype's name on every access:
    a microsecond or two, which was most of a small bfloat16 call's time)."""
    if dtype.num in _BF16_NUMS:
        return True
    if dtype.itemsize == 2 and dtype.kind == "V" and dtype.name == "bfloat16":
        if dtype.num >= 256:  # NPY_USERDEF: its own number, never shared with a plain void dtype
            _BF16_NUMS.add(dtype.num)
        return True
    return False


def native_order(a: np.ndarray) -> np.ndarray:
    """a in this machine's byte order: a itself, or a converted copy of a byte-swapped array ('>f2' on x86, or a
    bfloat16 with swapped bytes), which the kernels would otherwise misread."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def is_16bit(dtype: np.dtype) -> bool:
    """float16 or ml_dtypes.bfloat16."""
    return dtype.itemsize == 2 and (dtype.kind == "f" or is_bfloat16(dtype))


def accuracy(value: Any) -> _core.Accuracy:
    """The accuracy= keyword as the kernels' enum ("high" or "fast"; anything else is a ValueError naming both)."""
    return ACCURACY[choice(value, "accuracy", tuple(ACCURACY))]


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Run the enclosed normexp calls on one kernel set (``"scalar"``, ``"avx2"``, ``"avx512"``, ``"neon"``).

    For tests and benchmarks that compare ISAs; the selection made at import (``NORMEXP_ISA``) is
    unchanged outside the block. Raises ValueError if this CPU cannot run ``name``.
    """
    if not isinstance(name, str):
        raise TypeError(f"use_isa: name must be a string such as 'avx2', got {type(name).__name__}")
    if name not in _core.available_isas():
        key = name.lower().replace("-", "").replace("_", "")
        if key in ("avx512bf16", "avx512bf16dot", "amxbf16"):
            # An extension of isa_extensions(), not a set: "not available on this CPU" would be wrong where
            # the CPU has it.
            switch = "NORMEXP_AMX" if key == "amxbf16" else "NORMEXP_AVX512_BF16"
            raise ValueError(
                f"use_isa: {shown(name)} is an extension inside the 'avx512' set (normexp.isa_extensions()), "
                f"not a kernel set: use 'avx512'; {switch}=0 or 1, set before the import, switches it"
            )
        raise ValueError(
            f"use_isa: name {shown(name)} is not available on this CPU; available: {', '.join(_core.available_isas())}"
        )
    token = _isa_override.set(name)
    try:
        yield
    finally:
        _isa_override.reset(token)


def current_isa_override() -> str:
    return _isa_override.get()


def result_dtype(dtype: np.dtype, name: str = "x") -> tuple[np.dtype, np.dtype]:
    """(dtype of the result, dtype the kernels compute in) for an input dtype."""
    if not dtype.isnative:  # byte-swapped input ('>f4' on x86): NumPy's ufuncs return native order too
        dtype = dtype.newbyteorder("=")
    kind = dtype.kind
    if kind == "c":
        raise TypeError(f"{name}: complex input ({dtype}) is not supported; pass real scores, e.g. {name}.real")
    if dtype in _NATIVE:
        return dtype, dtype
    if is_16bit(dtype):
        return dtype, np.dtype(np.float32)
    if kind in "biu":
        res = np.exp(np.zeros(1, dtype)).dtype  # NumPy's promotion for exp: int8 -> float16, int32 -> float64
        return res, (res if res in _NATIVE else np.dtype(np.float32))
    if kind == "f":
        raise TypeError(f"{name}: {dtype} is not supported; cast to float64 (or float32)")
    raise TypeError(f"{name}: expected real numbers (float, int or bool), got an array of dtype {dtype}")


def kernel_dtype(res: np.dtype, compute: np.dtype) -> np.dtype:
    """The dtype the reduction kernels read and write for a result dtype res (result_dtype's compute
    otherwise): float16 and bfloat16 are taken as they are, 2 bytes per element (widened to float32 in
    registers, each result rounded once; within 1 ULP of the 16-bit type), so no float32 copy is made."""
    return res if is_16bit(res) else compute


def as_array(x: Any, name: str = "x") -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if _interop.is_foreign(x):  # a torch tensor, JAX array, ...: a view of its memory
        return _interop.to_numpy(x, name)
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name}: cannot be converted to an array of numbers ({e})") from None
    return a


# ---- scalar arguments ----------------------------------------------------------------------------------
# Every public function checks its scalar arguments with these, so each kind of argument is refused the
# same way everywhere: TypeError for the wrong kind of object, ValueError (from the caller's range check)
# for a value out of range, always naming the argument. Python ints are unbounded: they are mapped onto
# what the native code can hold here, never handed to a C conversion that would raise OverflowError or
# pybind11's "incompatible function arguments".
_REAL_TYPES = (int, float, np.integer, np.floating)


def shown(value: Any) -> str:
    """A short repr for messages (an absurd argument may be a huge int or a large array). A NumPy scalar
    shows as its value ("inf", not "np.float16(inf)")."""
    if isinstance(value, np.generic) and not isinstance(value, (np.void, np.object_)):
        value = value.item()
    return reprlib.repr(value)


def real(value: Any, name: str) -> float:
    """A real-number argument as a float (Python or NumPy int or float). bool, complex, timedelta64,
    strings, arrays and everything else are a TypeError. An int beyond float64's range becomes +-inf, so
    the caller's range check refuses it with a ValueError that names the argument."""
    if isinstance(value, (bool, np.bool_, np.timedelta64)) or not isinstance(value, _REAL_TYPES):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
        try:
            return float(v)
        except OverflowError:  # |v| >= 2^1024 - 2^970: beyond float64
            return math.inf if v > 0 else -math.inf
    with np.errstate(over="ignore"):  # a longdouble beyond float64's range is +-inf, refused by the caller
        return float(value)


def integer(value: Any, name: str) -> int:
    """An integer argument (Python or NumPy int; bool and floats are a TypeError). Unbounded: the caller
    clips or checks the range."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def per_row(value: Any, name: str, shape: tuple[int, ...], ints: bool = False) -> tuple[Any, np.ndarray | None]:
    """An option given once or per row: ``(scalar, None)`` for a scalar (a float by :func:`real`, or an int
    by :func:`integer` with ``ints``; a 0-d array counts as one), else ``(None, array)`` for an array of
    exactly ``shape`` (one entry per row), flattened in C order, contiguous, as float64 (int64 with
    ``ints``: unsigned values beyond int64 become its maximum). The caller checks the range. TypeError
    for non-numbers (bools too), ValueError for another shape; both name the argument."""
    if isinstance(value, (np.ndarray, list, tuple)) or _interop.is_foreign(value):
        a = as_array(value, name)
        if a.ndim == 0:
            value = a[()]
        else:
            if a.shape != tuple(shape):
                raise ValueError(
                    f"{name} has shape {a.shape}: pass a scalar or one value per row, of shape {tuple(shape)} "
                    "(the logits' shape without the vocabulary axis)"
                )
            kind = a.dtype.kind
            if ints:
                if kind not in "iu":
                    raise TypeError(f"{name} must hold integers, got an array of dtype {a.dtype}")
                if kind == "u" and a.dtype.itemsize == 8:
                    a = np.minimum(a, np.uint64(np.iinfo(np.int64).max))
                return None, np.ascontiguousarray(a.reshape(-1), dtype=np.int64)
            if not (kind in "iuf" or is_bfloat16(a.dtype)):
                raise TypeError(f"{name} must hold real numbers, got an array of dtype {a.dtype}")
            with np.errstate(over="ignore"):  # a longdouble beyond float64 becomes inf, refused by the caller
                return None, np.ascontiguousarray(a.reshape(-1), dtype=np.float64)
    return (integer(value, name) if ints else real(value, name)), None


def flag(value: Any, name: str) -> bool:
    """A bool option: True/False, NumPy bools, or the integers 0 and 1. A string or an array is refused
    rather than read by its truthiness (``is_causal="no"`` would mean True)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {shown(value) if isinstance(value, (int, np.integer)) else type(value).__name__}")


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """One of the strings in options (anything else, a non-string too, is a ValueError naming them)."""
    if not (isinstance(value, str) and value in options):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {shown(value)}")
    return value


def normalize_axis(axis: Any, ndim: int, function: str = "") -> int:
    """axis as an int in [0, ndim). ``function`` names a top-level reduction, whose message for
    axis=None or a tuple points to its SciPy-style twin in normexp.special."""
    if isinstance(axis, (bool, np.bool_)):  # NumPy's reductions refuse axis=True too
        raise TypeError("axis must be an integer, got bool")
    if function and (axis is None or isinstance(axis, (tuple, list))):
        raise TypeError(
            f"axis must be an integer, got {shown(axis)}: normexp.{function} works along one axis; for the "
            f"whole array (axis=None) or several axes use normexp.special.{function}, SciPy's semantics"
        )
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= ax < ndim:
        raise np.exceptions.AxisError(ax, ndim)
    return ax % ndim


def check_temperature(temperature: Any, compute: np.dtype | None = None) -> float:
    """temperature as a float: finite, > 0 and, for the kernels' dtype compute, with 1/temperature finite
    in it (float32: temperature >= 2.9e-39) and, in float32 (16-bit scores too), not rounding to 0
    (temperature <= 2^149), since the kernels scale the scores by 1/temperature there (cpp/src/temperature.hpp)."""
    t = real(temperature, "temperature")
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {shown(temperature)}")
    if compute is None:
        return t
    name = np.dtype(compute).name
    wide = np.dtype(np.float32) if is_16bit(np.dtype(compute)) else np.dtype(compute)  # 16-bit: float32 registers
    if not 1.0 / t <= float(np.finfo(wide).max):
        raise ValueError(
            f"temperature {t:g} is too small for {name} scores (1/temperature overflows); use a larger one or float64"
        )
    if wide.itemsize == 4 and not 1.0 / t >= 2.0**-149:
        raise ValueError(
            f"temperature {t:g} is too large for {name} scores (1/temperature rounds to 0 in float32); "
            "use a smaller one or float64"
        )
    return t


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or a CPU array with __dlpack__ (a torch tensor), got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, but the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, but the result has dtype {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writeable array")
    return out


def _kernel_input(a: np.ndarray, compute: np.dtype) -> np.ndarray:
    """a as the kernels' dtype, aligned, strides a multiple of the item size (copies only if needed)."""
    a = a.astype(compute, copy=False)
    if not a.flags.aligned or any(s % a.itemsize for s in a.strides):
        a = np.array(a, dtype=compute, copy=True)
    return a


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides


def _native_out(out: np.ndarray | None, src: np.ndarray, shape: tuple[int, ...], compute: np.dtype) -> np.ndarray:
    """The array the kernel writes: out itself when it has the compute dtype and is usable, else a new one."""
    if out is not None and out.dtype == compute and out.flags.aligned and not any(s % out.itemsize for s in out.strides):
        # In place (out is x, same layout) is fine; any other overlap would read already-written values.
        if not np.shares_memory(out, src) or _same_layout(out, src):
            return out
    return np.empty(shape, dtype=compute)


def narrow(a: np.ndarray, res: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """a (computed in float32/float64) as the result dtype res, into out if given. A value beyond a
    16-bit dtype's range (a log_softmax below -65504 in float16) becomes +-inf, which is its correct
    rounding there: not an overflow to warn about."""
    with np.errstate(over="ignore"):
        if out is not None:
            np.copyto(out, a, casting="unsafe")
            return out
        return a if a.dtype == res else a.astype(res)


def _finish(dst: np.ndarray, out: np.ndarray | None, res: np.dtype) -> np.ndarray:
    if out is not None:
        return out if dst is out else narrow(dst, res, out)
    return narrow(dst, res)


# The native single-crossing paths that normexp.softmax / log_softmax / logsumexp try first for NumPy input
# (None: the general path below). A tensor of another library reaches the general path, as its NumPy view
# (dlpack_io), and tries them here: a torch softmax of 1000 entries took 16 us through the general path
# against 1.6 us for the same array in NumPy.
_FAST = {"softmax": _core.fast_softmax, "log_softmax": _core.fast_log_softmax}


@_interop.dlpack_io("x")
def elementwise(op: str, x: Any, axis: Any, temperature: Any, where: Any, out: Any, acc: Any = "high") -> np.ndarray:
    """softmax / log_softmax along one axis."""
    if where is None:
        r = _FAST[op](x, axis, temperature, out, _isa_override.get(), acc)
        if r is not None:
            return r
    mode = accuracy(acc)
    a = as_array(x)
    res, compute = result_dtype(a.dtype)
    compute = kernel_dtype(res, compute)
    t = check_temperature(temperature, compute)
    scalar_input = a.ndim == 0
    if scalar_input:
        a = a.reshape(1)
        ax = normalize_axis(axis, 1, op)
    else:
        ax = normalize_axis(axis, a.ndim, op)
    shape = a.shape
    if out is not None:
        out = check_out(out, () if scalar_input else shape, res)
    out_k = out.reshape(1) if (out is not None and scalar_input) else out

    mask = None
    if where is not None:
        mask = as_array(where, "where")
        if mask.dtype != np.bool_:
            raise TypeError(f"where must be a boolean array, got dtype {mask.dtype}")
        try:
            mask = np.broadcast_to(mask, shape)
        except ValueError:
            raise ValueError(f"where with shape {np.shape(where)} cannot be broadcast to the input's shape {shape}") from None
        src = np.where(mask, a.astype(compute, copy=False), compute.type(-np.inf))
    else:
        src = _kernel_input(a, compute)

    dst = _native_out(out_k, src, shape, compute)
    if a.size:
        _core.reduce(REDUCTION[op], src, dst, ax, t, _isa_override.get(), mode)
        if mask is not None:
            empty_rows = ~np.any(mask, axis=ax, keepdims=True)
            if empty_rows.any():
                fill = 0.0 if op == "softmax" else -np.inf
                np.copyto(dst, compute.type(fill), where=np.broadcast_to(empty_rows, shape))
    result = _finish(dst, out_k, res)
    if scalar_input:
        return out if out is not None else result.reshape(())
    return out if out is not None else result


@_interop.dlpack_io("x")
def logsumexp(x: Any, axis: Any, b: Any, keepdims: Any, return_sign: Any, out: Any, name: str = "x", acc: Any = "high"):
    if b is None and return_sign is False and (keepdims is False or keepdims is True):  # _FAST above
        r = _core.fast_logsumexp(x, axis, out, keepdims, _isa_override.get(), acc)
        if r is not None:
            return r
    mode = accuracy(acc)  # b= is computed at high accuracy in either mode (weighted_logsumexp)
    a = as_array(x, name)
    res, compute = result_dtype(a.dtype, name)
    keepdims = flag(keepdims, "keepdims")
    return_sign = flag(return_sign, "return_sign")
    if a.ndim == 0:
        a = a.reshape(1)
        ax = normalize_axis(axis, 1, "logsumexp")
        keep_shape: tuple[int, ...] = (1,)
        final_shape: tuple[int, ...] = (1,) if keepdims else ()
    else:
        ax = normalize_axis(axis, a.ndim, "logsumexp")
        keep_shape = a.shape[:ax] + (1,) + a.shape[ax + 1 :]
        final_shape = keep_shape if keepdims else a.shape[:ax] + a.shape[ax + 1 :]
    if out is not None:
        out = check_out(out, final_shape, res)

    wrote_out = False
    if b is not None:
        val, sign = weighted_logsumexp(a, b, ax, compute)
        if not return_sign:
            val = np.where(sign < 0, compute.type(np.nan), val)
    else:
        compute = kernel_dtype(res, compute)
        src = _kernel_input(a, compute)
        out_keep = None
        if out is not None:
            out_keep = out.reshape(keep_shape)  # a view unless out's strides forbid it
            if out.size and not np.shares_memory(out_keep, out):
                out_keep = None
        val = _native_out(out_keep, src, keep_shape, compute)
        wrote_out = out_keep is not None and val is out_keep
        _core.reduce(_core.Reduction.logsumexp, src, val, ax, 1.0, _isa_override.get(), mode)
        sign = None
        if return_sign:
            sign = np.where(np.isnan(val), np.nan, np.where(val == -np.inf, 0.0, 1.0)).astype(compute)

    val = val.reshape(final_shape)
    if out is not None:
        if not wrote_out:
            narrow(val, res, out)
        result = out
    else:
        result = narrow(val, res)
        if result.ndim == 0:
            result = result[()]
    if return_sign:
        sign = sign.reshape(final_shape).astype(res)
        return result, (sign[()] if sign.ndim == 0 else sign)
    return result


def weighted_logsumexp(a: np.ndarray, b: Any, ax: int, compute: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """log|sum b exp(a)| and its sign along ax (keepdims), evaluated in float64 (at least) and rounded
    to compute at the end: a weight or a product that float32 cannot hold (b = 1e-148 against a score of
    238) still counts.

    An entry with b == 0 takes no part, whatever its score (NaN and inf too). Of the others, per row:
      * a NaN score or weight, an infinite weight on a -inf score (inf * 0), or infinite terms of both
        signs give NaN (sign NaN);
      * otherwise an infinite term (score +inf, or weight +-inf) gives +inf with its sign;
      * otherwise the sum is finite. Entries with equal scores are merged first into one level whose
        weight is the sum of theirs: equal scores cancel in the weights alone (b = [1, -0.5] on
        a = [1e17, 1e17] is 0.5 exp(1e17); comparing a + log|b| instead rounds log|b| away once
        |a| > 2^53), and a level whose weights cancel is removed, however far above the others.
        Level l is the term W_l exp(a_l) = sign(W_l) exp(d_l) exp(r) with r the largest score left and
        d_l = (a_l - r) + log|W_l|. The levels at the largest d (m = the sum of their signs) are kept
        apart from the rest, s = sum sign exp(d - d_max), and
            log|sum| = r + d_max + log|m| + log1p(s / m):
        full accuracy when the reference terms dominate, and no cancellation when a tiny weight sits
        on the largest score (the reference is the largest term, not the largest score).
    """
    bb = as_array(b, "b")
    if bb.dtype.kind == "c":
        raise TypeError("b: complex weights are not supported")
    if bb.dtype.kind not in "biuf" and not is_bfloat16(bb.dtype):  # ml_dtypes' bfloat16 is kind 'V'
        raise TypeError(f"b: expected real numbers, got dtype {bb.dtype}")
    if bb.dtype.kind == "f":
        result_dtype(bb.dtype, "b")  # the float dtypes of x; longdouble is refused as for x
    try:
        a_b, b_b = np.broadcast_arrays(a, bb)
    except ValueError:
        raise ValueError(f"b with shape {bb.shape} cannot be broadcast to the input's shape {a.shape}") from None
    if a_b.shape != a.shape:
        raise ValueError(f"b with shape {bb.shape} would change the input's shape {a.shape}")
    keep_shape = a.shape[:ax] + (1,) + a.shape[ax + 1 :]
    n = a.shape[ax]
    if n == 0 or a.size == 0:
        return np.full(keep_shape, -np.inf, compute), np.zeros(keep_shape, compute)
    wide = np.promote_types(compute, np.float64)
    # Rows of the reduction: (rows, n), the reduced axis last.
    A = np.moveaxis(a_b, ax, -1).astype(wide).reshape(-1, n)
    B = np.moveaxis(b_b, ax, -1).astype(wide).reshape(-1, n)
    with np.errstate(all="ignore"):
        used = B != 0  # NaN weights too
        nan_term = used & (np.isnan(A) | np.isnan(B) | (np.isinf(B) & (A == -np.inf)))
        inf_term = used & ~nan_term & ((A == np.inf) | np.isinf(B))
        pos_inf = np.any(inf_term & (B > 0), axis=1, keepdims=True)
        neg_inf = np.any(inf_term & (B < 0), axis=1, keepdims=True)
        row_nan = np.any(nan_term, axis=1, keepdims=True) | (pos_inf & neg_inf)
        row_inf = pos_inf | neg_inf

        # The finite terms (rows with a NaN or an infinite term get their result below), merged into
        # levels of equal score: sorted by score (unused entries, -inf, last), the weights of each run of
        # equal scores summed onto its first entry.
        act = used & np.isfinite(A) & np.isfinite(B)
        order = np.argsort(np.where(act, -A, np.inf), axis=1, kind="stable")
        a_s = np.take_along_axis(np.where(act, A, -np.inf), order, axis=1)
        b_s = np.take_along_axis(np.where(act, B, 0.0), order, axis=1)
        first = np.ones(a_s.shape, dtype=bool)
        first[:, 1:] = a_s[:, 1:] != a_s[:, :-1]
        level = np.cumsum(first.reshape(-1)) - 1  # unique across rows: each row starts a level
        w = np.bincount(level, weights=b_s.reshape(-1))[level].reshape(a_s.shape)
        live = first & (w != 0)

        r = np.max(np.where(live, a_s, -np.inf), axis=1, keepdims=True)
        r = np.where(np.isfinite(r), r, 0.0)  # a row without terms: its d are all -inf
        d = np.where(live, (a_s - r) + np.log(np.abs(w)), -np.inf)
        sg = np.where(live, np.sign(w), 0.0)
        d_max = np.max(d, axis=1, keepdims=True)
        top = live & (d == d_max)
        m = np.sum(np.where(top, sg, 0.0), axis=1, keepdims=True)
        d_ref = np.where(np.isfinite(d_max), d_max, 0.0)
        s = np.sum(np.where(live & ~top, sg * np.exp(d - d_ref), 0.0), axis=1, keepdims=True)

        # m == 0: levels of distinct scores whose terms are equal to rounding, of opposite signs: their
        # sum is 0 in this precision and the rest, s, is what is left.
        q = np.where(m != 0, s / m, 0.0)
        sign = np.where(m != 0, np.sign(1 + q) * np.sign(m), np.sign(s))
        q = np.where(q < -1, -q - 2, q)  # log|1 + q| = log1p(-q - 2) when 1 + q < 0
        mag = np.where(m != 0, np.log1p(q) + np.log(np.abs(m)), np.log(np.abs(s)))
        val = (mag + d_max) + r
        val = np.where(row_nan, np.nan, np.where(row_inf, np.inf, val))
        sign = np.where(row_nan, np.nan, np.where(pos_inf, 1.0, np.where(neg_inf, -1.0, sign)))
    lead = a.shape[:ax] + a.shape[ax + 1 :]
    val = np.expand_dims(val.reshape(lead), ax).astype(compute)
    sign = np.expand_dims(sign.reshape(lead), ax).astype(compute)
    return val, sign
