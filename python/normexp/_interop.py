"""Arrays from other libraries: any CPU object with ``__dlpack__`` (torch tensors, JAX arrays, CuPy host
arrays, ...) in, the caller's array type out. The only module that knows about them.

In: :func:`to_numpy` makes a NumPy view of the object's memory, never a copy, so the kernels read the
caller's tensor in place and ``out=`` writes into it: ``np.from_dlpack`` for any DLPack object, and for
torch tensors ``Tensor.numpy()``, the same view without a DLPack capsule per call. NumPy has no bfloat16:
a torch bfloat16 tensor is seen as int16 and viewed as ``ml_dtypes.bfloat16`` (same bits, still no copy);
another object whose DLPack tensor is bfloat16 (NumPy's import refuses the type) is viewed in place from the
capsule's DLTensor (:func:`_bfloat16_from_dlpack`), and one without ``__dlpack__`` support for it goes through
its ``__array__`` (JAX's is an ml_dtypes array).
Refused, with what to do: a torch tensor that requires grad (normexp does no autograd), memory on another
device than the CPU, and dtypes NumPy cannot view.

Out: :func:`dlpack_io` wraps a public function. When one of its array arguments (or ``out=``) is a
foreign object, the NumPy results become the caller's type: torch tensors through ``torch.from_numpy``
(sharing the result's memory, bfloat16 by the same int16 view), array-API objects (JAX) through their
namespace's ``from_dlpack`` (``asarray`` for what DLPack cannot carry). ``out=`` comes back as the very
object passed in. A NumPy call pays one check per named argument and nothing else.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import sys
from typing import Any, Callable, TypeVar

import numpy as np

_F = TypeVar("_F", bound=Callable[..., Any])

# DLPack's device types (dlpack.h, DLDeviceType), for messages.
_CPU = 1
_DEVICES = {2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi", 10: "rocm",
            11: "rocm_host", 12: "ext_dev", 13: "cuda_managed", 14: "oneapi", 15: "webgpu", 16: "hexagon"}


def is_foreign(obj: Any) -> bool:
    """True for an array of another library: it speaks DLPack and is not a NumPy array."""
    return not isinstance(obj, np.ndarray) and hasattr(type(obj), "__dlpack__")


def _torch_of(obj: Any) -> Any:
    """The torch module if obj is a torch tensor (torch is never imported here), else None."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(obj, torch.Tensor) else None


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 arrays need the ml_dtypes package (pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


# The DLPack C structures (dlpack.h, the unversioned capsule "dltensor" that ``__dlpack__()`` returns).
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):  # the first member of DLManagedTensor
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensorVersioned(ctypes.Structure):  # DLPack >= 1.0, the capsule "dltensor_versioned"
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


_kDLBfloat = 4
_kReadOnly = 1  # DLPACK_FLAG_BITMASK_READ_ONLY
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _CapsuleView:
    """The base of a view into a DLPack tensor's memory: holds the capsule, whose destructor (the capsule was
    not consumed) calls the producer's deleter when the last view goes away."""

    def __init__(self, capsule: Any, interface: dict) -> None:
        self._capsule = capsule
        self.__array_interface__ = interface


def _bfloat16_from_dlpack(obj: Any) -> np.ndarray | None:
    """A NumPy ``ml_dtypes.bfloat16`` view (no copy) of a CPU DLPack object whose tensor is bfloat16, which
    ``np.from_dlpack`` refuses; None for any other dtype (and for an object whose capsule cannot be read)."""
    # As np.from_dlpack imports the other dtypes: a versioned capsule (DLPack >= 1.0) says whether its tensor
    # may be written; an unversioned one cannot, and is read-only (JAX gives one: its arrays are immutable).
    try:
        try:
            capsule = obj.__dlpack__(max_version=(1, 0))
        except TypeError:  # a producer older than the max_version keyword
            capsule = obj.__dlpack__()
        if ctypes.pythonapi.PyCapsule_IsValid(ctypes.py_object(capsule), b"dltensor_versioned"):
            m = _DLManagedTensorVersioned.from_address(_capsule_pointer(capsule, b"dltensor_versioned"))
            t, read_only = m.dl_tensor, bool(m.flags & _kReadOnly)
        else:
            t, read_only = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor")), True
    except Exception:  # an unusual producer: the caller reports its own error
        return None
    if (t.dtype.code, t.dtype.bits, t.dtype.lanes) != (_kDLBfloat, 16, 1):  # (the caller checked the device)
        return None
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    if 0 in shape:
        return np.empty(shape, _bfloat16())
    strides = tuple(int(t.strides[i]) * 2 for i in range(t.ndim)) if t.strides else None  # elements -> bytes
    interface = {"version": 3, "shape": shape, "strides": strides, "data": (t.data + t.byte_offset, read_only),
                 "typestr": ("<" if sys.byteorder == "little" else ">") + "u2"}
    return np.asarray(_CapsuleView(capsule, interface)).view(_bfloat16())


