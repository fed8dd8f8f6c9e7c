"""normexp: fast, numerically stable softmax, log_softmax and logsumexp for NumPy arrays.

SIMD kernels (AVX-512 or AVX2+FMA on x86-64, NEON on aarch64, a scalar fallback) are chosen once at
import; ``NORMEXP_ISA=scalar|avx2|avx512|neon`` forces one. Every function works on the caller's memory
without copying (any axis, any strides), releases the GIL, and threads large inputs with OpenMP. NumPy
arrays and any CPU array with ``__dlpack__`` (torch tensors, JAX arrays) are accepted, and results come
back as the caller's array type (python/normexp/_interop.py).

>>> import numpy as np, normexp
>>> p = normexp.softmax(np.array([1.0, 2.0, 3.0]))
>>> float(p.sum())
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _api, _core

__version__: str = _core.__version__

# Select the kernel set now, so a bad NORMEXP_ISA fails the import with its message; and read
# NORMEXP_AVX512_BF16 and NORMEXP_AMX now too (isa_extensions() reads them once), also when NORMEXP_ISA selects another set,
# so a bad value fails the import and a change after it has no effect ("read at import", as documented).
_core.isa()
_core.isa_extensions()

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "set_num_threads",
    "get_num_threads",
    "isa",
    "available_isas",
    "isa_extensions",
    "use_isa",
    "special",
    "__version__",
    "attention",
    "merge_attention",
    "paged_attention",
    # the language-model output layer (normexp/sampling.py)
    "sample",
    "cross_entropy",
    "fit_temperature",
    "calibration_error",
    "TemperatureFit",
    # the output layer fused with its reduction (normexp/lm_head.py)
    "linear_logsumexp",
    "linear_cross_entropy",
]

use_isa = _api.use_isa
# The common call in one crossing, one entry point per op; None means "take the general path".
_fast_softmax, _fast_log_softmax, _fast_logsumexp = _core.fast_softmax, _core.fast_log_softmax, _core.fast_logsumexp
_isa = _api._isa_override


def softmax(
    x: Any, axis: int = -1, *, temperature: float = 1.0, where: Any = None, accuracy: str = "high", out: Any = None
) -> np.ndarray:
    """Softmax along ``axis``: ``exp(x / T - max) / sum(exp(x / T - max))``.

    Parameters
    ----------
    x : array_like, or a CPU tensor / array with ``__dlpack__`` (torch, JAX: the result is of its type)
        Scores. float32/float64 compute in their own precision; float16 and bfloat16 compute in
        float32 and return their own dtype; ints and bools are promoted like ``np.exp`` does.
    axis : int
        The axis to normalize (negative counts from the end). No transposing copy is made.
    temperature : float
        Divides the scores; a finite number > 0.
    where : array_like of bool, optional
        Broadcastable mask; False entries get probability 0. A row with no True entry is all zeros.
    accuracy : {"high", "fast"}
        ``"high"`` (default): ``x - max`` exact, within 4 ULP of the float64 reference for float32 anywhere.
        ``"fast"``: ``t = (x - max) / T`` rounded once in working precision, as other libraries compute it:
        relative error at most about 2 ULP + ``|t| * 2**-24`` for an entry ``t`` (float64: ``2**-53``;
        ``3 |t|`` with a temperature, whose ``1/T`` and product are rounded too), i.e. a few ULP near the
        maximum, ~50 ULP for float32 entries 100 below it. Faster.
    out : ndarray or torch tensor, optional
        Result's shape and dtype, writeable; may be ``x`` itself (in place). Returned (the same object).

    Special values follow SciPy: a NaN makes its row NaN; a row containing +inf or of only -inf is NaN.
    """
    if where is None:
        r = _fast_softmax(x, axis, temperature, out, _isa.get(), accuracy)
        if r is not None:
            return r
    return _api.elementwise("softmax", x, axis, temperature, where, out, accuracy)


def log_softmax(
    x: Any, axis: int = -1, *, temperature: float = 1.0, where: Any = None, accuracy: str = "high", out: Any = None
) -> np.ndarray:
    """Logarithm of :func:`softmax` along ``axis``, computed as ``x/T - max - log(sum)`` without forming
    the softmax, with ``log1p`` of the other terms so entries near the maximum keep full relative accuracy
    (float32: within 1.5 ULP, ``x - max`` and ``log(sum)`` rounded to float32 as the peers round them; up
    to 1 ULP more from the SIMD kernels' exps in the sum).

    Arguments as for :func:`softmax`; masked entries (``where=False``) are ``-inf``, and a row with no
    True entry is all ``-inf``. A row whose maximum is +inf is NaN at the +inf entries, -inf elsewhere.
    ``accuracy="fast"`` computes ``t - log(sum)`` in working precision with ``t = (x - max) / T`` rounded
    once and ``log(sum)`` rounded to the dtype: absolute error at most about
    ``(8 + 2 |t| + 2 |log(sum)|) * 2**-24`` (float64: ``2**-53``; ``6 |t|`` with a temperature), so a few
    ULP relative except where the result cancels towards 0.
    """
    if where is None:
        r = _fast_log_softmax(x, axis, temperature, out, _isa.get(), accuracy)
        if r is not None:
            return r
    return _api.elementwise("log_softmax", x, axis, temperature, where, out, accuracy)


def logsumexp(
    x: Any,
    axis: int = -1,
    *,
    b: Any = None,
    keepdims: bool = False,
    return_sign: bool = False,
    accuracy: str = "high",
    out: Any = None,
) -> Any:
    """``log(sum(b * exp(x)))`` along ``axis``, without overflow.

    Parameters
    ----------
    x : array_like
        Input (dtype rules as for :func:`softmax`).
    axis : int
        The axis to reduce.
    b : array_like, optional
        Weights broadcastable to ``x``; may be negative (then use ``return_sign``). An entry with
        ``b == 0`` takes no part, whatever its score, NaN and inf too (SciPy's rule). Entries with
        equal scores cancel in their weights alone, at any magnitude (``b=[1, -0.5]`` on
        ``[1e17, 1e17]`` gives ``1e17``); a sum that cancels exactly gives -inf with sign 0.
    keepdims : bool
        Keep the reduced axis with length 1 (True/False, or 0/1).
    return_sign : bool
        Also return the sign of the sum (1, -1, or 0 for an empty or cancelled sum).
    accuracy : {"high", "fast"}
        ``"high"`` (default): ``x - max`` exact and ``log1p`` of the terms below the maximum, full relative
        accuracy. ``"fast"``: ``max + log(sum)`` with each ``x - max`` rounded once: relative error of the
        sum about 2 ULP + ``max |t| * 2**-24`` (float64: ``2**-53``), so an absolute error of the result of
        about that much plus the rounding of the result itself (half an ULP of it, which dominates when
        ``|result|`` is large). Faster. (With ``b=`` the result is the high-accuracy one in either mode.)
    out : ndarray or torch tensor, optional
        Receives the result (the reduced shape and the result dtype).

    Returns the log-sum-exp (a NumPy scalar for 1-d input), and the sign if ``return_sign``. A row of
    only -inf, and an empty row, give -inf; +inf gives +inf; NaN propagates. A negative weighted sum
    without ``return_sign`` gives NaN.
    """
    if b is None and return_sign is False and (keepdims is False or keepdims is True):
        r = _fast_logsumexp(x, axis, out, keepdims, _isa.get(), accuracy)
        if r is not None:
            return r
    return _api.logsumexp(x, axis, b, keepdims, return_sign, out, acc=accuracy)


def set_num_threads(n: int) -> None:
    """Set the number of threads normexp uses process-wide (``n <= 0``: as many as OpenMP allows; any
    integer is accepted, a count above the cap means the cap).

    Capped by ``omp_get_max_threads()``, so ``OMP_NUM_THREADS`` and threadpoolctl limits still hold.
    Inputs below ~32k elements always run on the calling thread.
    """
    n = _api.integer(n, "set_num_threads: n")  # int(0.5) would silently mean "all threads"
    # Any n above the OpenMP cap means the cap, any n <= 0 "all": clip to what the native int holds.
    _core.set_num_threads(min(max(n, 0), 2**31 - 1))


def get_num_threads() -> int:
    """The number of threads a large call will use."""
    return _core.get_num_threads()


def isa() -> str:
    """The kernel set calls from this context use: ``"scalar"``, ``"avx2"``, ``"avx512"`` or ``"neon"``;
    inside ``with use_isa(name)`` that name, elsewhere the set chosen at import (``NORMEXP_ISA`` or the best)."""
    return _api.current_isa_override() or _core.isa()


def available_isas() -> list[str]:
    """Every kernel set this CPU can run, scalar first, best last."""
    return list(_core.available_isas())


def isa_extensions() -> list[str]:
    """The optional CPU extensions the kernel sets use on top of their ISA: ``"avx512_bf16"`` where the
    ``avx512`` set takes its AVX512_BF16 kernels (bfloat16 stores by ``vcvtneps2bf16``),
    ``"amx_bf16"`` where it computes bfloat16 x bfloat16 attention scores on the AMX tile unit (by default
    wherever the CPU and the OS have AMX), and ``"avx512_bf16_dot"`` where it computes them by ``vdpbf16ps``
    instead (by default only on AMD CPUs, where that instruction outruns float32 FMA). The environment
    variables ``NORMEXP_AVX512_BF16`` and ``NORMEXP_AMX`` (read at import) turn them off (``0``) or on
    (``1``; ``NORMEXP_AVX512_BF16=1`` alone takes ``vdpbf16ps``); ``[]`` otherwise."""
    return list(_core.isa_extensions())


from . import special  # noqa: E402  (needs the functions above)
from .attention import attention, merge_attention, paged_attention  # noqa: E402
from .sampling import TemperatureFit, calibration_error, cross_entropy, fit_temperature, sample  # noqa: E402
from .lm_head import linear_cross_entropy, linear_logsumexp  # noqa: E402
