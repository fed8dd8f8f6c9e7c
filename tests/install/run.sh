#!/usr/bin/env bash
# Install normexp into fresh prefixes, static and shared, and build and run outside projects against
# each one (any failure exits non-zero):
#   * tests/install: a find_package consumer with a C and a C++ program (checks the package is found in
#     that prefix, the library type, header/library/package versions, every C++ entry point,
#     exceptions caught across the library boundary, the C API);
#   * examples/cpp and examples/c, built the way their READMEs say;
#   * the C consumer compiled with plain `cc` and pkg-config;
#   * shared only: a C-only CMake project, and the exported symbols (only normexp_* and normexp::);
#     static only: a C-only CMake project must be refused with a message saying what to do;
#   * once: normexp vendored with add_subdirectory.
# The build trees are deleted before the consumers run, so nothing can point back into them.
# Usage: tests/install/run.sh [workdir]   (default: a new temporary directory)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/normexp-install.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
for tool in cmake cc c++ nm c++filt pkg-config; do
    command -v "$tool" >/dev/null || { echo "tests/install/run.sh needs $tool"; exit 1; }
done
gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
jobs=${NORMEXP_JOBS:-2}
step() { echo "== install test: $*"; }

configure() { cmake "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >"$work/last-configure.log" 2>&1 || { cat "$work/last-configure.log"; return 1; }; }
build() { cmake --build "$1" -j "$jobs" >"$work/last-build.log" 2>&1 || { cat "$work/last-build.log"; return 1; }; }

check_symbols() {  # only the API may be exported from the shared library
    local lib=$1
    local syms
    syms=$(nm -D --defined-only "$lib" | awk '{print $3}')
    local bad
    bad=$(grep -Ev '^(normexp_|_ZN7normexp|_ZNK7normexp|_ZT[ISV]N7normexp)' <<<"$syms" | grep -Ev '^$' || true)
    if [ -n "$bad" ]; then echo "symbols exported that are not the API:"; echo "$bad" | c++filt; return 1; fi
    if grep -q '_ZN7normexp6detail' <<<"$syms"; then echo "normexp::detail symbols are exported"; return 1; fi
    local f
    for f in softmax_f32 softmax_f64 log_softmax_f32 log_softmax_f64 logsumexp_f32 logsumexp_f64 isa \
             set_num_threads get_num_threads last_error status_string version attention_f32 attention \
             paged_attention attention_params_init paged_attention_params_init; do
        grep -qx "normexp_$f" <<<"$syms" || { echo "normexp_$f is not exported"; return 1; }
    done
    echo "exported: $(grep -c '^normexp_' <<<"$syms") C symbols, $(grep -vc '^normexp_' <<<"$syms") C++ symbols:"
    grep -v '^normexp_' <<<"$syms" | c++filt | sed 's/^/    /'
}

for kind in static shared; do
    shared=$([ "$kind" = shared ] && echo ON || echo OFF)
    prefix="$work/$kind/prefix"
    rm -rf "$work/$kind"
    step "$kind: build and install into $prefix"
    configure -S "$root" -B "$work/$kind/build" -DBUILD_SHARED_LIBS=$shared -DNORMEXP_BUILD_TESTS=OFF
    build "$work/$kind/build"
    cmake --install "$work/$kind/build" --prefix "$prefix" >/dev/null
    rm -rf "$work/$kind/build"
    (cd "$prefix" && find . -type f -o -type l | sort | sed 's/^/    /')
    libdir=$(dirname "$(find "$prefix" -name 'libnormexp.*' -print -quit)")

    if [ "$kind" = shared ]; then
        step "shared: exported symbols"
        check_symbols "$libdir/libnormexp.so"
    else
        [ -f "$libdir/libnormexp.a" ] || { echo "no libnormexp.a in $libdir"; exit 1; }
        if [ -n "$(find "$prefix" -name 'libnormexp.so*' -print -quit)" ]; then echo "static install has a .so"; exit 1; fi
    fi

    step "$kind: find_package consumer (C and C++)"
    configure -S "$root/tests/install" -B "$work/$kind/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
        -DEXPECT_PREFIX="$prefix" -DEXPECT_SHARED=$shared
    build "$work/$kind/consumer"
    "$work/$kind/consumer/consumer_c"
    "$work/$kind/consumer/consumer_cpp"

    step "$kind: examples"
    for ex in cpp c; do
        configure -S "$root/examples/$ex" -B "$work/$kind/example-$ex" -DCMAKE_PREFIX_PATH="$prefix"
        build "$work/$kind/example-$ex"
    done
    "$work/$kind/example-cpp/next_token"
    "$work/$kind/example-c/softmax_c"
    "$work/$kind/example-c/paged_decode_c"

    step "$kind: C-only CMake project"
    if [ "$kind" = shared ]; then
        configure -S "$root/tests/install" -B "$work/$kind/consumer-c-only" -DCMAKE_PREFIX_PATH="$prefix" \
            -DEXPECT_PREFIX="$prefix" -DEXPECT_SHARED=ON -DCONSUMER_C_ONLY=ON
        build "$work/$kind/consumer-c-only"
        "$work/$kind/consumer-c-only/consumer_c"
    else
        if cmake "${gen[@]}" -S "$root/tests/install" -B "$work/$kind/consumer-c-only" -DCMAKE_PREFIX_PATH="$prefix" \
            -DCONSUMER_C_ONLY=ON >"$work/last-configure.log" 2>&1; then
            echo "a C-only project must be told to enable CXX for a static normexp"; exit 1
        fi
        grep -q "installed as a static C++ library" "$work/last-configure.log" || { cat "$work/last-configure.log"; exit 1; }
        echo "refused with the expected message"
    fi

    step "$kind: pkg-config and plain cc"
    export PKG_CONFIG_PATH="$libdir/pkgconfig"
    echo "    pkg-config --cflags --libs normexp: $(pkg-config --cflags --libs normexp)"
    [ "$(pkg-config --modversion normexp)" = "$(grep -o '"[0-9.]*"' "$prefix/include/normexp/version.h" | tr -d '"')" ]
    flags=$(pkg-config --cflags --libs normexp)
    # shellcheck disable=SC2086
    cc -std=c99 -Wall -Wextra -Werror -pedantic-errors -DEXPECT_VERSION="\"$(pkg-config --modversion normexp)\"" \
        -DEXPECT_SHARED=$([ "$kind" = shared ] && echo 1 || echo 0) \
        "$root/tests/install/consumer.c" -o "$work/$kind/consumer_pc" $flags -lm
    LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/$kind/consumer_pc"
    unset PKG_CONFIG_PATH
done

step "add_subdirectory"
rm -rf "$work/subdir"
configure -S "$root/tests/install/subdir" -B "$work/subdir" -DNORMEXP_SOURCE_DIR="$root"
build "$work/subdir"
"$work/subdir/consumer_c"
"$work/subdir/consumer_cpp"

step "all passed ($work)"
