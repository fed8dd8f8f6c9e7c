#!/usr/bin/env bash
# ASan + UBSan: the C++ tests and the Python test suite against one instrumented build of the library, its
# tests and the Python modules (NORMEXP_BUILD_PYTHON: the modules in the same CMake tree, so the library is
# compiled once for both suites). Zero findings: every sanitizer report aborts the process
# (halt_on_error / -fno-sanitize-recover), which fails the step.
#
# Usage: ci/sanitizers.sh   (needs the Python test dependencies installed: pip install ".[test]")
set -euo pipefail
cd "$(dirname "$0")/.."
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# -g1: line tables only (file:line in every report), about half the compile time of -g on these
# template-heavy sources.
OPT="-O2 -g1 -DNDEBUG -DNORMEXP_POISON_SCRATCH"  # attention scratch starts as NaN (cpp/src/attention.cpp)
LINK="-fsanitize=address,undefined"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

echo "== ASan+UBSan: build (library, C++ tests, Python modules)"
python3 -m pip install -q "pybind11>=2.12"  # no-op where installed
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNORMEXP_BUILD_TESTS=ON \
  -DNORMEXP_BUILD_PYTHON=ON -DPython_EXECUTABLE="$(command -v python3)" -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$OPT" \
  -DCMAKE_EXE_LINKER_FLAGS="$LINK" -DCMAKE_MODULE_LINKER_FLAGS="$LINK" >/dev/null
cmake --build build/asan

echo "== ASan+UBSan: C++ tests"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" ctest --test-dir build/asan --output-on-failure

echo "== ASan+UBSan: the Python test suite"
# The package as pip would install it: the Python sources and the two instrumented modules.
stage=build/asan-stage
rm -rf "$stage" && mkdir -p "$stage"
cp -r python/normexp "$stage/"
cp build/asan/_core.*.so build/asan/_probe.*.so "$stage/normexp/"
# python3 on the stage with the sanitizer runtimes preloaded (why: below); ASan's options come from the caller.
asan_python() {
  PYTHONPATH="$PWD/$stage" LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" \
    python3 "$@"
}
# The suite must import the instrumented modules from the stage, not an installed normexp.
ASAN_OPTIONS=detect_leaks=0 asan_python -c "
import normexp
assert normexp._core.__file__.startswith('$PWD/$stage/'), normexp._core.__file__
print('   normexp from', normexp._core.__file__)"
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
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$PWD/build/asan-py-report" \
UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$PWD/build/asan-py-report" \
  asan_python -m pytest -q -p no:cacheprovider tests/python --ignore=tests/python/test_alloc_failure.py \
  -m "not bench_harness and not large" \
  -k "not test_no_leak_over_100k_calls and not test_unsatisfiable_gather_buffer_raises_memory_error" || status=$?
if [ "$status" -ne 0 ]; then
  for f in build/asan-py-report.*; do [ -f "$f" ] && { echo "== $f"; cat "$f"; }; done
  exit "$status"
fi
