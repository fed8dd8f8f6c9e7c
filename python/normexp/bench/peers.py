"""The libraries normexp is measured against, each used the fastest way it offers.

A peer turns a :class:`~normexp.bench.cases.Case` plus its input buffers into a :class:`Session`: a
result to check and calls to time. Every peer gets the same input arrays (the runner makes them once
per case); outputs are preallocated where the library can write into them.

How each one is pinned to ``threads`` cores:

* normexp: ``normexp.set_num_threads`` (process-wide).
* NumPy / SciPy: their softmax-type ufuncs are single-threaded; the BLAS under NumPy's attention
  (matmul) is limited with threadpoolctl when it is installed (noted as unpinned otherwise).
* PyTorch: ``torch.set_num_threads``.
* ONNX Runtime: a session per (case, threads) with ``intra_op_num_threads = threads`` and one inter-op
  thread.
* JAX: XLA has no documented thread-count setting, so JAX runs in a worker process per thread count
  whose CPU affinity is set to ``threads`` cores before jax is imported (every thread XLA creates
  inherits it); at 1 thread ``--xla_cpu_multi_thread_eigen=false`` also keeps its Eigen kernels serial.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import socket
import subprocess
import sys
import tempfile
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

import numpy as np

from .cases import Case, np_dtype
from .timing import Timing, time_calls

Buffers = Sequence[tuple[np.ndarray, ...]]


class Session:
    """Calls prepared for one (case, threads): ``result()`` is one call's output as a NumPy array (a
    copy), ``time()`` the timed calls. ``close()`` releases what the session holds."""

    note: str = ""

    def result(self) -> np.ndarray:
        raise NotImplementedError

    def time(self, timing: Timing) -> tuple[list[float], int]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CallSession(Session):
    """A session of in-process calls: ``fns[i]`` works on buffer set i; ``fetch(r)`` turns a call's
    return value into a NumPy array."""

    def __init__(self, fns: list[Callable[[], Any]], fetch: Callable[[Any], np.ndarray],
                 on_close: Callable[[], None] | None = None, note: str = "") -> None:
        self.fns = fns
        self.fetch = fetch
        self.on_close = on_close
        self.note = note

    def result(self) -> np.ndarray:
        return np.array(self.fetch(self.fns[0]()), copy=True)

    def time(self, timing: Timing) -> tuple[list[float], int]:
        return time_calls(self.fns, timing)

    def close(self) -> None:
        self.fns = []
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


class Peer:
    """Base class. ``name`` is what the command line and the tables use, ``module`` the package that
    must import for the peer to run, ``install`` how to get it."""

    name = ""
    module = ""
    install = ""
    # The case dtypes the peer is measured on (the runner reports the others as n/a).
    dtypes: tuple[str, ...] = ("float32", "float64")
    # Whether the peer has attention over a paged KV cache (a block table): only normexp does among these.
    paged = False

    def missing(self) -> str | None:
        """None when the peer can run, else a one-line reason."""
        try:
            importlib.import_module(self.module)
        except Exception as e:  # ImportError, or a broken install raising something else
            how = f" ({self.install})" if self.install else ""
            return f"{self.name}: not installed{how}: {type(e).__name__}: {e}".splitlines()[0]
        return None

    def version(self) -> str:
        mod = importlib.import_module(self.module)
        return str(getattr(mod, "__version__", "?"))

    def supports(self, case: Case) -> str | None:
        """None when the peer computes this case, else why not."""
        return None

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        raise NotImplementedError

    def close(self) -> None:
        """Release long-lived resources (worker processes)."""


# ---- normexp ----------------------------------------------------------------------------------------


class NormexpPeer(Peer):
    """normexp on the kernel set it selected, or on the one named by `isa` (``--isa``): the session then
    runs inside ``normexp.use_isa(isa)``, entered in start() and left in close(), so the timed calls
    carry no context-manager cost. Named ``normexp`` unless `name` says otherwise."""

    name = "normexp"
    module = "normexp"
    dtypes = ("float32", "float64", "float16", "bfloat16")
    paged = True

    def __init__(self, isa: str = "", name: str = "") -> None:
        self.isa = isa
        if name:
            self.name = name

    def version(self) -> str:
        import normexp

        return f"{normexp.__version__} ({self.isa or normexp.isa()})"

    def supports(self, case: Case) -> str | None:
        import normexp

        if self.isa and self.isa not in normexp.available_isas():
            return f"ISA {self.isa} is not available on this CPU (available: {', '.join(normexp.available_isas())})"
        if case.is_attention and not hasattr(normexp, case.op):
            return f"normexp.{case.op} is not in this build"
        return None

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        import normexp

        on_close = None
        if self.isa:
            cm = normexp.use_isa(self.isa)
            cm.__enter__()
            on_close = lambda: cm.__exit__(None, None, None)  # noqa: E731
        normexp.set_num_threads(threads)
        note = "" if normexp.get_num_threads() == threads else f"runs {normexp.get_num_threads()} threads"
        dt = np_dtype(case.dtype)
        fns = []
        if case.is_paged:
            for q, kp, vp, table, lens in buffers:
                o = np.empty(case.out_shape, dt)
                fns.append(lambda q=q, kp=kp, vp=vp, t=table, n=lens, o=o: normexp.paged_attention(q, kp, vp, t, n, out=o))
            return CallSession(fns, np.asarray, on_close=on_close, note=note)
        if case.is_attention:
            takes_out = "out" in inspect.signature(normexp.attention).parameters
            for q, k, v in buffers:
                if takes_out:
                    o = np.empty(case.out_shape, dt)
                    fns.append(lambda q=q, k=k, v=v, o=o: normexp.attention(q, k, v, is_causal=case.causal, out=o))
                else:
                    fns.append(lambda q=q, k=k, v=v: normexp.attention(q, k, v, is_causal=case.causal))
            return CallSession(fns, np.asarray, on_close=on_close, note=note)
        f = getattr(normexp, case.op)
        acc = case.accuracy
        for (x,) in buffers:
            o = np.empty(case.out_shape, dt)
            if acc == "high":  # the default: the call as every release takes it
                fns.append(lambda x=x, o=o: f(x, axis=case.norm_axis, out=o))
            else:
                fns.append(lambda x=x, o=o: f(x, axis=case.norm_axis, accuracy=acc, out=o))
        return CallSession(fns, np.asarray, on_close=on_close, note=note)


# ---- NumPy and SciPy --------------------------------------------------------------------------------


def _blas_limits(threads: int) -> tuple[Callable[[], None] | None, str]:
    """Limit the BLAS pool to `threads` for the session (threadpoolctl); returns (undo, note)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None, "BLAS threads unpinned (pip install threadpoolctl)"
    ctl = threadpool_limits(limits=threads, user_api="blas")
    return ctl.restore_original_limits, ""


