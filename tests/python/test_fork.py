"""fork() after OpenMP has run: the child must not hang and must compute the same results.

GNU libgomp keeps its thread pool in process state that fork() copies without the worker threads, so a
forked child entering a parallel region waits forever for them. normexp registers a pthread_atfork
child handler (cpp/src/threading.cpp) that makes the child run single-threaded. Without it this test's
child hangs (measured: the child never finishes and the 60 s bound below fails the test).

Each scenario runs in a fresh interpreter (subprocess) so a hang is bounded by a timeout and cannot
wedge the test session, and so OpenMP state from other tests cannot hide or cause the problem.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

# Seconds for the whole scenario; a healthy run takes ~2 s, a hang never finishes.
TIMEOUT_S = 60

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys
    import numpy as np
    sys.path.insert(0, {here!r})
    import normexp
    from reliability_cases import CASES, run_case, identical


    def child(q, args, parent):
        try:
            res = [run_case(c, a) for c, a in zip(CASES, args)]
            bad = [c.name for c, r, p in zip(CASES, res, parent) if not identical(r, p)]
            q.put((normexp.get_num_threads(), bad))
        except BaseException as e:  # report, don't leave the parent waiting
            q.put((-1, [repr(e)]))


    if __name__ == "__main__":
        normexp.set_num_threads(0)  # as many as OpenMP allows: the parent's calls open OpenMP teams
        rng = np.random.default_rng(7)
        args = [c.make(rng, "large") for c in CASES]
        parent = [run_case(c, a) for c, a in zip(CASES, args)]
        ctx = mp.get_context({method!r})
        q = ctx.Queue()
        procs = [ctx.Process(target=child, args=(q, args, parent)) for _ in range(2)]
        for p in procs:
            p.start()
        out = [q.get(timeout={child_timeout}) for _ in procs]
        for p in procs:
            p.join({child_timeout})
        for nthreads, bad in out:
            assert not bad, bad
            print("child threads", nthreads)
        print("parent threads", normexp.get_num_threads())
    """
)


def run_scenario(method: str, tmp_path) -> str:
    script = tmp_path / f"fork_scenario_{method}.py"
    script.write_text(SCRIPT.format(here=HERE, method=method, child_timeout=TIMEOUT_S // 2))
    env = dict(os.environ, OMP_NUM_THREADS="2")  # a team of 2 even on a 1-core runner
    try:
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"multiprocessing child ({method}) hung after OpenMP ran in the parent: {e}")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_fork_child_after_openmp_does_not_hang(tmp_path):
    out = run_scenario("fork", tmp_path)
    # The forked child runs single-threaded; the parent keeps its team.
    assert out.count("child threads 1") == 2, out
    assert "parent threads 2" in out, out


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_non_fork_children_keep_their_threads(method, tmp_path):
    # Children that are not forks start a fresh runtime and may use threads again.
    out = run_scenario(method, tmp_path)
    assert out.count("child threads 2") == 2, out


def test_os_fork_direct():
    # A bare os.fork() (not multiprocessing) is covered by the same atfork handler.
    code = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        import normexp
        normexp.set_num_threads(0)
        x = np.random.default_rng(1).standard_normal((64, 4096)).astype(np.float32)
        ref = normexp.log_softmax(x, axis=0)
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(normexp.log_softmax(x, axis=0), ref) and normexp.get_num_threads() == 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="2")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("os.fork() child hung after OpenMP ran in the parent")
    assert r.returncode == 0, r.stdout + r.stderr
