"""Static portability checks of the build and the C++ sources (Windows: MSVC and MinGW-w64).

No Windows compiler runs here, so these keep the port from rotting between Windows CI runs:

* every compiler-specific flag of the build is spelled in ``cmake/normexpCompiler.cmake`` only (it has
  the MSVC and clang-cl spellings beside the GCC/Clang ones); other CMake files use its variables;
* every GCC/Clang-only spelling in the library, binding and C++ test sources (``__builtin_*``, ``__attribute__``,
  ``#pragma GCC unroll``, ``<cpuid.h>``, POSIX calls ...) is in ``cpp/src/portability.hpp`` or in one of
  the few places listed below, each behind a compiler or platform check;
* the Windows test command of ``[tool.cibuildwheel.windows]`` names test files and tests that exist (a
  renamed file would otherwise be silently run, or a deselection silently lost).

The MinGW-w64 cross build under Wine (``ci/cross_mingw.sh``) compiles and runs the C++ tests themselves.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    tomllib = pytest.importorskip("tomli")

# GCC/Clang command-line spellings that MSVC does not accept.
GNU_FLAG = re.compile(r"(?<![\w/:(])-(W(all|extra|error)\b|pedantic|m(avx|fma|f16c|arch|tune|sse)\w*|march=|f(fp-contract|visibility|openmp)|O[0-3s]\b)")

# The CMake files of the library, its Python module and its C++ tests. (tests/install is a Linux
# consumer project driven by pkg-config; tests/fuzz needs clang's libFuzzer: neither builds on Windows.)
CMAKE_FILES = ["CMakeLists.txt", "tests/cpp/CMakeLists.txt", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cmake").glob("*.cmake"))]
FLAG_HOME = "cmake/normexpCompiler.cmake"
# Toolchain files name their own compilers' flags.
TOOLCHAINS = {"cmake/toolchain-aarch64.cmake", "cmake/toolchain-mingw-w64.cmake"}

GNU_SOURCE = re.compile(
    r"__builtin_\w+|__attribute__|#\s*pragma\s+GCC\s+unroll|__restrict__|__int128|<cpuid\.h>|__get_cpuid\w*"
    r"|\bposix_memalign\b|\bsysconf\b|\bsched_getaffinity\b|\bdlopen\b|\baligned_alloc\b|\bpthread_\w+|<unistd\.h>"
    r"|\bM_PI\b|(?<!::)\bssize_t\b|vector_size"
)
SOURCE_HOME = "cpp/src/portability.hpp"
# The other places, each inside a compiler or platform check (#if defined(__GNUC__) ... / !defined(_WIN32)).
GUARDED = {
    # MSVC: __cpuid / __cpuidex / _xgetbv; <unistd.h> for the AMX permission (syscall), Linux only
    "cpp/src/dispatch.cpp": {"<cpuid.h>", "__get_cpuid_count", "<unistd.h>"},
    "cpp/src/threading.cpp": {"pthread_atfork"},  # Windows has no fork()
    # _aligned_malloc; a struct; the Linux-only guarded mapping (sysconf's page size, #if defined(__linux__))
    "cpp/src/machine_probe.cpp": {"aligned_alloc", "__attribute__", "vector_size", "<unistd.h>", "sysconf"},
    "cpp/include/normexp/export.h.in": {"__attribute__"},  # __declspec(dllexport/dllimport) on Windows
    # C++ tests: GCC's independent cpuid check (#if defined(__x86_64__), which MSVC does not define) and
    # the fork check (not on Windows).
    "tests/cpp/test_dispatch.cpp": {"__builtin_cpu_init", "__builtin_cpu_supports", "__builtin_cpu_is"},
    # (and setenv of NORMEXP_AVX512_BF16 before the dispatcher reads it: #if ... && !defined(_WIN32))
    "tests/cpp/test_attention_bf16.cpp": {"__builtin_cpu_init", "__builtin_cpu_supports"},
    "tests/cpp/test_threading.cpp": {"<unistd.h>"},
}


def strip_cmake_comment(line: str) -> str:
    """A CMake line without its comment (a '#' outside a quoted string)."""
    out, quoted = [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def strip_cpp_comments(text: str) -> str:
    """C++ source without // and /* */ comments (string literals are left alone: none holds these words)."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def gnu_flags(text: str) -> list[str]:
    """The GCC/Clang-only flags used (not mentioned in comments) in CMake text."""
    return [m.group(0) for line in text.splitlines() for m in GNU_FLAG.finditer(strip_cmake_comment(line))]