def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """softmax(q k^T / sqrt(D) + bias) v with stacked matmuls (BLAS) and an in-place stable softmax;
    `bias` (Lq, Lkv) is 0 where a pair takes part and -inf where the causal mask removes it (a
    broadcast add: much faster than boolean-mask assignment). k and v may have fewer heads than q
    (grouped-query attention): q is seen as (B, Hkv, H / Hkv, Lq, D) against K/V broadcast over the group,
    so no copy of K or V is made."""
    if q.ndim == 4 and k.shape[1] != q.shape[1]:
        b, h, lq, d = q.shape
        hk = k.shape[1]
        out = numpy_attention(q.reshape(b, hk, h // hk, lq, d), k[:, :, None], v[:, :, None], bias)
        return out.reshape(b, h, lq, v.shape[-1])
    s = np.matmul(q, np.swapaxes(k, -1, -2))
    s *= s.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    if bias is not None:
        s += bias
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return np.matmul(s, v)


class NumpyPeer(Peer):
    """NumPy written the usual fast way: max, subtract, exp, sum, divide, all in preallocated buffers."""

    name = "numpy"
    dtypes = ("float32", "float64", "float16")
    module = "numpy"

    def supports(self, case: Case) -> str | None:
        if case.is_attention and (case.is_16bit or case.is_paged):
            return "numpy's attention (BLAS matmuls) is measured in float32 and float64, on a contiguous cache"
        return None

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        dt = np.dtype(case.dtype)
        if case.is_attention:
            undo, note = _blas_limits(threads)
            _, _, lq, lkv, _ = case.shape
            bias = None
            if case.causal:
                bias = np.where(np.triu(np.ones((lq, lkv), bool), 1), -np.inf, 0.0).astype(dt)
            fns = [lambda q=q, k=k, v=v: numpy_attention(q, k, v, bias) for q, k, v in buffers]
            return CallSession(fns, np.asarray, on_close=undo, note=note)
        ax = case.norm_axis
        fns = []
        for (x,) in buffers:
            out = np.empty(case.out_shape, dt)
            if case.op == "softmax":

                def f(x=x, out=out):
                    np.subtract(x, x.max(axis=ax, keepdims=True), out=out)
                    np.exp(out, out=out)
                    out /= out.sum(axis=ax, keepdims=True)
                    return out

            elif case.op == "log_softmax":
                work = np.empty_like(x)

                def f(x=x, out=out, work=work):
                    np.subtract(x, x.max(axis=ax, keepdims=True), out=out)
                    np.exp(out, out=work)
                    out -= np.log(work.sum(axis=ax, keepdims=True))
                    return out

            else:  # logsumexp
                work = np.empty_like(x)

                def f(x=x, out=out, work=work):
                    m = x.max(axis=ax, keepdims=True)
                    np.subtract(x, m, out=work)
                    np.exp(work, out=work)
                    np.log(work.sum(axis=ax), out=out)
                    out += np.squeeze(m, axis=ax)
                    return out

            fns.append(f)
        return CallSession(fns, np.asarray)


class ScipyPeer(Peer):
    name = "scipy"
    module = "scipy"
    install = "pip install scipy"

    def supports(self, case: Case) -> str | None:
        return "scipy has no attention" if case.is_attention else None

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        import scipy.special as sps

        f = getattr(sps, case.op)
        ax = case.norm_axis
        return CallSession([lambda x=x: f(x, axis=ax) for (x,) in buffers], np.asarray)


# ---- PyTorch ----------------------------------------------------------------------------------------


class TorchPeer(Peer):
    """torch CPU on the same memory (torch.from_numpy), writing into preallocated outputs (out=)."""

    name = "torch"
    module = "torch"
    install = "pip install torch==2.13.0"
    dtypes = ("float32", "float64", "float16", "bfloat16")

    def supports(self, case: Case) -> str | None:
        if case.kv_dtype:
            return "torch SDPA takes one dtype for q, k and v (a float32 q needs a float32 copy of the cache)"
        return None

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        import torch

        # torch.set_num_threads calls omp_set_num_threads, which also caps every other library on the
        # same OpenMP runtime (normexp included): restore the previous value when the session ends.
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        note = "" if torch.get_num_threads() == threads else f"runs {torch.get_num_threads()} threads"

        def restore() -> None:
            torch.set_num_threads(before)

        dt = np_dtype(case.dtype)
        fns = []
        bf16 = case.dtype == "bfloat16"  # NumPy has no bfloat16: the same bits through an int16 view

        def tensor(a: np.ndarray) -> Any:
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if bf16 else torch.from_numpy(a)

        def fetch(r: Any) -> np.ndarray:
            return r.view(torch.int16).numpy().view(dt) if bf16 else r.numpy()

        if case.is_attention:
            sdpa = torch.nn.functional.scaled_dot_product_attention
            gqa = case.kv_heads != case.shape[1]  # enable_gqa: K/V heads shared by groups of query heads
            for q, k, v in buffers:
                qt, kt, vt = (tensor(a) for a in (q, k, v))
                if gqa:
                    fns.append(lambda qt=qt, kt=kt, vt=vt: sdpa(qt, kt, vt, is_causal=case.causal, enable_gqa=True))
                else:
                    fns.append(lambda qt=qt, kt=kt, vt=vt: sdpa(qt, kt, vt, is_causal=case.causal))
            return CallSession(fns, fetch, on_close=restore, note=note)
        f = {"softmax": torch.softmax, "log_softmax": torch.log_softmax, "logsumexp": torch.logsumexp}[case.op]
        ax = case.norm_axis

        for (x,) in buffers:
            o = np.empty(case.out_shape, dt)
            xt, ot = tensor(x), tensor(o)
            fns.append(lambda xt=xt, ot=ot: f(xt, ax, out=ot))
        return CallSession(fns, fetch, on_close=restore, note=note)


# ---- ONNX Runtime -----------------------------------------------------------------------------------

# Softmax/LogSoftmax take one `axis` since opset 13; ReduceLogSumExp takes `axes` as an attribute up to
# opset 17; the Attention operator appears in opset 23.
_ORT_OPSET = 17
_ORT_ATTENTION_OPSET = 23


def onnx_model(case: Case) -> bytes:
    """A one-node ONNX graph computing `case` with fixed shapes."""
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "float16": TensorProto.FLOAT16}[case.dtype]
    if case.is_attention:
        names = ["q", "k", "v"]
        inputs = [helper.make_tensor_value_info(n, elem, list(s)) for n, s in zip(names, case.input_shapes)]
        node = helper.make_node("Attention", names, ["y"], is_causal=int(case.causal))
        opset = _ORT_ATTENTION_OPSET
    else:
        inputs = [helper.make_tensor_value_info("x", elem, list(case.shape))]
        if case.op == "logsumexp":
            node = helper.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[case.norm_axis], keepdims=0)
        else:
            op = "Softmax" if case.op == "softmax" else "LogSoftmax"
            node = helper.make_node(op, ["x"], ["y"], axis=case.norm_axis)
        opset = _ORT_OPSET
    out = helper.make_tensor_value_info("y", elem, list(case.out_shape))
    graph = helper.make_graph([node], f"normexp_bench_{case.op}", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model.SerializeToString()


class OnnxRuntimePeer(Peer):
    """ONNX Runtime CPU: one session per (case, threads), inputs and outputs bound to the NumPy buffers
    with I/O binding (no copies per call)."""

    name = "onnxruntime"
    module = "onnxruntime"
    install = "pip install onnxruntime onnx"
    dtypes = ("float32", "float64", "float16", "bfloat16")

    def missing(self) -> str | None:
        for mod in ("onnxruntime", "onnx"):
            try:
                importlib.import_module(mod)
            except Exception as e:
                return f"onnxruntime: not installed (pip install onnxruntime onnx): {type(e).__name__}: {e}"
        return None

    def supports(self, case: Case) -> str | None:
        # The ONNX Attention operator (opset 23) with 4-D inputs of H and Hkv heads covers grouped-query
        # attention; ONNX Runtime 1.32's CPU kernel runs it in float32 and float16 (bfloat16: no kernel,
        # float64: no kernel), with q, k and v of one type.
        if case.is_paged:
            return "onnxruntime has no paged KV cache (block table) attention"
        if not case.is_attention:
            return f"{self.name} is not measured on {case.dtype}" if case.dtype in ("float16", "bfloat16") else None
        if case.kv_dtype:
            return "the ONNX Attention operator takes one dtype for q, k and v"
        if case.dtype not in ("float32", "float16"):
            return f"ONNX Runtime's CPU Attention kernel runs float32 and float16, not {case.dtype}"
        return None

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        sess = ort.InferenceSession(onnx_model(case), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        dt = np_dtype(case.dtype)
        fns = []
        for arrays in buffers:
            io = sess.io_binding()
            for name, a in zip(names, arrays):
                io.bind_input(name, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
            o = np.empty(case.out_shape, dt)
            io.bind_output("y", "cpu", 0, dt, list(o.shape), o.ctypes.data)
            # The closure keeps the session, the binding and the bound output alive together.
            fns.append(lambda io=io, o=o: (sess.run_with_iobinding(io), o)[1])
        return CallSession(fns, np.asarray)


# ---- JAX (in worker processes) ----------------------------------------------------------------------


class JaxPeer(Peer):
    """JAX on the CPU, jit-compiled, timed with ``block_until_ready``. Runs in one worker process per
    thread count (see the module docstring); inputs travel to the worker once per case."""

    name = "jax"
    module = "jax"
    install = 'pip install "jax[cpu]"'

    def supports(self, case: Case) -> str | None:
        if case.is_paged:
            return "jax has no paged KV cache (block table) attention"
        if case.kv_dtype:
            return "jax.nn.dot_product_attention takes one dtype for q, k and v"
        return None

    def __init__(self) -> None:
        self._workers: dict[int, _Worker] = {}

    def missing(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("jax") is None or importlib.util.find_spec("jaxlib") is None:
            return f'jax: not installed ({self.install})'
        return None

    def version(self) -> str:
        from importlib.metadata import version

        return version("jax")

    def start(self, case: Case, buffers: Buffers, threads: int) -> Session:
        w = self._workers.get(threads)
        if w is None or not w.alive():
            w = self._workers[threads] = _Worker(threads)
        w.call("start", case, list(buffers))
        return _WorkerSession(w, note=w.note)

    def close(self) -> None:
        for w in self._workers.values():
            w.stop()
        self._workers.clear()


class _Worker:
    """A Python process running :func:`_jax_worker_main`, talking over a socket pair. Its CPU affinity
    is set to `threads` CPUs as the very first statement, before numpy or jax create any thread."""

    _CODE = (
        "import os, sys\n"
        "cpus = [int(c) for c in sys.argv[2].split(',') if c]\n"
        "if cpus and hasattr(os, 'sched_setaffinity'):\n"
        "    os.sched_setaffinity(0, cpus)\n"
        "from normexp.bench.peers import _jax_worker_main\n"
        "_jax_worker_main(int(sys.argv[1]))\n"
    )
    # A request that has no answer after this long is taken as a hung worker (the largest default case
    # needs well under a minute per request).
    TIMEOUT_S = 1800.0

    def __init__(self, threads: int) -> None:
        import normexp

        cpus = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else []
        self.note = "" if cpus else "JAX threads unpinned (no CPU affinity on this OS)"
        parent, child = socket.socketpair()
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(normexp.__file__)))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if threads == 1:  # also keep XLA's Eigen kernels (matmuls) on one thread
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._CODE, str(child.fileno()), ",".join(map(str, cpus))],
            pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.stderr)
        child.close()
        self.conn = Connection(parent.detach())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _died(self) -> RuntimeError:
        self.proc.poll()
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()
        last = tail[-1] if tail else "no message"
        return RuntimeError(f"the JAX worker process stopped (exit code {self.proc.returncode}): {last}")

    def call(self, *msg: Any) -> Any:
        try:
            self.conn.send(msg)
            if not self.conn.poll(self.TIMEOUT_S):
                self.proc.kill()
                raise RuntimeError(f"the JAX worker gave no answer in {self.TIMEOUT_S:.0f} s")
            reply = self.conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if reply[0] == "error":
            raise RuntimeError(reply[1])
        return reply[1]

    def stop(self) -> None:
        try:
            if self.alive():
                self.conn.send(("exit",))
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.conn.close()
        self.stderr.close()


