"""What is measured: one :class:`Case` per (operation, shape, axis, dtype[, causal]), its inputs, its
float64 reference result, and the traffic / work model that turns a time into GB/s or GFLOP/s.

Reductions (softmax, log_softmax, logsumexp) are described by the input shape and the reduced axis, and
normexp's accuracy contract (``accuracy="high"``, the default, or ``"fast"``: the row labelled ``fast``,
in which the peers compute the same function as in the high row).
Attention is described by (batch, heads, q_len, kv_len, head_dim) in the layout of
``torch.nn.functional.scaled_dot_product_attention``: q (B, H, Lq, D), k and v (B, Hkv, Lkv, D), with
``heads_kv`` K/V heads (grouped-query attention when it is below H) and K/V in ``kv_dtype`` (a float32 q
against a float16 / bfloat16 KV cache) when it is given.
Paged attention (``paged_attention``, one decode step of a batched server) is described by
(sequences, heads, shortest, longest, head_dim): the sequences' lengths are evenly spaced from the shortest
to the longest, one new query each, their keys in pages of ``page`` rows of a shared pool in a random order
(normexp.paged_attention's layout: pages (num_pages, page, Hkv, D), a block table, the lengths).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

import numpy as np

REDUCTIONS = ("softmax", "log_softmax", "logsumexp")
ATTENTION_OPS = ("attention", "paged_attention")
OPERATIONS = REDUCTIONS + ATTENTION_OPS
DTYPES = ("float32", "float64", "float16", "bfloat16")
# The 16-bit types (bfloat16 is ml_dtypes'): reductions read and write them in place; attention reads q, K
# and V in them (or a float32 q against a 16-bit K/V cache) and accumulates in float32.
HALF_DTYPES = ("float16", "bfloat16")
# The dtypes paged_attention is measured in (its pool holds a server's KV cache: float32 or 16-bit).
PAGED_DTYPES = ("float32",) + HALF_DTYPES


def np_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a case's dtype name (bfloat16: ml_dtypes.bfloat16, imported on first use)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
ACCURACIES = ("high", "fast")


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark case. ``shape`` is the input shape for reductions, (B, H, Lq, Lkv, D) for attention
    and (sequences, H, shortest, longest, D) for paged attention. ``dtype`` is the input's (attention: q's
    and the output's); ``kv_dtype`` a different K/V dtype (float16 / bfloat16 under a float32 q; "" = the
    same); ``heads_kv`` the K/V heads of attention (0 = H; below H: grouped-query attention); ``page`` the
    keys per page of paged attention."""

    op: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    axis: int = -1
    causal: bool = False
    accuracy: str = "high"
    kv_dtype: str = ""
    heads_kv: int = 0
    page: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown operation {self.op!r}; choose from {', '.join(OPERATIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        if self.accuracy not in ACCURACIES:
            raise ValueError(f"unknown accuracy {self.accuracy!r}; choose from {', '.join(ACCURACIES)}")
        if self.is_attention and self.accuracy != "high":
            raise ValueError("accuracy applies to the reductions only")
        if self.kv_dtype:
            if not self.is_attention:
                raise ValueError("kv_dtype applies to attention only")
            if self.kv_dtype not in HALF_DTYPES or self.dtype != "float32":
                raise ValueError(f"kv_dtype takes float16 or bfloat16 under a float32 q, got q {self.dtype}, "
                                 f"K/V {self.kv_dtype!r}")
        if self.heads_kv and not self.is_attention:
            raise ValueError("heads_kv applies to attention only")
        if (self.page != 0) != self.is_paged:
            raise ValueError("page (>= 1) is required for paged_attention and applies to it only")
        if any(int(n) < 1 for n in self.shape) or self.heads_kv < 0 or self.page < 0:
            raise ValueError(f"every dimension must be >= 1, got {self.shape}")
        if self.is_attention:
            if len(self.shape) != 5:
                what = "(sequences, H, shortest, longest, D)" if self.is_paged else "(B, H, Lq, Lkv, D)"
                raise ValueError(f"{self.op} shape is {what}, got {self.shape}")
            if self.heads_kv and self.shape[1] % self.heads_kv:
                raise ValueError(f"heads_kv must divide the query heads, got H={self.shape[1]}, heads_kv={self.heads_kv}")
        if self.is_paged:
            if self.dtype not in PAGED_DTYPES:
                raise ValueError(f"paged_attention is measured in {', '.join(PAGED_DTYPES)}, got {self.dtype}")
            if self.shape[2] > self.shape[3]:
                raise ValueError("paged_attention needs shortest <= longest")
            if self.causal:
                raise ValueError("paged_attention is measured as a decode step (one query per sequence)")
        elif self.op == "attention":
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
        """Attention of either kind (contiguous or paged): normwise errors, GFLOP/s."""
        return self.op in ATTENTION_OPS

    @property
    def is_paged(self) -> bool:
        return self.op == "paged_attention"

    @property
    def kv_heads(self) -> int:
        """The K/V heads (attention): heads_kv, or H when it is 0."""
        return self.heads_kv or self.shape[1]

    @property
    def kv_dtype_name(self) -> str:
        return self.kv_dtype or self.dtype

    @property
    def dtype_label(self) -> str:
        """'float32', or 'float32 q, bfloat16 kv' for a float32 query against a 16-bit cache."""
        return f"{self.dtype} q, {self.kv_dtype} kv" if self.kv_dtype else self.dtype

    @property
    def is_16bit(self) -> bool:
        """A 16-bit input (q or K/V): its row is compared with the float32 row of the same shape."""
        return self.dtype in HALF_DTYPES or bool(self.kv_dtype)

    @property
    def norm_axis(self) -> int:
        return self.axis % len(self.shape)

    @property
    def last_axis(self) -> bool:
        return self.is_attention or self.norm_axis == len(self.shape) - 1

    @property
    def shape_label(self) -> str:
        if self.is_paged:
            n, h, lo, hi, d = self.shape
            return f"S{n} H{self._heads_label} Lkv{_size_label(lo)}-{_size_label(hi)} D{d} page{self.page}"
        if self.is_attention:
            b, h, lq, lkv, d = self.shape
            if self.heads_kv and self.heads_kv != h:
                return f"B{b} H{self._heads_label} Lq{lq} Lkv{lkv} D{d}" + (" causal" if self.causal else "")
            if lq == lkv:
                s = f"B{b} H{h} L{lq} D{d}"
            else:
                s = f"B{b} H{h} Lq{lq} Lkv{lkv} D{d}"
            return s + (" causal" if self.causal else "")
        s = "x".join(str(n) for n in self.shape)
        s = s if self.last_axis else f"{s} axis {self.norm_axis}"
        return s + (" fast" if self.accuracy == "fast" else "")

    @property
    def _heads_label(self) -> str:
        h = self.shape[1]
        return f"{h}/{self.kv_heads}" if self.kv_heads != h else str(h)

    @property
    def label(self) -> str:
        return f"{self.op} {self.dtype_label} {self.shape_label}"

    @property
    def itemsize(self) -> int:
        return np_dtype(self.dtype).itemsize

    @property
    def seq_lens(self) -> np.ndarray:
        """Paged attention: the sequences' key counts, evenly spaced from the shortest to the longest (int32)."""
        n, _, lo, hi, _ = self.shape
        return np.linspace(lo, hi, n).astype(np.int32)

    # ---- sizes and the traffic / work model -----------------------------------------------------------
    @property
    def elements(self) -> int:
        """Input elements (reductions) or score-matrix entries computed (attention)."""
        if self.is_attention:
            return self.attention_pairs
        return math.prod(self.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.is_paged:
            n, h, _, _, d = self.shape
            return (n, h, d)
        if self.is_attention:
            b, h, lq, _, d = self.shape
            return (b, h, lq, d)
        if self.op == "logsumexp":
            return self.shape[: self.norm_axis] + self.shape[self.norm_axis + 1 :]
        return self.shape

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """The float inputs: [x], [q, k, v], or paged [q, k_pages, v_pages] (the pool holds exactly the
        pages the sequences use)."""
        if self.is_paged:
            n, h, _, _, d = self.shape
            pages = int(((self.seq_lens + self.page - 1) // self.page).sum())
            return [(n, h, d), (pages, self.page, self.kv_heads, d), (pages, self.page, self.kv_heads, d)]
        if self.is_attention:
            b, h, lq, lkv, d = self.shape
            hk = self.kv_heads
            return [(b, h, lq, d), (b, hk, lkv, d), (b, hk, lkv, d)]
        return [self.shape]

    @property
    def kv_bytes(self) -> int:
        """Attention: the bytes of K and V a call reads (paged: the keys of the sequences, not the pages'
        unused tail rows); 0 for reductions."""
        if self.is_paged:
            n, _, _, _, d = self.shape
            keys = int(self.seq_lens.sum())
        elif self.is_attention:
            b, _, _, keys, d = self.shape
            keys *= b
        else:
            return 0
        return 2 * keys * self.kv_heads * d * np_dtype(self.kv_dtype_name).itemsize

    @property
    def bytes(self) -> int:
        """Compulsory memory traffic of one call: every input read once, the output written once (attention:
        q and the output in q's dtype, K and V in theirs; decode's traffic is almost all K/V)."""
        if self.is_attention:
            q_and_out = math.prod(self.input_shapes[0]) + math.prod(self.out_shape)
            return q_and_out * self.itemsize + self.kv_bytes
        n_in = sum(math.prod(s) for s in self.input_shapes)
        return (n_in + math.prod(self.out_shape)) * self.itemsize

    @property
    def attention_pairs(self) -> int:
        """(query, key) pairs that take part: Lq * Lkv, or the lower triangle for causal attention
        (query i sees keys 0 .. i + Lkv - Lq, the bottom-right alignment, which is the top-left one when
        Lq == Lkv). Paged attention: one query per sequence against all of its keys."""
        if self.is_paged:
            return self.shape[1] * int(self.seq_lens.sum())
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
        (Lq = 1, and paged attention's decode step) reads K and V once at 0.5 flop/byte per query head
        sharing them and is bandwidth-bound, prefill is FMA-bound."""
        if self.op in ("softmax", "log_softmax"):
            return "copy"
        return "read" if self.op == "logsumexp" or self.is_decode else "fma"

    @property
    def is_decode(self) -> bool:
        """Attention of one query row against its keys (paged attention's step included): a read of the KV
        cache, which a model's other work (its weights) evicts between two steps."""
        return self.is_paged or (self.is_attention and self.shape[2] == 1)

    def cache_class(self, llc_bytes: int) -> str:
        """'in' when the working set fits in half the last-level cache, else 'out'. A decode of at least a
        sixteenth of the LLC is 'out' too: its KV cache comes from memory at every step of a model, and
        timed hot in a large L3 it would read above the memory bandwidth it is measured against (smaller
        ones stay hot: rotating them through 2x the LLC would take too many copies)."""
        if self.is_decode and self.bytes >= llc_bytes // 16:
            return "out"
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
        the max subtraction matter and keeps every probability a normal float32), q/k/v ~ N(0, 1) (K/V in
        kv_dtype). Paged attention adds the block table (the pool's pages in a random order, -1 past each
        sequence's last page) and the lengths: (q, k_pages, v_pages, block_table, seq_lens)."""
        rng = np.random.default_rng(seed)
        dt = np_dtype(self.dtype)
        if self.is_attention:
            kdt = np_dtype(self.kv_dtype_name)
            qs, ks, vs = self.input_shapes
            arrays = (_normal(rng, qs, dt), _normal(rng, ks, kdt), _normal(rng, vs, kdt))
            if not self.is_paged:
                return arrays
            lens = self.seq_lens
            need = (lens + self.page - 1) // self.page
            perm = rng.permutation(ks[0]).astype(np.int32)
            table = np.full((len(lens), int(need.max())), -1, np.int32)
            starts = np.concatenate([[0], np.cumsum(need)])
            for s in range(len(lens)):
                table[s, : need[s]] = perm[starts[s] : starts[s + 1]]
            return arrays + (table, lens)
        x = _normal(rng, self.shape, dt)
        x *= dt.type(4.0)
        return (x,)

    def reference(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The float64 result the peers are checked against."""
        if self.is_paged:
            return paged_attention_reference(*inputs)
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
            "kv_dtype": self.kv_dtype_name if self.is_attention else None,
            "heads_kv": self.kv_heads if self.is_attention else None,
            "page": self.page or None,
            "dtype_label": self.dtype_label,
        }


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    if dt == np.float32:
        return rng.standard_normal(shape, dtype=np.float32)
    if dt.itemsize == 2:  # float16, bfloat16: float32 draws rounded once
        return rng.standard_normal(shape, dtype=np.float32).astype(dt)
    return rng.standard_normal(shape)


def _size_label(n: int) -> str:
    """16384 -> '16k' (k = 2^10, as the command line writes it); other counts as they are."""
    return f"{n >> 10}k" if n >= 1024 and n % 1024 == 0 else str(n)


def attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """softmax(q k^T / sqrt(D) [+ causal mask]) v in float64, one (batch, head) at a time so that the
    score matrix of one head is the largest temporary. k and v may have fewer heads than q (grouped-query
    attention: query head j reads K/V head j // (H // Hkv))."""
    b, h, lq, d = q.shape
    lkv = k.shape[2]
    group = h // k.shape[1]
    out = np.empty((b, h, lq, v.shape[3]), np.float64)
    scale = 1.0 / math.sqrt(d)
    keep = None
    if causal:
        keep = np.arange(lkv)[None, :] <= np.arange(lq)[:, None] + (lkv - lq)
    for i in range(b):
        for j in range(h):
            s = (q[i, j].astype(np.float64) @ k[i, j // group].astype(np.float64).T) * scale
            if keep is not None:
                s = np.where(keep, s, -np.inf)
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            out[i, j] = s @ v[i, j // group].astype(np.float64)
    return out


def paged_attention_reference(q: np.ndarray, k_pages: np.ndarray, v_pages: np.ndarray, table: np.ndarray,
                              lens: np.ndarray) -> np.ndarray:
    """One decode step over a paged cache in float64: each sequence's pages gathered into a contiguous
    (1, Hkv, L, D) cache and attended by its one query (q (S, H, D) -> out (S, H, D))."""
    n, h, _ = q.shape
    page, hk = k_pages.shape[1], k_pages.shape[2]
    out = np.empty((n, h, v_pages.shape[3]), np.float64)
    for s in range(n):
        rows = table[s, : (int(lens[s]) + page - 1) // page]
        k = k_pages[rows].reshape(-1, hk, k_pages.shape[3])[: lens[s]].transpose(1, 0, 2)[None]
        v = v_pages[rows].reshape(-1, hk, v_pages.shape[3])[: lens[s]].transpose(1, 0, 2)[None]
        out[s] = attention_reference(q[s][None, :, None], k, v, causal=False)[0, :, 0]
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
# The same model in 16 bits (q, K, V and the output float16 or bfloat16, accumulated in float32): the
# largest prefill with and without the mask, and the long decode; each row is compared with its float32 row.
DEFAULT_ATTENTION_HALF: tuple[tuple[tuple[int, int, int, int, int], bool], ...] = (
    ((1, 16, 2048, 2048, 128), False),
    ((1, 16, 2048, 2048, 128), True),
    ((1, 32, 1, 32768, 128), False),
)
# Grouped-query decode as served models run it (Llama-3-8B: 32 query heads on 8 K/V heads of 128): one
# query per head against 16k and 32k keys, in float32, in each 16-bit type, and a float32 q against a
# bfloat16 cache. (B, H, Lq, Lkv, D), heads_kv.
DEFAULT_ATTENTION_GQA: tuple[tuple[tuple[int, int, int, int, int], int], ...] = (
    ((1, 32, 1, 16384, 128), 8),
    ((1, 32, 1, 32768, 128), 8),
)
# (q dtype, kv_dtype) of the grouped-query rows.
GQA_DTYPES: tuple[tuple[str, str], ...] = (("float32", ""), ("float16", ""), ("bfloat16", ""), ("float32", "bfloat16"))
# A decode step of a batched server: 16 sequences of 2k to 16k keys (147k in all), one query each, on a
# paged cache of 16-key pages in a random order; 32 query heads on 8 K/V heads of 128. (sequences, H,
# shortest, longest, D), heads_kv, page, in float32 and bfloat16 (the server's usual cache).
DEFAULT_PAGED: tuple[tuple[tuple[int, int, int, int, int], int, int], ...] = (
    ((16, 32, 2048, 16384, 128), 8, 16),
)
PAGED_DEFAULT_DTYPES = ("float32", "bfloat16")

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
    dtype mix (float32 everywhere, float64 on two shapes, float16 and bfloat16 on four; attention: float32,
    16-bit on three shapes, the grouped-query decode in float32, both 16-bit types and float32 q over a
    bfloat16 cache; paged: float32 and bfloat16) by every listed dtype on every shape (paged attention:
    float32, float16 and bfloat16 only). A dtype may be 'float32/bfloat16' (or float16): a float32 q over
    a 16-bit K/V cache, for the attention operations only."""
    cases: list[Case] = []
    for op in ops:
        if op == "attention":
            if dtypes:
                for q_dt, kv_dt in map(split_dtype, dtypes):
                    cases += [Case("attention", s, q_dt, causal=c, kv_dtype=kv_dt) for s, c in DEFAULT_ATTENTION]
                    cases += [Case("attention", s, q_dt, kv_dtype=kv_dt, heads_kv=hk) for s, hk in DEFAULT_ATTENTION_GQA]
                continue
            cases += [Case("attention", s, "float32", causal=c) for s, c in DEFAULT_ATTENTION]
            cases += [Case("attention", s, dt, causal=c) for s, c in DEFAULT_ATTENTION_HALF for dt in HALF_DTYPES]
            cases += [Case("attention", s, q_dt, kv_dtype=kv_dt, heads_kv=hk)
                      for s, hk in DEFAULT_ATTENTION_GQA for q_dt, kv_dt in GQA_DTYPES]
            continue
        if op == "paged_attention":
            for q_dt, kv_dt in map(split_dtype, dtypes or PAGED_DEFAULT_DTYPES):
                if q_dt in PAGED_DTYPES:
                    cases += [Case("paged_attention", s, q_dt, kv_dtype=kv_dt, heads_kv=hk, page=pg)
                              for s, hk, pg in DEFAULT_PAGED]
            continue
        if dtypes:  # the mixed attention dtypes do not apply to reductions
            cases += [Case(op, s, dt, axis=a) for dt in dtypes if "/" not in dt for s, a in DEFAULT_SHAPES]
        else:
            cases += [Case(op, s, "float32", axis=a) for s, a in DEFAULT_SHAPES]
            cases += [Case(op, s, "float64", axis=a) for s, a in DEFAULT_SHAPES_F64]
            cases += [Case(op, s, dt, axis=a) for dt in HALF_DTYPES for s, a in DEFAULT_SHAPES_HALF]
    return cases


def split_dtype(spec: str) -> tuple[str, str]:
    """'float32' -> ('float32', ''); 'float32/bfloat16' -> ('float32', 'bfloat16'): a float32 q over a
    16-bit K/V cache (attention only)."""
    q, _, kv = spec.partition("/")
    q, kv = q.strip(), kv.strip()
    if q not in DTYPES:
        raise ValueError(f"unknown dtype {q!r}; choose from {', '.join(DTYPES)}")
    if "/" in spec and (q != "float32" or kv not in HALF_DTYPES):
        raise ValueError(f"bad dtype {spec!r}: a mixed attention dtype is float32/float16 or float32/bfloat16")
    return q, kv


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


def _heads(tok: str, spec: str) -> tuple[int, int]:
    """'32' -> (32, 0); '32/8' -> (32, 8): query heads over K/V heads (grouped-query attention)."""
    h, _, hk = tok.partition("/")
    if not h.isdigit() or (hk and not hk.isdigit()):
        raise ValueError(f"bad heads {tok!r} in {spec!r}: use H or H/HKV, e.g. 32 or 32/8")
    # An explicit HKV of 0 is not "ungrouped" (0 is only the internal marker for a missing /HKV): refuse it.
    if hk and int(hk) < 1:
        raise ValueError(f"bad heads {tok!r} in {spec!r}: HKV (K/V heads) must be >= 1")
    return int(h), int(hk or 0)


def parse_attention_shape(spec: str) -> tuple[tuple[int, int, int, int, int], bool, int]:
    """An attention shape: 'BxHxLxD' (Lq = Lkv = L) or 'BxHxLqxLkvxD', H or H/HKV (grouped-query: HKV
    K/V heads), with ':causal' to mask, e.g. '1x8x1024x64:causal', '1x32x1x32kx128' or '1x32/8x1x16kx128'.
    Returns (shape, causal, heads_kv) with heads_kv 0 when the heads are not grouped."""
    s = spec.strip()
    causal = False
    if ":" in s:
        s, flag = s.split(":", 1)
        if flag.strip() != "causal":
            raise ValueError(f"bad attention flag in {spec!r}: only ':causal' is allowed")
        causal = True
    if not re.fullmatch(rf"{_DIM}x\d+(/\d+)?(x{_DIM}){{2,3}}", s):
        raise ValueError(f"bad attention shape {spec!r}: expected BxHxLxD or BxHxLqxLkvxD (H or H/HKV), "
                         "e.g. 1x8x1024x64 or 1x32/8x1x16kx128")
    toks = s.split("x")
    h, hk = _heads(toks[1], spec)
    dims = [_dim(toks[0]), h] + [_dim(t) for t in toks[2:]]
    if len(dims) == 4:
        b, h, l, d = dims
        dims = [b, h, l, l, d]
    return (dims[0], dims[1], dims[2], dims[3], dims[4]), causal, hk


def parse_paged_shape(spec: str) -> tuple[tuple[int, int, int, int, int], int, int]:
    """A paged decode step: 'SEQSxHxMIN-MAXxD[:PAGE]' (H or H/HKV; lengths evenly spaced from MIN to MAX
    keys; PAGE keys per page, default 16), e.g. '16x32/8x2k-16kx128:16'. Returns (shape, heads_kv, page)."""
    s = spec.strip()
    page = 16
    if ":" in s:
        s, p = s.split(":", 1)
        if not p.strip().isdigit() or int(p) < 1:
            raise ValueError(f"bad page size in {spec!r}: expected a positive integer after ':'")
        page = int(p)
    if not re.fullmatch(rf"{_DIM}x\d+(/\d+)?x{_DIM}-{_DIM}x{_DIM}", s):
        raise ValueError(f"bad paged shape {spec!r}: expected SEQSxHxMIN-MAXxD[:PAGE], e.g. 16x32/8x2k-16kx128:16")
    n, heads, lens, d = s.split("x")
    h, hk = _heads(heads, spec)
    lo, hi = (_dim(t) for t in lens.split("-"))
    if lo > hi:
        raise ValueError(f"bad paged shape {spec!r}: the shortest length exceeds the longest")
    return (_dim(n), h, lo, hi, _dim(d)), hk, page
