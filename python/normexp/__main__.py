"""``python -m normexp``: version, ISA, threads, a self-check and a short benchmark table (under a minute).
``python -m normexp bench [options]``: the full benchmark suite (``--help`` lists the options)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from .bench.cli import main as bench_main

        return bench_main(argv[1:])
    from ._quick import main as quick_main

    return quick_main(argv)


if __name__ == "__main__":
    sys.exit(main())
