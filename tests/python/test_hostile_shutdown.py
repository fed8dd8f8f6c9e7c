"""Interpreter exit while daemon threads are inside normexp calls.

At exit CPython (before 3.14) ends a daemon thread that tries to take the GIL back with pthread_exit, a
forced unwind of its C++ frames. pybind11's gil_scoped_release retakes the GIL in a noexcept destructor,
so that unwind ended in std::terminate: "terminate called without an active exception" and SIGABRT on
every such exit, with one thread or many. The bindings' own guard (python/bindings/bindings.hpp,
release_gil) parks the thread instead, as CPython 3.14 does itself. Each case runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np
    import normexp

    normexp.set_num_threads({threads})
    rng = np.random.default_rng(0)
    a = rng.standard_normal(({rows}, 4096)).astype(np.float32)
    q = rng.standard_normal((2, 256, 64)).astype(np.float32)

    def busy():
        while True:
            normexp.softmax(a)
            normexp.logsumexp(a, axis=0)
            normexp.attention(q, q, q)
            normexp.sample(a[:4], top_k=5, rng=np.random.default_rng(1))

    for _ in range(4):
        threading.Thread(target=busy, daemon=True).start()
    time.sleep(0.05)
    {exit}
    """
)


@pytest.mark.parametrize("exit_call", ["pass", "sys.exit(0)"])
@pytest.mark.parametrize("threads,rows", [(1, 8), (2, 512)])
def test_exit_with_daemon_threads_inside_calls(exit_call, threads, rows):
    code = SCRIPT.format(threads=threads, rows=rows, exit=exit_call)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    for _ in range(3):  # the abort happened on every run; three runs catch an intermittent one too
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "terminate called" not in r.stderr
