"""Worst-case error of normexp against a longdouble reference, per ISA and dtype.

    python bench/accuracy.py [--quick]

Inputs: rows of 1..16M elements (float32) drawn from normal distributions of scale 1..1000 with
offsets up to 1e4, plus rows with ties and -inf entries. The reference is computed in longdouble with
log1p of the non-maximal terms. Reported: the maximum distance in ULPs of the output dtype; for
log_softmax/logsumexp also the maximum absolute error in units of eps where the output is near 0
(an ill-conditioned output, see tests/python/test_numerics.py)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

import normexp


def ulp(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    dt = got.dtype
    r = ref.astype(np.float64).astype(dt)
    it = np.int32 if dt == np.float32 else np.int64
    lo = np.longdouble(np.iinfo(it).min)
    a = got.view(it).astype(np.longdouble)
    b = r.view(it).astype(np.longdouble)
    a = np.where(a < 0, lo - a, a)
    b = np.where(b < 0, lo - b, b)
    d = np.abs(a - b).astype(np.float64)
    return np.where((got == r) | (np.isnan(got) & np.isnan(r)), 0.0, d)


def reference(x: np.ndarray, op: str) -> np.ndarray:
    xl = x.astype(np.longdouble)
    m = xl.max(axis=-1, keepdims=True)
    e = np.exp(xl - m)
    first = (xl == m).cumsum(axis=-1) == 1
    rest = np.where(first & (xl == m), 0, e).sum(axis=-1, keepdims=True)
    if op == "softmax":
        return e / (1 + rest)
    if op == "log_softmax":
        return (xl - m) - np.log1p(rest)
    return (m + np.log1p(rest))[..., 0]


def cases(quick: bool, dtype):
    rng = np.random.default_rng(0)
    lengths = [1, 3, 8, 17, 100, 1000, 32000] + ([] if quick else [1 << 20])
    for n in lengths:
        for scale, offset in [(1, 0), (10, 0), (100, 0), (1000, 0), (3, 1e4), (0.01, 50)]:
            rows = max(1, min(64, (1 << 20) // n))
            yield f"n={n} N({offset},{scale})", (rng.standard_normal((rows, n)) * scale + offset).astype(dtype)
        if n > 4:
            x = (rng.standard_normal((4, n)) * 5).astype(dtype)
            x[:, ::3] = x[:, :1]
            x[:, 1::7] = -np.inf
            yield f"n={n} ties/-inf", x
    if not quick and dtype == np.float32:
        yield "n=16M", rng.standard_normal((1, 1 << 24)).astype(dtype)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1M and 16M rows")
    args = ap.parse_args(argv)
    print(f"normexp {normexp.__version__}; worst error against a longdouble reference")
    print(f"{'isa':>7} {'dtype':>8} {'softmax ULP':>12} {'log_softmax ULP':>16} {'logsumexp ULP':>14} {'near-0 abs err (eps)':>21}")
    for isa in normexp.available_isas():
        with normexp.use_isa(isa):
            for dtype in (np.float32, np.float64):
                worst = {"softmax": 0.0, "log_softmax": 0.0, "logsumexp": 0.0, "abs": 0.0}
                eps = float(np.finfo(dtype).eps)
                for name, x in cases(args.quick, dtype):
                    for op in ("softmax", "log_softmax", "logsumexp"):
                        got = getattr(normexp, op)(x)
                        ref = reference(x, op)
                        u = ulp(np.asarray(got), np.asarray(ref))
                        if op == "softmax":
                            worst[op] = max(worst[op], float(u.max()))
                        else:
                            # ULP where |result| >= 1/4 (well conditioned); absolute error near 0.
                            r64 = np.asarray(ref, np.float64)
                            big = np.abs(r64) >= 0.25
                            if big.any():
                                worst[op] = max(worst[op], float(u[big].max()))
                            small = ~big & np.isfinite(r64)
                            if small.any():
                                err = np.abs(np.asarray(got, np.float64)[small] - r64[small]) / eps
                                worst["abs"] = max(worst["abs"], float(err.max()))
                print(f"{isa:>7} {np.dtype(dtype).name:>8} {worst['softmax']:>12.0f} {worst['log_softmax']:>16.0f}"
                      f" {worst['logsumexp']:>14.0f} {worst['abs']:>21.2f}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
