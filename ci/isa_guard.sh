#!/usr/bin/env bash
# ISA-leak guard for x86-64: runs the Python smoke subset with the installed normexp module on emulated
# CPUs (qemu-user, Debian's qemu-user package), so the run-time dispatch is proven on CPUs this machine
# is not:
#   qemu-x86_64 -cpu Nehalem  (SSE4.2, no AVX at all): must import, select "scalar", give right answers.
#                             An AVX instruction anywhere in baseline code (flags leaking from avx2.cpp,
#                             or the inline-function ODR trap) raises SIGILL and fails the run.
#   qemu-x86_64 -cpu Haswell  (AVX2 + FMA): must select "avx2" and give the same answers.
# Before trusting a pass, a canary proves the emulator really faults on AVX under -cpu Nehalem.
#
# Usage: ci/isa_guard.sh [python]     (default: $PYTHON, else .venv/bin/python if present, else python3)
#        GUARD_TESTS="file ..." overrides the smoke subset (paths relative to the repository root).
# The static half of the guard (ISA objects export only their getter, no AVX in baseline objects) is
# the ctest `isa_objects` (tests/isa/check_isa_objects.cmake).
set -euo pipefail
cd "$(dirname "$0")/.."

py="${1:-${PYTHON:-}}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
# qemu needs the interpreter's ELF file, not a wrapper script (pyenv shims are bash): a venv's
# bin/python symlink is fine (Python finds pyvenv.cfg next to argv[0]), otherwise use sys.executable.
if [ "$(head -c 4 "$(command -v "$py")" | tail -c 3)" = ELF ]; then
  pybin="$(command -v "$py")"
else
  pybin="$("$py" -c 'import sys; print(sys.executable)')"
fi
qemu="$(command -v qemu-x86_64 || true)"
if [ -z "$qemu" ]; then echo "isa_guard: qemu-x86_64 not found (apt-get install qemu-user)"; exit 1; fi
if [ "$(uname -m)" != x86_64 ]; then echo "isa_guard: this guard is for x86-64 hosts"; exit 1; fi

tests="${GUARD_TESTS:-tests/isa/test_isa_smoke.py tests/python/test_isa_agreement.py}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ---- canary: the emulated Nehalem must reject AVX, the emulated Haswell must run AVX2 + FMA ----------
cat > "$work/canary.c" <<'EOF'
int main(void) {
    __asm__ volatile("vpxor %%ymm0, %%ymm0, %%ymm0\n\tvfmadd231ps %%ymm0, %%ymm0, %%ymm0" ::: "xmm0");
    return 0;
}
EOF
${CC:-cc} -O0 -o "$work/canary" "$work/canary.c"
if { "$qemu" -cpu Nehalem "$work/canary"; } 2>/dev/null; then  # braces: bash reports SIGILL quietly
  echo "isa_guard: qemu -cpu Nehalem executed an AVX2 instruction: it cannot detect ISA leaks here"; exit 1
fi
"$qemu" -cpu Haswell "$work/canary" 2>/dev/null || { echo "isa_guard: qemu -cpu Haswell cannot run AVX2+FMA"; exit 1; }
echo "isa_guard: canary ok (Nehalem faults on AVX2, Haswell runs it)"

# ---- the smoke subset on each CPU model ---------------------------------------------------------------
status=0
for pair in Nehalem:scalar Haswell:avx2; do
  cpu="${pair%%:*}" expect="${pair##*:}"
  echo "== isa_guard: qemu-x86_64 -cpu $cpu, expecting '$expect': $tests"
  start=$SECONDS
  set +e
  # -p no:cacheprovider: no .pytest_cache writes; OMP_NUM_THREADS=2 keeps emulated threads cheap.
  # qemu's "TCG doesn't support requested feature" lines (Haswell's pcid, tsc-deadline, ...) are noise.
  NORMEXP_EXPECT_ISA="$expect" OMP_NUM_THREADS=2 "$qemu" -cpu "$cpu" "$pybin" -m pytest -q -p no:cacheprovider \
      -o addopts="" $tests 2> >(grep -v "TCG doesn't support requested feature" >&2)
  rc=$?
  set -e
  echo "== isa_guard: -cpu $cpu exit $rc after $((SECONDS - start)) s"
  if [ "$rc" -ne 0 ]; then
    status=1
    # 132 = 128 + SIGILL: an instruction this CPU lacks reached the code that ran.
    if [ "$rc" -eq 132 ]; then echo "isa_guard: SIGILL on -cpu $cpu: an ISA leak into baseline code"; fi
  fi
done
exit "$status"
