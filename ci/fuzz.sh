#!/usr/bin/env bash
# Builds the libFuzzer harness with clang under ASan+UBSan and fuzzes normexp::reduce for a bounded time
# (FUZZ_SECONDS, default 120) starting from the committed seed corpus tests/fuzz/corpus/ (new inputs go
# to a scratch directory, the repository is not modified). Fails on any crash, sanitizer report or
# invariant violation. Prints libFuzzer's execution count.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
if ! command -v clang++ >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
fi
# Fuzz inputs stay below the size at which the drivers open OpenMP teams (2^15 elements), so the build
# is single-threaded (clang would need libomp otherwise).
CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORMEXP_BUILD_FUZZERS=ON \
  -DNORMEXP_BUILD_TESTS=OFF -DNORMEXP_OPENMP=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer" >/dev/null
cmake --build build/fuzz --target fuzz_reduce
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# -jobs=1 so a failure stops the run; -rss_limit_mb: inputs are tiny, a big RSS means a leak.
./build/fuzz/tests/fuzz/fuzz_reduce -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=20 \
  -print_final_stats=1 "$work" tests/fuzz/corpus 2>&1 | tee "$work/log" | grep -v -E "^#[0-9]+.*(NEW|REDUCE|pulse)" || true
grep -q "Done [0-9]* runs" "$work/log" || { echo "fuzzing did not finish cleanly"; exit 1; }
grep -E "Done [0-9]+ runs|stat::number_of_executed_units" "$work/log"
