"""Allocation failures: every C++ allocation a call makes can fail, and the call then raises MemoryError
(or, where the failure is absorbed, returns the right result); it never kills the interpreter and never
leaves a partly written ``out=``.

tests/python/failalloc/failalloc.cpp is compiled here into a preload library that replaces the global
operator new; armed through ctypes, it makes the n-th C++ allocation from then on fail. The cases run in
a subprocess with it preloaded (one server process that runs them on request, so each does not pay an
interpreter start-up; a case that kills it fails its own test, and the next case gets a fresh server) and
each is swept over n = 1, 2, ... until a call completes without reaching the n-th allocation, at one
thread and at three (OMP_NUM_THREADS=3: teams open on the "large" inputs; not in a forked child, where
normexp runs serially by design).
CPython and NumPy allocate with malloc, which is untouched, so only the library and pybind11 see the
failures. Before the drivers allocated their per-thread buffers ahead of the parallel regions, a
failure inside attention's OpenMP region called std::terminate (the process aborted), and a failure
between two rows or column blocks of a reduction left earlier ones written.

Cases: every row of reliability_cases.CASES (every public function, both scales) plus the rows below,
which pass an ``out=`` array (checked to be left untouched on failure) or reach allocation sites the
table does not: strided q/v/mask copies in attention, the column paths with row super-chunks, gathered
and scattered rows, several long rows, large top_k, and the native logsumexp_parts / normalize_with that
normexp.dask uses.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import numpy as np
import pytest

import normexp
from normexp import _core
from reliability_cases import CASES, Case, identical, run_case

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "failalloc", "failalloc.cpp")
SENTINEL = -12345.5  # fills out= before each armed call; not a value any case produces
MAX_SWEEP = 20_000  # allocations one call may make (a bound on the loop, far above what any case needs)
TIMEOUT_S = 600


# ---- rows that pass out= (args[-1] is the out array) or reach further allocation sites -----------------
def _rows(g: np.random.Generator, s: str, shape_small: tuple, shape_large: tuple, dtype: Any = np.float32) -> np.ndarray:
    return (g.standard_normal(shape_small if s == "small" else shape_large) * 6).astype(dtype)


def _with_out(x: np.ndarray, shape: tuple | None = None) -> tuple:
    return x, np.empty(x.shape if shape is None else shape, x.dtype)


def _strided(g: np.random.Generator, s: str, dtype: Any = np.float32) -> tuple:
    # Every other column of a wider array, written to every other column of another: gathered and
    # scattered rows (no axis has unit stride in both).
    x = _rows(g, s, (5, 26), (40, 4002), dtype)[:, ::2]
    out = np.empty((x.shape[0], 2 * x.shape[1]), dtype)[:, ::2]
    return x, out


def _long_rows(g: np.random.Generator, s: str) -> tuple:
    # Rows longer than the 2^16-element super-chunk: each row's statistics need a per-thread buffer.
    return _with_out(_rows(g, s, (3, 40), (3, 70_001)))


def _cols_tall(g: np.random.Generator, s: str, dtype: Any) -> tuple:
    # axis 0, one block of columns with row super-chunks that threads split (float32 softmax: the
    # stored path; float64: the online path).
    return _with_out(_rows(g, s, (9, 5), (10_000, 64), dtype))


def _cols_blocks(g: np.random.Generator, s: str, dtype: Any) -> tuple:
    # axis 0, two column blocks (threads over blocks), each with several row super-chunks.
    return _with_out(_rows(g, s, (9, 1030), (600, 1500), dtype))


def _att_strided(g: np.random.Generator, s: str, dtype: Any, mask_kind: str) -> tuple:
    # q and v with non-unit head_dim stride (packed per task / per block), a mask whose key stride is not
    # 1 (copied per block), an out= array.
    h, lq, lk, d = (2, 5, 7, 8) if s == "small" else (4, 100, 300, 16)
    q = np.swapaxes(g.standard_normal((h, d, lq)).astype(dtype), -1, -2)
    k = g.standard_normal((h, lk, d)).astype(dtype)
    v = np.swapaxes(g.standard_normal((h, d, lk)).astype(dtype), -1, -2)
    keep = (g.random((lk, lq)) < 0.8).T
    mask = keep if mask_kind == "bool" else np.asfortranarray(np.where(keep, g.standard_normal((lq, lk)), -np.inf).astype(dtype))
    assert q.strides[-1] != q.itemsize and v.strides[-1] != v.itemsize and mask.strides[-1] != mask.itemsize
    return q, k, v, mask, np.empty((h, lq, d), dtype)


def _att_decode_out(g: np.random.Generator, s: str) -> tuple:
    # Grouped-query decode with the keys split into pieces (large), strided keep mask, out=.
    lk = 20 if s == "small" else 4096
    q = g.standard_normal((8, 1, 32)).astype(np.float32)
    k = g.standard_normal((2, lk, 32)).astype(np.float32)
    v = g.standard_normal((2, lk, 32)).astype(np.float32)
    return q, k, v, np.empty((8, 1, 32), np.float32)


def _parts_args(g: np.random.Generator, s: str, axis: int) -> tuple:
    x = _rows(g, s, (6, 9), (300, 700), np.float64)
    keep = list(x.shape)
    keep[axis] = 1
    return x, np.empty(keep), np.empty(keep + [2])


def _normalize_args(g: np.random.Generator, s: str, axis: int) -> tuple:
    x, m, sums = _parts_args(g, s, axis)
    _core.logsumexp_parts(x, m, sums, axis, 1.0, "")
    return x, m, sums, np.empty_like(x)


def _parts_call(x: np.ndarray, m: np.ndarray, sums: np.ndarray, axis: int) -> tuple:
    _core.logsumexp_parts(x, m, sums, axis, 1.0, "")
    return m, sums


OUT_CASES: list[Case] = [
    Case("softmax/f32/rows/out", lambda g, s: _with_out(_rows(g, s, (4, 33), (48, 3001))), lambda x, o: normexp.softmax(x, out=o)),
    Case("log_softmax/f32/long-rows/out", _long_rows, lambda x, o: normexp.log_softmax(x, out=o)),
    Case("softmax/f32/long-rows/out", _long_rows, lambda x, o: normexp.softmax(x, temperature=2.0, out=o)),
    Case("logsumexp/f32/long-rows/out", lambda g, s: (_long_rows(g, s)[0], np.empty(3, np.float32)), lambda x, o: normexp.logsumexp(x, axis=1, out=o)),
    Case("softmax/f64/gather-scatter/out", lambda g, s: _strided(g, s, np.float64), lambda x, o: normexp.softmax(x, out=o)),
    Case("log_softmax/f32/gather-scatter/out", _strided, lambda x, o: normexp.log_softmax(x, out=o)),
    Case("softmax/f32/cols-tall/out", lambda g, s: _cols_tall(g, s, np.float32), lambda x, o: normexp.softmax(x, axis=0, out=o)),
    Case("softmax/f64/cols-tall/out", lambda g, s: _cols_tall(g, s, np.float64), lambda x, o: normexp.softmax(x, axis=0, out=o)),
    Case("softmax/f32/cols-blocks/out", lambda g, s: _cols_blocks(g, s, np.float32), lambda x, o: normexp.softmax(x, axis=0, out=o)),
    Case("log_softmax/f64/cols-blocks/out", lambda g, s: _cols_blocks(g, s, np.float64), lambda x, o: normexp.log_softmax(x, axis=0, out=o)),
    Case(
        "logsumexp/f64/cols-blocks/out",
        lambda g, s: (_cols_blocks(g, s, np.float64)[0], np.empty((1, 1030 if s == "small" else 1500))),
        lambda x, o: normexp.logsumexp(x, axis=0, keepdims=True, out=o),
    ),
    Case(
        "attention/f32/strided-q-v-bool-mask/out",
        lambda g, s: _att_strided(g, s, np.float32, "bool"),
        lambda q, k, v, m, o: normexp.attention(q, k, v, mask=m, is_causal=True, out=o),
    ),
    Case(
        "attention/f64/strided-q-v-additive-mask/out",
        lambda g, s: _att_strided(g, s, np.float64, "additive"),
        lambda q, k, v, m, o: normexp.attention(q, k, v, mask=m, window=40, out=o),
    ),
    Case("attention/f32/gqa-decode-split/out", _att_decode_out, lambda q, k, v, o: normexp.attention(q, k, v, out=o)),
    Case("_core.normalize_with/f64/cols/out", lambda g, s: _normalize_args(g, s, 0), lambda x, m, sm, o: _core.normalize_with(_core.Reduction.softmax, x, o, m, sm, 0, 1.0, "")),
    Case("_core.normalize_with/f64/rows/out", lambda g, s: _normalize_args(g, s, 1), lambda x, m, sm, o: _core.normalize_with(_core.Reduction.log_softmax, x, o, m, sm, 1, 1.0, "")),
]
# Rows without out= beyond the shared table: the native parts, the top-k paths of a long row.
EXTRA_CASES: list[Case] = [
    Case("_core.logsumexp_parts/f64/cols", lambda g, s: _parts_args(g, s, 0), lambda x, m, sm: _parts_call(x, m, sm, 0)),
    Case("_core.logsumexp_parts/f64/rows", lambda g, s: _parts_args(g, s, 1), lambda x, m, sm: _parts_call(x, m, sm, 1)),
    Case(
        "sample/f32/long-row-top_k",
        lambda g, s: (_rows(g, s, (2, 50), (1, 200_003)),),
        lambda x: normexp.sample(x, top_k=40, top_p=0.9, rng=3),
    ),
    Case(
        "sample/f64/long-row-large-top_k",
        lambda g, s: (_rows(g, s, (2, 5000), (1, 200_003), np.float64),),
        lambda x: normexp.sample(x, top_k=4500, min_p=0.001, rng=4),
    ),
    Case(
        "sample/f32/rows-no-cuts",
        lambda g, s: (_rows(g, s, (3, 50), (40, 5000)),),
        lambda x: normexp.sample(x, temperature=1.5, rng=5),
    ),
]
OUT_NAMES = {c.name for c in OUT_CASES}
ALL_CASES = {c.name: c for c in CASES + OUT_CASES + EXTRA_CASES}


def sweep(lib: Any, case: Case, args: tuple) -> tuple[int, int]:
    """Fails the n-th allocation of case.call(*args) for n = 1, 2, ...; returns (allocations, MemoryErrors).

    Each armed call must raise MemoryError or return the unarmed call's result; on MemoryError an out=
    array must still hold the sentinel everywhere."""
    out = args[-1] if case.name in OUT_NAMES else None
    ref = run_case(case, args)  # unarmed, twice: first-call initialization happens outside the sweep
    assert identical(run_case(case, args), ref), f"{case.name}: two unarmed calls differ"
    errors = 0
    for n in itertools.count(1):
        assert n <= MAX_SWEEP, f"{case.name}: more than {MAX_SWEEP} allocations in one call?"
        if out is not None:
            out[...] = SENTINEL
        got, failed = None, False
        lib.failalloc_arm(n)
        try:
            got = run_case(case, args)
        except MemoryError:
            failed = True
        finally:
            fired = lib.failalloc_fired()
            lib.failalloc_arm(0)
        if not fired:  # the call made fewer than n allocations: the sweep is complete
            assert not failed and identical(got, ref), f"{case.name}: an unfailed call went wrong"
            return n - 1, errors
        if failed:
            errors += 1
            if out is not None:
                assert np.all(out == SENTINEL), f"{case.name}: allocation {n} failed after out= was partly written"
        else:
            assert identical(got, ref), f"{case.name}: allocation {n} failed and the call returned a wrong result"
    raise AssertionError("unreachable")


ABORT = "abort (negative control)"


def run_case_in_server(lib: Any, name: str) -> None:
    """One case in the case server: the sweep at both scales, at one thread and at OMP_NUM_THREADS (ABORT:
    the process aborts, the server's negative control)."""
    if name == ABORT:
        print("about to abort", flush=True)
        os.abort()
    case = ALL_CASES[name]
    for threads in (1, 0):  # one thread, then OMP_NUM_THREADS (3)
        normexp.set_num_threads(threads)
        for scale in ("small", "large"):
            args = case.make(np.random.default_rng(17), scale)
            allocs, errors = sweep(lib, case, args)
            # (0 allocations: a function computed in NumPy alone, e.g. calibration_error)
            print(f"{scale} threads={normexp.get_num_threads()}: {allocs} allocations, {errors} MemoryError")
    print("ok")


# The case server: reads "<case name>\t<output file>" lines; runs each case with its printout in the file
# and answers with a JSON line: 0 (done) or 1 (an exception, its traceback in the file). A process that dies
# (SIGABRT from std::terminate when an exception left an OpenMP region or a noexcept function) answers
# nothing: CaseServer reports its exit code, with faulthandler's Python stack from its stderr, and starts a
# fresh server for the next case.
SERVER = textwrap.dedent(
    """
    import contextlib, ctypes, faulthandler, json, sys, traceback
    import numpy as np
    sys.path.insert(0, {here!r})
    import normexp
    import test_alloc_failure as t
    faulthandler.enable()
    lib = ctypes.CDLL(None)  # the preloaded injector
    lib.failalloc_arm.argtypes = [ctypes.c_long]
    for line in sys.stdin:
        name, path = line.rstrip("\\n").split("\\t")
        code = 0
        with open(path, "w", buffering=1) as f, contextlib.redirect_stdout(f):
            try:
                t.run_case_in_server(lib, name)
            except BaseException:
                traceback.print_exc(file=f)
                code = 1
        print(json.dumps(code), flush=True)
    """
)


class CaseServer:
    """A Python process that runs cases on request (LD_PRELOAD=the injector, OMP_NUM_THREADS=3), so that a
    case does not pay an interpreter start-up; started again after a case kills it."""

    def __init__(self, lib: str) -> None:
        self.lib = lib
        self.proc: subprocess.Popen | None = None
        self.stderr: Any = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, LD_PRELOAD=self.lib, OMP_NUM_THREADS="3")
        self.stderr = tempfile.TemporaryFile()
        return subprocess.Popen([sys.executable, "-u", "-c", SERVER.format(here=HERE)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)

    def run(self, name: str, path: str) -> int:
        """The exit code of case `name` (0 done, 1 an exception, negative: the signal that killed the server);
        its printout is in `path`."""
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self.proc = self._start()
        self.proc.stdin.write(f"{name}\t{path}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT_S)
        if not ready:
            self.close()
            raise AssertionError(f"{name}: no answer in {TIMEOUT_S} s")
        line = self.proc.stdout.readline()
        if line:
            return int(json.loads(line))
        code = self.proc.wait()
        self.stderr.seek(0)
        with open(path, "a", encoding="utf-8") as f:
            f.write(self.stderr.read().decode(errors="replace")[-6000:])
        self.close()
        return code

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


@pytest.fixture(scope="session")
def failalloc(tmp_path_factory) -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.fail("no C++ compiler (set CXX): needed to build the allocation-failure injector")
    lib = str(tmp_path_factory.mktemp("failalloc") / "libfailalloc.so")
    r = subprocess.run([cxx, "-std=c++17", "-O1", "-shared", "-fPIC", "-o", lib, SOURCE], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return lib


def test_injector_fails_the_nth_allocation(failalloc):
    # The mechanism itself: arming for n fails exactly the n-th operator new (here: in a pybind11 call
    # that allocates a std::vector per argument), which surfaces as MemoryError.
    code = textwrap.dedent(
        """
        import ctypes, numpy as np, normexp
        lib = ctypes.CDLL(None)
        lib.failalloc_arm.argtypes = [ctypes.c_long]
        x = np.zeros((2, 3), np.float32)
        lib.failalloc_arm(1)
        try:
            normexp.softmax(x)
            print("no error")
        except MemoryError:
            print("MemoryError", lib.failalloc_fired())
        lib.failalloc_arm(0)
        print(lib.failalloc_fired(), float(normexp.softmax(x)[0, 0]))
        """
    )
    env = dict(os.environ, LD_PRELOAD=failalloc)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["MemoryError", "1", "0", repr(float(np.float32(1) / 3))], r.stdout


@pytest.fixture(scope="module")
def case_server(failalloc):
    server = CaseServer(failalloc)
    yield server
    server.close()


@pytest.mark.parametrize("name", list(ALL_CASES))
def test_every_allocation_failure_raises_memory_error(case_server, name, tmp_path):
    path = str(tmp_path / "case.log")
    code = case_server.run(name, path)
    with open(path, encoding="utf-8", errors="replace") as f:
        out = f.read()
    # A negative return code is a signal: SIGABRT from std::terminate when an exception left an OpenMP
    # region or a noexcept function.
    assert code == 0, f"return code {code}\n{out[-6000:]}"
    assert out.rstrip().endswith("ok"), out
    print(out)


def test_a_failing_or_dying_case_fails_its_test_only(case_server, tmp_path):
    # Negative control of the server: a case that raises (an unknown case: KeyError) answers 1, one that
    # kills the process (os.abort, as std::terminate would) a negative exit code, each with its output
    # kept; the next case runs in a fresh server.
    path = str(tmp_path / "case.log")
    assert case_server.run("no such case", path) == 1
    with open(path) as f:
        assert "KeyError" in f.read()
    assert case_server.run(ABORT, path) < 0
    with open(path) as f:
        assert "about to abort" in f.read()
    assert case_server.run("softmax/f32/out", path) == 0
