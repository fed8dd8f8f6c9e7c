#!/usr/bin/env bash
# Cross-build normexp for Windows x86-64 with MinGW-w64 GCC (Debian's g++-mingw-w64-x86-64-posix) and
# run the C++ test suite under Wine (Debian's wine64) through CMAKE_CROSSCOMPILING_EMULATOR
# (cmake/toolchain-mingw-w64.cmake). On Windows the same dispatcher picks avx512, avx2 or scalar from cpuid
# and xgetbv, so every kernel test runs on each set this CPU has, inside a PE executable under the Windows
# ABI (Win64 calling convention, 32-bit long, no fork, winpthreads, libgomp on Win32 threads).
# This checks the MinGW-w64 port of the sources and the CMake; MSVC itself is not run (see docs/platforms.md).
# Fails on any compiler warning and on any failing test.
#
# Usage: ci/cross_mingw.sh [build-dir]     (default build/mingw)
set -euo pipefail
cd "$(dirname "$0")/.."
bdir="${1:-build/mingw}"
wine=$(command -v wine64 || command -v /usr/lib/wine/wine64 || command -v wine || true)
for tool in x86_64-w64-mingw32-g++-posix "$wine"; do
  [ -n "$tool" ] && command -v "$tool" >/dev/null || {
    echo "cross_mingw: ${tool:-wine64} not found (apt-get install g++-mingw-w64-x86-64-posix wine64)"; exit 1; }
done
start=$SECONDS
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNORMEXP_BUILD_TESTS=ON \
      -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-w64.cmake
mkdir -p "$bdir"
cmake --build "$bdir" 2>&1 | tee "$bdir/build.log"
if grep -q "warning:" "$bdir/build.log"; then echo "cross_mingw: compiler warnings in the MinGW-w64 build"; exit 1; fi
echo "cross_mingw: built in $((SECONDS - start)) s"
# The emulator must be wired in, or ctest would try to run PE binaries on the host.
grep -q "wine" "$bdir/tests/cpp/CTestTestfile.cmake" || { echo "cross_mingw: the tests do not run under Wine (CMAKE_CROSSCOMPILING_EMULATOR)"; exit 1; }
# A private, quiet Wine prefix (created on first use, in the build directory); the MinGW runtime DLLs
# on WINEPATH for a shared build (the test executables themselves are static).
export WINEPREFIX="$PWD/$bdir/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
gccdir=$(dirname "$(x86_64-w64-mingw32-g++-posix -print-libgcc-file-name)")
export WINEPATH="$gccdir;/usr/x86_64-w64-mingw32/lib"
start=$SECONDS
"$wine" wineboot --init >/dev/null 2>&1 || true
# Every test but the two bit-for-bit golden ones must pass as on Linux.
golden='^(kernel_digest|attention_golden)$'
ctest --test-dir "$bdir" --output-on-failure -V -j "$(nproc)" -E "$golden" | grep -vE "^[0-9]+: (Test command|Working Directory|Test timeout)"
# The golden files are recorded on Linux. Every float32 hash must match them bit for bit; float64 ones may
# differ, and only they: MinGW-w64's libm (log, exp, tanh) rounds differently from glibc's in the last
# bit, and the float64 test inputs (std::normal_distribution), attention's lse (std::log) and softcap
# (std::tanh) go through it. (The vector kernels themselves call no libm function.)
log="$bdir/golden.log"
ctest --test-dir "$bdir" -V -R "$golden" > "$log" 2>&1 || true
grep -q "attention_golden: [0-9]* (isa, case) results compared" "$log" || { cat "$log"; echo "cross_mingw: attention_golden did not run"; exit 1; }
grep -q "kernel_digest: [0-9]* digests checked" "$log" || { cat "$log"; echo "cross_mingw: kernel_digest did not run"; exit 1; }
mismatches=$(grep -E "DIFFERS|MISSING|failed:" "$log" || true)
not_f64=$(printf '%s\n' "$mismatches" | grep -vE "DIFFERS [a-z0-9]+ f64 |failed: [a-z0-9]+ [^ ]*_f64: hash|^$" || true)
if [ -n "$not_f64" ]; then cat "$log"; echo "cross_mingw: golden mismatches other than float64 libm ones:"; echo "$not_f64"; exit 1; fi
echo "cross_mingw: golden files: every float32 hash identical to Linux; $(printf '%s\n' "$mismatches" | grep -c . || true) float64 hash(es) differ (libm)"
echo "cross_mingw: ctest under Wine in $((SECONDS - start)) s"
