#!/usr/bin/env bash
# ASan + UBSan: the C++ tests and the Python test suite against an instrumented library and module.
# Zero findings: every sanitizer report aborts the process (halt_on_error / -fno-sanitize-recover),
# which fails the step.
#
# Usage: ci/sanitizers.sh [all|cxx|python]   (default all; .ci/run runs the two halves in its two lanes)
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:-all}"
case "$part" in
  all | cxx | python) ;;
  *) echo "usage: ci/sanitizers.sh [all|cxx|python]"; exit 2 ;;
esac
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# -g1: line tables only (file:line in every report), about half the compile time of -g on these
# template-heavy sources. The C++ tests build at -O1 (ASan's recommended level, and their run is short);
# the module keeps -O2, since the Python suite runs the kernels over large arrays.
CXX_OPT="-O1 -g1 -DNDEBUG"
PY_OPT="-O2 -g1 -DNDEBUG"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

if [ "$part" != python ]; then
  echo "== ASan+UBSan: C++ tests"
  cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORMEXP_BUILD_TESTS=ON \
    -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$CXX_OPT" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
  cmake --build build/asan
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" ctest --test-dir build/asan --output-on-failure
fi
[ "$part" != cxx ] || exit 0

echo "== ASan+UBSan: Python module and the Python test suite"
python3 -m venv --system-site-packages build/asan-venv
build/asan-venv/bin/pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"  # no-op where installed
build/asan-venv/bin/pip install -q --no-build-isolation \
  -C build-dir=build/asan-py -C cmake.build-type=RelWithDebInfo \
  -C "cmake.define.CMAKE_CXX_FLAGS=$SAN" -C "cmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO=$PY_OPT" -C "cmake.define.CMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined" .
# The ASan runtime must come first in the process: preload it for this run only. CPython itself is not
# instrumented and keeps memory until exit, so leak detection is off; allocator_may_return_null lets an
# impossible allocation surface as std::bad_alloc / MemoryError (what test_memory.py checks) instead of
# an ASan report.
# Deselected here only (both run in the normal suite): the RSS leak checks (ASan's quarantine holds
# freed memory, so RSS grows by design), and the unsatisfiable-allocation checks (ASan's allocator
# reports a multi-TiB request as fatal "out of memory" before operator new could throw bad_alloc).
# libstdc++ is preloaded too: python3 does not link it, and ASan's __cxa_throw interceptor must find the
# real one when the runtime starts (otherwise the first C++ exception aborts with "CHECK failed").
# test_alloc_failure.py is left out: it preloads its own operator new, which ASan's replaces (and ASan
# must come first in the preload list), so it runs in the normal suite only.
# The benchmark harness's tests (marker bench_harness: argument parsing, records, reports, tables and
# plots of python/normexp/bench, run with peers such as torch and JAX) are deselected here only: they are
# Python logic, and the library calls they make (tiny softmax / attention / paged_attention) are covered
# by the rest of the suite; the machine probe's C++ (test_bench_probe.py) still runs here. The tests marked
# large (sweeps over many arrays of millions of elements) are deselected here only: each names the smaller
# tests that take its path under the sanitizers.
# pytest captures the test's stderr and loses it when a report aborts the process: the reports go to files
# (log_path) and are printed here when the run fails.
rm -f build/asan-py-report.*
status=0
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$PWD/build/asan-py-report" \
UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$PWD/build/asan-py-report" \
  build/asan-venv/bin/python -m pytest -q -p no:cacheprovider tests/python --ignore=tests/python/test_alloc_failure.py \
  -m "not bench_harness and not large" \
  -k "not test_no_leak_over_100k_calls and not test_unsatisfiable_gather_buffer_raises_memory_error" || status=$?
if [ "$status" -ne 0 ]; then
  for f in build/asan-py-report.*; do [ -f "$f" ] && { echo "== $f"; cat "$f"; }; done
  exit "$status"
fi
