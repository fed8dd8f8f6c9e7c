#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang under ASan+UBSan and fuzzes each for a bounded time from its
# committed seed corpus (new inputs go to scratch directories, the repository is not modified):
#   fuzz_reduce     normexp::reduce (softmax, log_softmax, logsumexp)     tests/fuzz/corpus/
#   fuzz_attention  normexp::attention against a long double reference   tests/fuzz/corpus_attention/
#   fuzz_c_api      every entry point of normexp.h                        tests/fuzz/corpus_c_api/
# FUZZ_SECONDS (default 300) is the total, split 2:2:1 (reduce, attention, C API). Every target runs even
# when an earlier one fails; the script fails if any found a crash, sanitizer report or invariant
# violation (the reproducer is kept under build/fuzz/artifacts/). Prints libFuzzer's execution counts.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-300}"
if ! command -v clang++ >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
fi
# Fuzz inputs stay below the size at which the drivers open OpenMP teams (2^15 elements), so the build
# is single-threaded (clang would need libomp otherwise). Line tables only for debug information: file:line in
# every report at about half the compile time of -g.
CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORMEXP_BUILD_FUZZERS=ON \
  -DNORMEXP_BUILD_TESTS=OFF -DNORMEXP_OPENMP=OFF -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer" >/dev/null
cmake --build build/fuzz --target fuzz_reduce fuzz_attention fuzz_c_api
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build/fuzz/artifacts
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
failed=()
reports=()
run() {  # target corpus seconds [libFuzzer options]
  local target=$1 corpus=$2 seconds=$3
  shift 3
  mkdir -p "$work/$target"
  touch "$work/$target.start"
  echo "== $target: ${seconds} s from $corpus"
  # -jobs=1 so a failure stops the run; -rss_limit_mb: inputs are tiny, a big RSS means a leak.
  ./build/fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    -artifact_prefix=build/fuzz/artifacts/"$target"- "$@" "$work/$target" "$corpus" >"$work/$target.log" 2>&1 || true
  grep -v -E "^#[0-9]+.*(NEW|REDUCE|pulse)|NEW_FUNC" "$work/$target.log" | tail -n 40 || true
  if ! grep -q "Done [0-9]* runs" "$work/$target.log"; then
    echo "== $target: FAILED (see the output above; reproducer under build/fuzz/artifacts/)"
    failed+=("$target")
    # The failure's own lines (the case, the invariant or sanitizer report, the reproducer), repeated at
    # the end of the output, which is what CI's summary shows.
    reports+=("$(grep -E -m 12 "^case:|invariant violated|^isa |ERROR|SUMMARY|^==[0-9]+==|Test unit written|artifact_prefix|deadly signal|timeout|out-of-memory" \
      "$work/$target.log" || true)")
    # And the reproducer itself (inputs are under 1 KiB), so a failure seen only in CI's log can be replayed.
    local a
    for a in build/fuzz/artifacts/"$target"-*; do
      if [[ -f $a && $a -nt $work/$target.start ]]; then reports[-1]+=$'\n'"reproducer $a, base64: $(head -c 4096 "$a" | base64 -w0)"; fi
    done
  fi
}
share() { echo $(( $1 > 0 ? $1 : 1 )); }  # libFuzzer reads -max_total_time=0 as "no limit"
run fuzz_reduce tests/fuzz/corpus "$(share $((FUZZ_SECONDS * 2 / 5)))"
# Attention inputs draw their values from a generator seeded by the input: short inputs suffice.
run fuzz_attention tests/fuzz/corpus_attention "$(share $((FUZZ_SECONDS * 2 / 5)))" -max_len=1024
run fuzz_c_api tests/fuzz/corpus_c_api "$(share $((FUZZ_SECONDS / 5)))"
if ((${#failed[@]})); then
  for i in "${!failed[@]}"; do
    echo "== ${failed[$i]}: report"
    printf '%s\n' "${reports[$i]}"
  done
  echo "fuzzing found problems in: ${failed[*]}"
  exit 1
fi
