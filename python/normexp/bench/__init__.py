"""normexp's benchmark suite: ``python -m normexp bench --help``.

Modules: :mod:`.cases` (what is measured, inputs, float64 references, traffic model), :mod:`.peers`
(NumPy, SciPy, PyTorch, ONNX Runtime, JAX, and normexp itself), :mod:`.timing` (the timing loop),
:mod:`.machine` (CPU facts and the bandwidth / FMA-peak probe), :mod:`.runner` (checks and records),
:mod:`.report` (terminal, Markdown and JSON), :mod:`.plots` (PNG), :mod:`.cli` (the command line),
:mod:`.generation` (``bench generate``: greedy generation with Hugging Face transformers).
"""

from .cases import Case
from .runner import Results, run
from .timing import Timing

__all__ = ["Case", "Results", "Timing", "run", "main"]


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)