def gnu_spellings(text: str) -> set[str]:
    """The GCC/Clang-only spellings used (not mentioned in comments) in C/C++ text."""
    return {m.group(0) for m in GNU_SOURCE.finditer(strip_cpp_comments(text))}


def test_the_scanners_see_what_they_look_for():
    # Negative controls: the checks below would pass vacuously if these found nothing.
    assert gnu_flags("target_compile_options(x PRIVATE -Wall -Wextra -ffp-contract=off)") == ["-Wall", "-Wextra", "-ffp-contract"]
    assert gnu_flags('set_source_files_properties(a PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma")') == ["-mavx2", "-mfma"]
    assert gnu_flags("# -Wall in a comment\nset(X /W4)  # not -Wextra") == []
    assert gnu_spellings("int f(unsigned b) { return __builtin_ctz(b); }\n#pragma GCC unroll 4\n") == {"__builtin_ctz", "#pragma GCC unroll"}
    assert gnu_spellings("// __builtin_expect in a comment\n/* __attribute__ */ int x;") == set()
    assert gnu_flags((ROOT / FLAG_HOME).read_text()), "normexpCompiler.cmake should hold the GCC spellings"
    assert gnu_spellings((ROOT / SOURCE_HOME).read_text()), "portability.hpp should hold the GCC spellings"


@pytest.mark.parametrize("path", [p for p in CMAKE_FILES if p != FLAG_HOME and p not in TOOLCHAINS])
def test_cmake_names_compiler_flags_only_in_normexp_compiler(path):
    found = gnu_flags((ROOT / path).read_text())
    assert not found, f"{path} uses {found}: spell compiler flags in {FLAG_HOME} (with their MSVC equivalent) and use its variables"


def test_normexp_compiler_has_msvc_spellings():
    text = (ROOT / FLAG_HOME).read_text()
    for flag in ("/arch:AVX2", "/arch:AVX512", "/W4", "/EHsc", "/utf-8", "/permissive-", "/Zc:__cplusplus", "/fp:precise"):
        assert flag in text, flag


def source_files() -> list[Path]:
    files = [*ROOT.glob("cpp/src/**/*.[ch]pp"), *ROOT.glob("cpp/include/**/*.h*"), *ROOT.glob("python/bindings/*.[ch]pp"),
             *ROOT.glob("tests/cpp/*.[ch]pp"), *ROOT.glob("tests/cpp/*.[ch]")]
    assert len(files) > 40, files
    return sorted(files)


@pytest.mark.parametrize("path", [str(p.relative_to(ROOT)) for p in source_files()])
def test_sources_keep_gcc_spellings_in_portability_header(path):
    if path == SOURCE_HOME:
        return
    found = gnu_spellings((ROOT / path).read_text())
    unexpected = sorted(found - GUARDED.get(path, set()))
    assert not unexpected, f"{path} uses {unexpected}: give them a portable spelling in {SOURCE_HOME}"


def test_guarded_exceptions_are_still_needed():
    # An entry of GUARDED that its file no longer uses is stale: remove it.
    for path, allowed in GUARDED.items():
        found = gnu_spellings((ROOT / path).read_text())
        assert allowed <= found, f"{path} no longer uses {sorted(allowed - found)}: drop them from GUARDED"


def test_windows_test_command_names_existing_tests():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    windows = conf["windows"]
    assert windows["archs"] == ["AMD64"]
    assert "win" not in conf["skip"].replace("-win32", "").replace("-win_arm64", ""), conf["skip"]
    args = shlex.split(windows["test-command"])
    named = [a.split("=", 1)[1] for a in args if a.startswith(("--ignore=", "--deselect="))]
    assert named, windows["test-command"]
    for item in named:
        file, _, test = item.replace("{project}/", "").partition("::")
        assert (ROOT / file).is_file(), item
        if test:
            assert re.search(rf"^def {re.escape(test)}\(", (ROOT / file).read_text(), re.M), item