class _WorkerSession(Session):
    def __init__(self, worker: _Worker, note: str = "") -> None:
        self.worker = worker
        self.note = note

    def result(self) -> np.ndarray:
        return self.worker.call("result")

    def time(self, timing: Timing) -> tuple[list[float], int]:
        return self.worker.call("time", timing)

    def close(self) -> None:
        if self.worker.alive():
            self.worker.call("close")


def _jax_functions(case: Case, buffers: Buffers) -> tuple[list[Callable[[], Any]], Callable[[Any], np.ndarray]]:
    import jax
    import jax.numpy as jnp

    if case.is_attention:
        # jax.nn.dot_product_attention takes (batch, seq, heads, head_dim): the same values in JAX's own
        # layout, transposed once here, outside the timing; the result is transposed back for the check.
        f = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=case.causal))
        fns = []
        for arrays in buffers:
            q, k, v = (jax.device_put(np.ascontiguousarray(np.swapaxes(a, 1, 2))) for a in arrays)
            fns.append(lambda q=q, k=k, v=v: f(q, k, v).block_until_ready())
        return fns, lambda r: np.swapaxes(np.asarray(r), 1, 2)
    ax = case.norm_axis
    g = {
        "softmax": lambda x: jax.nn.softmax(x, axis=ax),
        "log_softmax": lambda x: jax.nn.log_softmax(x, axis=ax),
        "logsumexp": lambda x: jax.scipy.special.logsumexp(x, axis=ax),
    }[case.op]
    f = jax.jit(g)
    fns = []
    for (x,) in buffers:
        xj = jax.device_put(x)
        fns.append(lambda xj=xj: f(xj).block_until_ready())
    del jnp
    return fns, np.asarray


