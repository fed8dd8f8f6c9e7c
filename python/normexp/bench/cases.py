"""What is measured: one :class:`Case` per (operation, shape, axis, dtype[, causal]), its inputs, its
float64 reference result, and the traffic / work model that turns a time into GB/s or GFLOP/s.

Reductions (softmax, log_softmax, logsumexp) are described by the input shape and the reduced axis, and
normexp's accuracy contract (``accuracy="high"``, the default, or ``"fast"``: the row labelled ``fast``,
in which the peers compute the same function as in the high row).
Attention is described by (batch, heads, q_len, kv_len, head_dim) in the layout of
``torch.nn.functional.scaled_dot_product_attention``: q (B, H, Lq, D), k and v (B, H, Lkv, D).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

import numpy as np

REDUCTIONS = ("softmax", "log_softmax", "logsumexp")
OPERATIONS = REDUCTIONS + ("attention",)
DTYPES = ("float32", "float64", "float16", "bfloat16")
# The 16-bit types: reductions only (normexp reads and writes them in place); bfloat16 is ml_dtypes'.
HALF_DTYPES = ("float16", "bfloat16")


def np_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a case's dtype name (bfloat16: ml_dtypes.bfloat16, imported on first use)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
ACCURACIES = ("high", "fast")


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark case. ``shape`` is the input shape for reductions and (B, H, Lq, Lkv, D) for
    attention."""

    op: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    axis: int = -1
    causal: bool = False
    accuracy: str = "high"

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown operation {self.op!r}; choose from {', '.join(OPERATIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.accuracy not in ACCURACIES:
            raise ValueError(f"unknown accuracy {self.accuracy!r}; choose from {', '.join(ACCURACIES)}")
        if self.is_attention and self.accuracy != "high":
            raise ValueError("accuracy applies to the reductions only")
        if self.is_attention and self.dtype in HALF_DTYPES:
            raise ValueError("attention is measured in float32 and float64")
        if any(int(n) < 1 for n in self.shape):
            raise ValueError(f"every dimension must be >= 1, got {self.shape}")
        if self.op == "attention":
            if len(self.shape) != 5:
                raise ValueError(f"attention shape is (B, H, Lq, Lkv, D), got {self.shape}")
            if self.causal and self.shape[2] > self.shape[3]:
                raise ValueError("causal attention needs q_len <= kv_len")
        else:
            if not -len(self.shape) <= self.axis < len(self.shape):
                raise ValueError(f"axis {self.axis} is out of range for shape {self.shape}")
            if self.causal:
                raise ValueError("causal applies to attention only")

    # ---- naming --------------------------------------------------------------------------------------
    @property
    def is_attention(self) -> bool:
        return self.op == "attention"

    @property
    def norm_axis(self) -> int:
        return self.axis % len(self.shape)

    @property
    def last_axis(self) -> bool:
        return self.is_attention or self.norm_axis == len(self.shape) - 1

    @property
    def shape_label(self) -> str:
        if self.is_attention:
            b, h, lq, lkv, d = self.shape
            if lq == lkv:
                s = f"B{b} H{h} L{lq} D{d}"
            else:
                s = f"B{b} H{h} Lq{lq} Lkv{lkv} D{d}"
            return s + (" causal" if self.causal else "")
        s = "x".join(str(n) for n in self.shape)
        s = s if self.last_axis else f"{s} axis {self.norm_axis}"
        return s + (" fast" if self.accuracy == "fast" else "")

    @property
    def label(self) -> str:
        return f"{self.op} {self.dtype} {self.shape_label}"

    @property
    def itemsize(self) -> int:
        return np_dtype(self.dtype).itemsize

    # ---- sizes and the traffic / work model -----------------------------------------------------------
    @property
    def elements(self) -> int:
        """Input elements (reductions) or score-matrix entries computed (attention)."""
        if self.is_attention:
            return self.attention_pairs
        return math.prod(self.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.is_attention:
            b, h, lq, _, d = self.shape
            return (b, h, lq, d)
        if self.op == "logsumexp":
            return self.shape[: self.norm_axis] + self.shape[self.norm_axis + 1 :]
        return self.shape

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        if self.is_attention:
            b, h, lq, lkv, d = self.shape
            return [(b, h, lq, d), (b, h, lkv, d), (b, h, lkv, d)]
        return [self.shape]

    @property
    def bytes(self) -> int:
        """Compulsory memory traffic of one call: every input read once, the output written once."""
        n_in = sum(math.prod(s) for s in self.input_shapes)
        return (n_in + math.prod(self.out_shape)) * self.itemsize

    @property
    def attention_pairs(self) -> int:
        """(query, key) pairs that take part: Lq * Lkv, or the lower triangle for causal attention
        (query i sees keys 0 .. i + Lkv - Lq, the bottom-right alignment, which is the top-left one when
        Lq == Lkv)."""
        b, h, lq, lkv, _ = self.shape
        if not self.causal:
            per_head = lq * lkv
        else:
            off = lkv - lq
            per_head = sum(i + off + 1 for i in range(lq))
        return b * h * per_head

    @property
    def flops(self) -> int:
        """Floating-point work of attention: two GEMMs (scores = q k^T, out = p v) at 2 flops per
        multiply-add, over the pairs that take part; the softmax in between is not counted. 0 for
        reductions."""
        if not self.is_attention:
            return 0
        return 4 * self.attention_pairs * self.shape[4]

    @property
    def limit_kind(self) -> str:
        """The machine limit this case is measured against: 'copy' bandwidth for softmax / log_softmax
        (one read stream and one write stream), 'read' bandwidth for logsumexp (the output is tiny),
        and for attention whichever of 'fma' peak and 'read' bandwidth binds (roofline): decode
        (Lq = 1) reads K and V once at 0.5 flop/byte and is bandwidth-bound, prefill is FMA-bound."""
        if self.op in ("softmax", "log_softmax"):
            return "copy"
        if self.op == "logsumexp":
            return "read"
        return "fma" if self.shape[2] > 1 else "read"

    def cache_class(self, llc_bytes: int) -> str:
        """'in' when the working set fits in half the last-level cache, else 'out'."""
        return "in" if self.bytes <= llc_bytes // 2 else "out"

    def rotation(self, llc_bytes: int) -> int:
        """How many copies of the inputs (and outputs) the timing loop cycles through so that each call
        finds its data out of cache: enough to touch 2x the LLC between two uses of the same buffer.
        1 for in-cache cases (they are meant to be measured hot) and for cases larger than 2x LLC."""
        if self.cache_class(llc_bytes) == "in":
            return 1
        return max(1, math.ceil(2 * llc_bytes / self.bytes))

    # ---- data ---------------------------------------------------------------------------------------
    def make_inputs(self, seed: int = 0) -> tuple[np.ndarray, ...]:
        """The inputs every peer gets: scores ~ N(0, 4^2) for reductions (a spread of ~ +-20 that makes
        the max subtraction matter and keeps every probability a normal float32), q/k/v ~ N(0, 1)."""
        rng = np.random.default_rng(seed)
        dt = np_dtype(self.dtype)
        if self.is_attention:
            return tuple(_normal(rng, s, dt) for s in self.input_shapes)
        x = _normal(rng, self.shape, dt)
        x *= dt.type(4.0)
        return (x,)

    def reference(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The float64 result the peers are checked against."""
        if self.is_attention:
            return attention_reference(*inputs, causal=self.causal)
        x = inputs[0].astype(np.float64)
        ax = self.norm_axis
        m = x.max(axis=ax, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=ax, keepdims=True)
        if self.op == "softmax":
            return e / s
        if self.op == "log_softmax":
            return x - m - np.log(s)
        return np.squeeze(m + np.log(s), axis=ax)

    # ---- (de)serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "op": self.op,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "axis": self.norm_axis if not self.is_attention else None,
            "causal": self.causal if self.is_attention else None,
            "accuracy": self.accuracy,
            "label": self.shape_label,
        }


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    if dt == np.float32:
        return rng.standard_normal(shape, dtype=np.float32)
    if dt.itemsize == 2:  # float16, bfloat16: float32 draws rounded once
        return rng.standard_normal(shape, dtype=np.float32).astype(dt)
    return rng.standard_normal(shape)


def attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """softmax(q k^T / sqrt(D) [+ causal mask]) v in float64, one (batch, head) at a time so that the
    score matrix of one head is the largest temporary."""
    b, h, lq, d = q.shape
    lkv = k.shape[2]
    out = np.empty((b, h, lq, v.shape[3]), np.float64)
    scale = 1.0 / math.sqrt(d)
    keep = None
    if causal:
        keep = np.arange(lkv)[None, :] <= np.arange(lq)[:, None] + (lkv - lq)
    for i in range(b):
        for j in range(h):
            s = (q[i, j].astype(np.float64) @ k[i, j].astype(np.float64).T) * scale
            if keep is not None:
                s = np.where(keep, s, -np.inf)
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            out[i, j] = s @ v[i, j].astype(np.float64)
    return out


# ---- default case lists (the list) -------------------------------------------------------------

# Rows that fit in cache, rows that do not, and a reduction along a non-last axis.
DEFAULT_SHAPES: tuple[tuple[tuple[int, ...], int], ...] = (
    ((1, 1000), -1),
    ((1, 32000), -1),
    ((4096, 128), -1),
    ((512, 4096), -1),
    ((1, 1 << 24), -1),
    ((64, 65536), -1),
    ((4096, 1024), 0),
)
# float64 on one in-cache and one out-of-cache shape (float64 halves the elements per vector; the
# point is to show it, not to repeat every shape).
DEFAULT_SHAPES_F64: tuple[tuple[tuple[int, ...], int], ...] = (
    ((512, 4096), -1),
    ((1, 1 << 24), -1),
)
# float16 and bfloat16 (reductions): the in-cache rows and the 16M-element row, whose element rate is
# compared with float32's (half the bytes per element) and with torch's 16-bit softmax.
DEFAULT_SHAPES_HALF: tuple[tuple[tuple[int, ...], int], ...] = (
    ((1, 32000), -1),
    ((4096, 128), -1),
    ((512, 4096), -1),
    ((1, 1 << 24), -1),
)
# (B, H, Lq, Lkv, D), causal: prefill with and without the causal mask, then decode (one query against
# a long KV cache; not causal, since a single query sees the whole cache).
DEFAULT_ATTENTION: tuple[tuple[tuple[int, int, int, int, int], bool], ...] = (
    ((1, 8, 1024, 1024, 64), False),
    ((1, 8, 1024, 1024, 64), True),
    ((1, 8, 4096, 4096, 64), False),
    ((1, 8, 4096, 4096, 64), True),
    ((1, 16, 2048, 2048, 128), False),
    ((1, 16, 2048, 2048, 128), True),
    ((1, 32, 1, 4096, 128), False),
    ((1, 32, 1, 32768, 128), False),
)

# The quick run (python -m normexp) keeps to a minute: its long row is 4M elements (32 MiB in + out,
# out of a 32 MiB LLC; the full suite has the 16M row).
QUICK_SHAPES: tuple[tuple[tuple[int, ...], int], ...] = (
    ((1, 1000), -1),
    ((1, 32000), -1),
    ((512, 4096), -1),
    ((1, 1 << 22), -1),
    ((4096, 1024), 0),
)


def default_cases(ops: Sequence[str], dtypes: Sequence[str] | None = None) -> list[Case]:
    """The issue's default list for the given operations; ``dtypes`` (if given) replaces the default
    dtype mix (float32 everywhere, float64 on two shapes, float16 and bfloat16 on four) by every listed
    dtype on every shape (attention: float32 and float64 only)."""
    cases: list[Case] = []
    for op in ops:
        if op == "attention":
            for dt in dtypes or ("float32",):
                if dt not in HALF_DTYPES:
                    cases += [Case("attention", s, dt, causal=c) for s, c in DEFAULT_ATTENTION]
            continue
        if dtypes:
            cases += [Case(op, s, dt, axis=a) for dt in dtypes for s, a in DEFAULT_SHAPES]
        else:
            cases += [Case(op, s, "float32", axis=a) for s, a in DEFAULT_SHAPES]
            cases += [Case(op, s, "float64", axis=a) for s, a in DEFAULT_SHAPES_F64]
            cases += [Case(op, s, dt, axis=a) for dt in HALF_DTYPES for s, a in DEFAULT_SHAPES_HALF]
    return cases


def with_accuracies(cases: Sequence[Case], accuracies: Sequence[str]) -> list[Case]:
    """Each reduction case once per accuracy (in the given order, so a fast row follows its high row);
    attention cases and 16-bit cases (whose results accuracy= does not change) once, in the first."""
    for a in accuracies:
        if a not in ACCURACIES:
            raise ValueError(f"unknown accuracy {a!r}; choose from {', '.join(ACCURACIES)}")
    out: list[Case] = []
    for c in cases:
        if c.is_attention:
            out.append(c)
        elif c.dtype in HALF_DTYPES:
            out.append(dataclasses.replace(c, accuracy=next(iter(accuracies), c.accuracy)))
        else:
            out += [dataclasses.replace(c, accuracy=a) for a in dict.fromkeys(accuracies)]
    return out


# ---- parsing shapes from the command line -----------------------------------------------------------

_DIM = r"(\d+(?:[kKmM])?)"


def _dim(tok: str) -> int:
    """'4096' -> 4096; k and M are powers of two: '32k' -> 32768, '16M' -> 16777216."""
    t = tok.strip()
    mult = 1
    if t[-1:] in "kK":
        mult, t = 1 << 10, t[:-1]
    elif t[-1:] in "mM":
        mult, t = 1 << 20, t[:-1]
    if not t.isdigit():
        raise ValueError(f"bad dimension {tok!r}: use digits with an optional k (2^10) or M (2^20)")
    return int(t) * mult


def parse_shape(spec: str) -> tuple[tuple[int, ...], int]:
    """A reduction shape: 'ROWSxCOLS[x...][:AXIS]', e.g. '512x4096', '1x16M', '4096x1024:0'."""
    s = spec.strip()
    if not s:
        raise ValueError("empty shape")
    axis = -1
    if ":" in s:
        s, a = s.split(":", 1)
        try:
            axis = int(a)
        except ValueError:
            raise ValueError(f"bad axis in {spec!r}: expected an integer after ':'") from None
    if not re.fullmatch(rf"{_DIM}(x{_DIM})*", s):
        raise ValueError(f"bad shape {spec!r}: expected e.g. 512x4096, 1x16M or 4096x1024:0")
    shape = tuple(_dim(t) for t in s.split("x"))
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for shape {spec!r}")
    return shape, axis


def parse_attention_shape(spec: str) -> tuple[tuple[int, int, int, int, int], bool]:
    """An attention shape: 'BxHxLxD' (Lq = Lkv = L) or 'BxHxLqxLkvxD', with ':causal' to mask, e.g.
    '1x8x1024x64:causal' or '1x32x1x32kx128'."""
    s = spec.strip()
    causal = False
    if ":" in s:
        s, flag = s.split(":", 1)
        if flag.strip() != "causal":
            raise ValueError(f"bad attention flag in {spec!r}: only ':causal' is allowed")
        causal = True
    if not re.fullmatch(rf"{_DIM}(x{_DIM}){{3,4}}", s):
        raise ValueError(f"bad attention shape {spec!r}: expected BxHxLxD or BxHxLqxLkvxD, e.g. 1x8x1024x64")
    dims = [_dim(t) for t in s.split("x")]
    if len(dims) == 4:
        b, h, l, d = dims
        dims = [b, h, l, l, d]
    return (dims[0], dims[1], dims[2], dims[3], dims[4]), causal
