#!/usr/bin/env bash
# The published benchmark run (docs/benchmarks.md). Run it on a quiet machine (nothing else using the cores), from an
# installed normexp with the peers: pip install ".[bench]". It measures everything (several minutes; longer
# with attention), writes bench/results/{results.json,results.md,<op>.png}, the plots docs/benchmarks.md shows into
# bench/figures/, and fills docs/benchmarks.md's block between the normexp-bench markers with the tables.
# Extra arguments are passed on (e.g. --ops softmax,logsumexp).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m normexp bench --out bench/results --plots bench/figures --readme docs/benchmarks.md "$@"