def to_numpy(obj: Any, name: str, writeable: bool = False) -> np.ndarray:
    """A NumPy view of a foreign array's memory (no copy). TypeError or ValueError naming the argument
    for a tensor that requires grad, a non-CPU device, or a dtype NumPy cannot view; with ``writeable``
    (``out=``), also for a torch lazy negative or conjugate view, whose memory does not hold its values,
    and for a tensor whose elements share memory (torch's own out= refuses it)."""
    torch = _torch_of(obj)
    if torch is not None:
        if writeable and (obj.is_neg() or obj.is_conj()):
            # Resolving it would make a copy: the result would be written there and out left unchanged.
            kind = "negative" if obj.is_neg() else "conjugate"
            raise ValueError(
                f"{name} is a lazy {kind} view (its memory holds the {kind} of its values) and cannot be "
                f"written in place; pass {name}.resolve_neg() / {name}.resolve_conj() (a copy) or a plain tensor"
            )
        if writeable and any(st == 0 and n > 1 for st, n in zip(obj.stride(), obj.shape)):
            # What torch's own out= refuses: rows written into the same memory keep only the last one.
            raise ValueError(
                f"{name} has elements that share memory (a stride-0 view, e.g. from expand()); pass a tensor "
                f"with memory of its own, e.g. {name}.contiguous() or torch.empty(...)"
            )
        if obj.requires_grad:
            raise TypeError(
                f"{name}: the tensor requires grad, and normexp does not do autograd; pass {name}.detach() "
                "(or compute it under torch.no_grad())"
            )
        if obj.device.type != "cpu":
            raise ValueError(f"{name} is on device {obj.device}; normexp runs on the CPU: move it there with {name}.cpu()")
        if obj.is_conj() or obj.is_neg():  # lazy conjugate/negative views cannot be exported (a copy)
            obj = obj.resolve_conj().resolve_neg()
        # Tensor.numpy() is torch's own DLPack-free view of the same memory: the same result as
        # np.from_dlpack, at a fraction of the cost (no capsule to make and release per call).
        try:
            if obj.dtype == torch.bfloat16:
                return obj.view(torch.int16).numpy().view(_bfloat16())
            return obj.numpy()
        except TypeError as e:  # a dtype NumPy has no equivalent for (float8, ...)
            raise TypeError(f"{name}: cannot read a tensor of dtype {obj.dtype} ({e}); cast it to float32, "
                            "float64, float16 or bfloat16") from None
    else:
        device = getattr(obj, "__dlpack_device__", None)
        try:
            kind, index = device() if device is not None else (_CPU, 0)
            kind = int(kind)
        except MemoryError:
            raise
        except Exception as e:  # a broken protocol method: say which argument, not a bare error from inside it
            raise TypeError(f"{name}: cannot read a {type(obj).__name__}: its __dlpack_device__() failed ({e!r})") from None
        if kind != _CPU:
            where = f"{_DEVICES.get(kind, f'DLPack device type {kind}')}:{index}"
            raise ValueError(f"{name} is on device {where}; normexp runs on the CPU: copy it to host memory first")
    try:
        return np.from_dlpack(obj)
    except MemoryError:
        raise
    except Exception as e:  # BufferError, TypeError, ... or whatever a third-party __dlpack__ raises
        dtype = getattr(obj, "dtype", None)
        if torch is None:  # NumPy's DLPack import has no bfloat16: the capsule's tensor read in place, else
            view = _bfloat16_from_dlpack(obj)  # the object's __array__ (JAX's gives an ml_dtypes array)
            if view is not None:
                return view
            if hasattr(obj, "__array__") and "bfloat16" in str(dtype):
                return np.asarray(obj)
        raise TypeError(
            f"{name}: cannot read a {type(obj).__name__} of dtype {dtype} ({e}); "
            "cast it to float32, float64, float16 or bfloat16"
        ) from None