def _jax_worker_main(fd: int) -> None:
    """The JAX worker (already pinned by _Worker._CODE): import jax, then serve start / result / time /
    close requests on the socket `fd` until 'exit' or the parent goes away."""
    conn = Connection(fd)
    fns: list[Callable[[], Any]] = []
    fetch: Callable[[Any], np.ndarray] = np.asarray
    try:
        import jax

        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_enable_x64", True)  # float64 cases compute in float64; float32 stays float32
    except Exception as e:  # reported on the first request
        boot_error = f"jax failed to start: {type(e).__name__}: {e}"
    else:
        boot_error = ""
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        try:
            if msg[0] == "exit":
                conn.send(("ok", None))
                return
            if boot_error:
                raise RuntimeError(boot_error)
            if msg[0] == "start":
                fns, fetch = _jax_functions(msg[1], msg[2])
                conn.send(("ok", None))
            elif msg[0] == "result":
                conn.send(("ok", np.array(fetch(fns[0]()), copy=True)))
            elif msg[0] == "time":
                conn.send(("ok", time_calls(fns, msg[1])))
            elif msg[0] == "close":
                fns = []
                conn.send(("ok", None))
            else:
                raise ValueError(f"unknown request {msg[0]!r}")
        except Exception as e:
            fns = [] if msg[0] == "start" else fns
            detail = traceback.format_exception_only(type(e), e)[-1].strip()
            conn.send(("error", detail))


