"""``python -m normexp``: version, ISA, threads, a short self-check, and a quick throughput table."""

from __future__ import annotations

import sys

from ._quick import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