# ---- results in the caller's type ------------------------------------------------------------------------
def _to_torch(torch: Any, r: np.ndarray) -> Any:
    if not r.flags.writeable or min(r.strides, default=0) < 0:
        r = r.copy()  # torch.from_numpy takes neither (results are fresh arrays; this is for safety)
    if r.dtype.kind == "V":  # ml_dtypes.bfloat16 (dtype.name is slow to ask on every call)
        return torch.from_numpy(r.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(r)


def _to_namespace(xp: Any, r: np.ndarray) -> Any:
    try:
        return xp.from_dlpack(r)
    except (BufferError, TypeError, ValueError, RuntimeError):  # bfloat16: NumPy cannot export it
        return xp.asarray(r)


def _converter(obj: Any) -> Callable[[np.ndarray], Any]:
    """The function that turns a NumPy result into obj's array type (NumPy if it has no namespace)."""
    torch = _torch_of(obj)
    if torch is not None:
        return functools.partial(_to_torch, torch)
    namespace = getattr(obj, "__array_namespace__", None)
    if namespace is not None:
        return functools.partial(_to_namespace, namespace())
    return lambda r: r


def _lead(value: Any) -> Any:
    """value, or the first element of a list/tuple of arrays (merge_attention's parts)."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def _back(r: Any, convert: Callable[[np.ndarray], Any], out_view: Any, out_obj: Any) -> Any:
    """A result in the caller's type: out's NumPy view becomes the object passed as out, arrays and NumPy
    scalars are converted, tuples element by element. (A function, not a recursive closure: that would
    be a reference cycle per call, freed only by the garbage collector.)"""
    if out_view is not None and r is out_view:
        return out_obj
    if isinstance(r, tuple) and not hasattr(r, "_fields"):  # not a NamedTuple of floats
        return tuple(_back(e, convert, out_view, out_obj) for e in r)
    if isinstance(r, np.generic):
        r = np.asarray(r)
    return convert(r) if isinstance(r, np.ndarray) else r


def _written(obj: Any) -> None:
    """Tell torch that out= was written in place through its NumPy view, as its own in-place ops do (the
    version counter): autograd then refuses a backward pass that saved the tensor's old values, where it
    would otherwise compute a wrong gradient from the new ones."""
    torch = _torch_of(obj)
    if torch is not None and not obj.is_inference():  # inference tensors have no version counter
        torch.autograd.graph.increment_version(obj)


def dlpack_io(*inputs: str) -> Callable[[_F], _F]:
    """Decorator: the array arguments named in ``inputs`` (and ``out``) may be foreign arrays.

    If one is, they are replaced by NumPy views (:func:`to_numpy`), and the results (arrays and NumPy
    scalars, also inside a returned tuple) come back as the type of the first foreign one among
    ``inputs``, then ``out``; ``out=`` itself is returned as the object passed in. Other array arguments
    (masks, weights, labels) are converted where the function reads them (``_api.as_array``)."""

    def decorate(f: _F) -> _F:
        params = list(inspect.signature(f).parameters)
        names = tuple(inputs) + (("out",) if "out" in params else ())
        where = {n: params.index(n) for n in names}

        def get(args: tuple, kwargs: dict, n: str) -> Any:
            i = where[n]
            return args[i] if i < len(args) else kwargs.get(n)

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # NumPy arrays and None (the common call) are not foreign: no attribute lookups for them.
            found = [n for n in names
                     if (a := get(args, kwargs, n)) is not None and type(a) is not np.ndarray and is_foreign(_lead(a))]
            if not found:
                return f(*args, **kwargs)
            convert = _converter(_lead(get(args, kwargs, found[0])))
            out_obj = get(args, kwargs, "out") if "out" in where else None
            args_l = list(args)
            for n in found:
                v = get(args, kwargs, n)
                if isinstance(v, (list, tuple)):
                    v = [to_numpy(e, f"{n}[{i}]") if is_foreign(e) else e for i, e in enumerate(v)]
                else:
                    v = to_numpy(v, n, writeable=(n == "out"))
                if where[n] < len(args):
                    args_l[where[n]] = v
                else:
                    kwargs[n] = v
            out_view = get(tuple(args_l), kwargs, "out") if "out" in where else None  # out itself if NumPy
            r = f(*args_l, **kwargs)
            if out_view is not None and out_view is not out_obj:
                _written(out_obj)
            return _back(r, convert, out_view, out_obj)

        return wrapper  # type: ignore[return-value]

    return decorate
