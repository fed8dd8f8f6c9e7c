"""Concurrency: many Python threads calling every function at once, while other threads change the
thread count, give bit-identical results to serial calls; set_num_threads is process-wide.

The driver splits work into fixed chunks merged in a fixed order, so results do not depend on the
number of OpenMP threads; the GIL is released around the kernels, so the calls really overlap.
Functions come from reliability_cases.CASES (add a row there to cover a new function).
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

import normexp
from reliability_cases import CASES, identical, run_case

N_WORKERS = 8  # Python threads calling normexp at once (the machine has 2 cores: heavy oversubscription)
ROUNDS = 3  # passes over the whole table per worker


@pytest.fixture
def restore_threads():
    before = normexp.get_num_threads()
    yield
    normexp.set_num_threads(0)
    assert normexp.get_num_threads() >= before or before == 1


def test_concurrent_calls_are_bit_identical_to_serial(restore_threads):
    rng = np.random.default_rng(11)
    inputs = [(c, c.make(rng, scale)) for scale in ("small", "large") for c in CASES]
    normexp.set_num_threads(1)
    serial = [run_case(c, a) for c, a in inputs]
    # The serial results do not depend on the thread count either.
    normexp.set_num_threads(0)
    for (c, a), want in zip(inputs, serial):
        assert identical(run_case(c, a), want), c.name

    errors: list[str] = []
    start = threading.Barrier(N_WORKERS + 1)
    stop = threading.Event()

    def worker(seed: int) -> None:
        order = list(range(len(inputs)))
        random.Random(seed).shuffle(order)
        start.wait()
        for _ in range(ROUNDS):
            for i in order:
                c, a = inputs[i]
                try:
                    got = run_case(c, a)
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(f"{c.name}: {e!r}")
                    continue
                if not identical(got, serial[i]):
                    errors.append(f"{c.name}: result differs from the serial call")

    def changer() -> None:
        # Keeps changing the process-wide thread count while the workers run (1, 2, ..., 0 = all).
        r = random.Random(5)
        start.wait()
        while not stop.is_set():
            normexp.set_num_threads(r.choice([0, 1, 2, 3, 4]))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(N_WORKERS)]
    ch = threading.Thread(target=changer)
    for t in threads:
        t.start()
    ch.start()
    for t in threads:
        t.join(timeout=300)
    stop.set()
    ch.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a worker did not finish in 300 s"
    assert not errors, errors[:10]


def test_set_num_threads_is_seen_by_every_thread(restore_threads):
    normexp.set_num_threads(0)
    cap = normexp.get_num_threads()  # omp_get_max_threads() of a fresh thread
    n_readers = 6
    for n in [1, cap, 0, 1]:
        seen: list[int] = []
        lock = threading.Lock()
        set_done = threading.Event()

        def reader() -> None:
            set_done.wait(10)
            v = normexp.get_num_threads()
            with lock:
                seen.append(v)

        readers = [threading.Thread(target=reader) for _ in range(n_readers)]
        for t in readers:
            t.start()
        setter = threading.Thread(target=lambda: (normexp.set_num_threads(n), set_done.set()))
        setter.start()
        setter.join()
        for t in readers:
            t.join(10)
        want = cap if n <= 0 else min(n, cap)
        assert seen == [want] * n_readers, (n, seen)
        # and in the main thread
        assert normexp.get_num_threads() == want


def test_thread_count_is_capped_by_openmp(restore_threads):
    normexp.set_num_threads(0)
    cap = normexp.get_num_threads()
    normexp.set_num_threads(cap + 100)
    assert normexp.get_num_threads() == cap
    normexp.set_num_threads(-3)  # <= 0: as many as OpenMP allows
    assert normexp.get_num_threads() == cap


def test_omp_num_threads_limits_normexp():
    # OMP_NUM_THREADS=1 in the environment caps get_num_threads() at 1, whatever set_num_threads asks.
    import os
    import subprocess
    import sys

    code = "import normexp; normexp.set_num_threads(8); print(normexp.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_threadpoolctl_limits_normexp(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is in the test extra")
    normexp.set_num_threads(0)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert normexp.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
        np.testing.assert_allclose(normexp.softmax(x).sum(axis=-1), 1, rtol=1e-5)