# ---- registry ---------------------------------------------------------------------------------------

PEER_CLASSES: dict[str, type[Peer]] = {
    "normexp": NormexpPeer,
    "numpy": NumpyPeer,
    "scipy": ScipyPeer,
    "torch": TorchPeer,
    "onnxruntime": OnnxRuntimePeer,
    "jax": JaxPeer,
}
PEER_NAMES = tuple(PEER_CLASSES)


def normexp_isa_name(isa: str, first: bool) -> str:
    """The peer name of normexp on kernel set `isa` under ``--isa``: the first set is ``normexp`` (the
    column every other peer is compared with), the others ``normexp[<isa>]``."""
    return "normexp" if first else f"normexp[{isa}]"


def make_peers(names: Sequence[str], isas: Sequence[str] = ()) -> tuple[list[Peer], list[str]]:
    """Instances of the named peers that can run here (normexp always first; one normexp per kernel set
    of `isas` when given, see normexp_isa_name), and one notice per peer that cannot."""
    wanted = ["normexp"] + [n for n in names if n != "normexp"]
    peers, notices = [], []
    for i, isa in enumerate(dict.fromkeys(isas)):
        peers.append(NormexpPeer(isa, normexp_isa_name(isa, i == 0)))
    for n in dict.fromkeys(wanted):
        if n not in PEER_CLASSES:
            raise ValueError(f"unknown peer {n!r}; choose from {', '.join(PEER_NAMES)}")
        if n == "normexp" and isas:
            continue
        p = PEER_CLASSES[n]()
        why = p.missing()
        if why:
            notices.append(f"skipped {why}")
        else:
            peers.append(p)
    return peers, notices
