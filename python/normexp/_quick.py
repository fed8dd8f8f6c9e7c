"""The default run of ``python -m normexp``: the version, the active ISA and thread count, a self-check
against a float64 reference, then the benchmark suite's quick preset (``python -m normexp bench --quick``:
softmax and logsumexp on five shapes, every installed peer, all cores), all in under a minute.

Any option of ``python -m normexp bench`` can be added (e.g. ``python -m normexp --peers numpy``)."""

from __future__ import annotations

import sys

import numpy as np

import normexp


def ulp_error(got: np.ndarray, ref64: np.ndarray) -> float:
    """Max distance in float32 ULPs between got (float32) and the float64 reference rounded to float32."""
    ref = ref64.astype(np.float32)
    a = got.view(np.int32).astype(np.int64)
    b = ref.view(np.int32).astype(np.int64)
    a = np.where(a < 0, -(2**31) - a, a)
    b = np.where(b < 0, -(2**31) - b, b)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def self_check(log=print) -> bool:
    """Every function on every ISA this CPU runs, float32 rows of 1 to 32000 elements, against float64.

    Bounds: softmax 4 ULP (the library's published bound); log_softmax and logsumexp 8 ULP (their
    results are sums of a few rounded terms near zero/the maximum, where one more rounding of the
    log is allowed on top of softmax's budget).
    """
    rng = np.random.default_rng(0)
    ok = True
    for isa in normexp.available_isas():
        with normexp.use_isa(isa):
            for n in (1, 7, 1000, 32000):
                x = (rng.standard_normal((4, n)) * 8).astype(np.float32)
                x64 = x.astype(np.float64)
                m = x64.max(axis=-1, keepdims=True)
                s = np.exp(x64 - m).sum(axis=-1, keepdims=True)
                checks = {
                    "softmax": (normexp.softmax(x), np.exp(x64 - m) / s, 4),
                    "log_softmax": (normexp.log_softmax(x), x64 - m - np.log(s), 8),
                    "logsumexp": (normexp.logsumexp(x), (m + np.log(s))[:, 0], 8),
                }
                for name, (got, ref, bound) in checks.items():
                    err = ulp_error(np.asarray(got, np.float32), ref)
                    if err > bound:
                        log(f"  FAIL {isa} {name} n={n}: {err:.0f} ULP (bound {bound})")
                        ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        print("\nusage: python -m normexp [bench options]   |   python -m normexp bench --help")
        return 0
    print(f"normexp {normexp.__version__}  isa={normexp.isa()}  available={','.join(normexp.available_isas())}"
          f"  threads={normexp.get_num_threads()}")
    ok = self_check()
    print(f"self-check: {'ok' if ok else 'FAILED'} (every ISA; float32 softmax <= 4 ULP, "
          "log_softmax/logsumexp <= 8 ULP against float64)", flush=True)
    from .bench.cli import main as bench_main

    rc = bench_main(["--quick", *argv], prog="python -m normexp")
    return rc if ok else 1
