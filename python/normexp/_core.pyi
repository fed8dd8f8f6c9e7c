"""Type stubs for the native module normexp._core (pybind11)."""

import numpy as np
import numpy.typing as npt

__version__: str

class NormexpError(ValueError): ...
class NormexpIndexError(IndexError, ValueError): ...

class Reduction:
    softmax: Reduction
    log_softmax: Reduction
    logsumexp: Reduction
    def __init__(self, value: int) -> None: ...
    @property
    def value(self) -> int: ...

class Accuracy:
    high: Accuracy
    fast: Accuracy
    def __init__(self, value: int) -> None: ...
    @property
    def value(self) -> int: ...

def fast_softmax(x: object, axis: object, temperature: object, out: object, isa: str, accuracy: object) -> object: ...
def fast_log_softmax(x: object, axis: object, temperature: object, out: object, isa: str, accuracy: object) -> object: ...
def fast_logsumexp(x: object, axis: object, out: object, keepdims: bool, isa: str, accuracy: object) -> object: ...
# reduce, logsumexp_parts, normalize_with: x, out and m are float32, float64, float16 or ml_dtypes.bfloat16
# (all of one dtype); 16-bit arrays are read and written in place by the kernels.
def reduce(op: Reduction, x: npt.NDArray[np.floating], out: npt.NDArray[np.floating], axis: int, temperature: float, isa: str = "", accuracy: Accuracy = ...) -> None: ...
def exp(x: npt.NDArray[np.floating], out: npt.NDArray[np.floating], isa: str = "") -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def isa() -> str: ...
def available_isas() -> list[str]: ...
def isa_extensions() -> list[str]: ...
# q, k, v, out: float32, float64, float16 or ml_dtypes.bfloat16 (not an np.floating subclass), in the
# combinations normexp.attention accepts; lse float32 when any operand is 16-bit.
def attention(
    q: npt.NDArray[np.generic],
    k: npt.NDArray[np.generic],
    v: npt.NDArray[np.generic],
    out: npt.NDArray[np.generic],
    lse: npt.NDArray[np.floating] | None,
    mask: npt.NDArray[np.generic] | None,
    is_causal: bool,
    bottom_right: bool,
    scale: float,
    window: int,
    softcap: float,
    alibi: npt.NDArray[np.float64] | None,
    sinks: npt.NDArray[np.float64] | None = None,
    isa: str = "",
) -> None: ...
def paged_attention(
    q: npt.NDArray[np.floating],
    k_pages: npt.NDArray[np.floating],
    v_pages: npt.NDArray[np.floating],
    block_table: npt.NDArray[np.int32],
    seq_lens: npt.NDArray[np.int32],
    query_start: npt.NDArray[np.int32],
    out: npt.NDArray[np.floating],
    lse: npt.NDArray[np.floating] | None,
    is_causal: bool,
    scale: float,
    window: int,
    softcap: float,
    alibi: npt.NDArray[np.float64] | None,
    sinks: npt.NDArray[np.float64] | None,
    isa: str = "",
) -> None: ...
def merge_attention(
    outs: list[npt.NDArray[np.generic]],
    lses: list[npt.NDArray[np.floating]],
    out: npt.NDArray[np.generic],
    lse: npt.NDArray[np.floating],
) -> None: ...
def sample(
    x: npt.NDArray[np.floating],
    uniforms: npt.NDArray[np.float64] | None,
    out: npt.NDArray[np.int64],
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    isa: str = "",
    *,
    repetition_penalty: float = 1.0,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
    temperatures: npt.NDArray[np.float64] | None = None,
    top_ks: npt.NDArray[np.int64] | None = None,
    top_ps: npt.NDArray[np.float64] | None = None,
    min_ps: npt.NDArray[np.float64] | None = None,
    repetition_penalties: npt.NDArray[np.float64] | None = None,
    presence_penalties: npt.NDArray[np.float64] | None = None,
    frequency_penalties: npt.NDArray[np.float64] | None = None,
    prev_tokens: npt.NDArray[np.int64] | None = None,
    logit_bias: npt.NDArray[np.floating] | None = None,
    logprobs: npt.NDArray[np.float64] | None = None,
) -> None: ...
def cross_entropy(
    x: npt.NDArray[np.floating],
    labels: npt.NDArray[np.int64],
    loss: npt.NDArray[np.float64],
    axis: int,
    temperature: float,
    label_smoothing: float,
    use_ignore_index: bool,
    ignore_index: int,
    dloss: npt.NDArray[np.float64] | None = None,
    d2loss: npt.NDArray[np.float64] | None = None,
    isa: str = "",
) -> None: ...
def linear_logsumexp(
    hidden: npt.NDArray[np.floating],
    weight: npt.NDArray[np.floating],
    bias: npt.NDArray[np.floating] | None,
    out: npt.NDArray[np.floating],
    isa: str = "",
) -> None: ...
def linear_cross_entropy(
    hidden: npt.NDArray[np.floating],
    weight: npt.NDArray[np.floating],
    labels: npt.NDArray[np.int64],
    bias: npt.NDArray[np.floating] | None,
    loss: npt.NDArray[np.float64],
    label_smoothing: float,
    use_ignore_index: bool,
    ignore_index: int,
    isa: str = "",
) -> None: ...

def logsumexp_parts(x: npt.NDArray[np.floating], m: npt.NDArray[np.floating], sums: npt.NDArray[np.float64], axis: int, temperature: float = 1.0, isa: str = "", accuracy: Accuracy = ...) -> None: ...
def normalize_with(op: Reduction, x: npt.NDArray[np.floating], out: npt.NDArray[np.floating], m: npt.NDArray[np.floating], sums: npt.NDArray[np.float64], axis: int, temperature: float = 1.0, isa: str = "", accuracy: Accuracy = ...) -> None: ...
def merge_parts(m: npt.NDArray[np.float64], sums: npt.NDArray[np.float64], temperature: float = 1.0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def logsumexp_from_parts(
    m: npt.NDArray[np.float64], sums: npt.NDArray[np.float64], float_result: bool = False
) -> npt.NDArray[np.float64]: ...
