"""Results are bit-identical for 1, 2, 3 and 4 threads on every path that runs in parallel.

Which thread runs which piece of work varies from call to call (cpp/src/threading.hpp: pieces are
claimed from a shared counter), so this pins that nothing a piece computes depends on it: every row of
reliability_cases.CASES at its "large" scale, plus the paths those rows do not reach: a single column
block whose rows are split between threads (the stored float32 softmax and the online path), in-cache
column blocks, a gathered row longer than a super-chunk, logsumexp_parts / normalize_with (the
normexp.dask statistics), sampling a long row with top_k (the threads split the row), cross-entropy
over a strided class axis, and merge_attention over many rows.

It runs in a fresh interpreter with OMP_NUM_THREADS=4, so four threads are available even on a 2-core
machine, and checks that set_num_threads(n) is honoured (get_num_threads() == n) for each count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    sys.path.insert(0, {here!r})
    import normexp
    import normexp.dask as nd
    from reliability_cases import CASES, run_case

    rng = np.random.default_rng(3)
    f32 = lambda *s: (rng.standard_normal(s) * 8).astype(np.float32)
    f64 = lambda *s: rng.standard_normal(s) * 8

    def parts(x, axis):
        return nd._block_parts(x, axis, 1.0, "", x.dtype.name)

    def normalize(x, axis, op):
        merged = nd._block_parts(x, axis, 1.0, "", x.dtype.name)
        return nd._block_normalize(x, merged, op, axis, 1.0, "", x.dtype.name, x.dtype)

    def merge_many(q, k, v):
        cut = k.shape[-2] // 2
        a = normexp.attention(q, k[..., :cut, :], v[..., :cut, :], return_lse=True)
        b = normexp.attention(q, k[..., cut:, :], v[..., cut:, :], return_lse=True)
        return normexp.merge_attention([a[0], b[0]], [a[1], b[1]])

    tall32, tall64, wide = f32(300_001, 24), f64(120_001, 16), f32(64, 5000)
    strided32, strided64 = f32(2 * 200_003)[::2], f64(2 * 150_001)[::-2]
    long_row, rows = f32(200_003), f32(48, 3001)
    ce_x = (rng.standard_normal((40, 2 * 3001)) * 3).astype(np.float32)[:, ::2]
    ce_y = rng.integers(0, 3001, 40)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 160, 32), (2, 4, 200, 32), (2, 4, 200, 64)))
    EXTRA = [
        ("softmax/f32/column-block-split", lambda: normexp.softmax(tall32, axis=0)),
        ("log_softmax/f32/column-block-split", lambda: normexp.log_softmax(tall32, axis=0)),
        ("logsumexp/f32/column-block-split", lambda: normexp.logsumexp(tall32, axis=0)),
        ("softmax/f64/column-block-split", lambda: normexp.softmax(tall64, axis=0)),
        ("log_softmax/f64/column-block-split", lambda: normexp.log_softmax(tall64, axis=0)),
        ("softmax/f32/columns-in-cache", lambda: normexp.softmax(wide, axis=0)),
        ("softmax/f32/strided-long-row", lambda: normexp.softmax(strided32)),
        ("log_softmax/f64/strided-long-row", lambda: normexp.log_softmax(strided64)),
        ("logsumexp/f32/strided-long-row", lambda: normexp.logsumexp(strided32)),
        ("logsumexp_parts/long-row", lambda: parts(long_row[None], 1)),
        ("logsumexp_parts/rows", lambda: parts(rows, 1)),
        ("logsumexp_parts/columns", lambda: parts(tall32, 0)),
        ("normalize_with/softmax/long-row", lambda: normalize(long_row[None], 1, "softmax")),
        ("normalize_with/log_softmax/columns", lambda: normalize(tall64, 0, "log_softmax")),
        ("sample/f32/long-row-top_k", lambda: normexp.sample(long_row, top_k=40, rng=5)),
        ("sample/f32/long-row-min_p", lambda: normexp.sample(long_row, min_p=0.01, rng=6)),
        ("cross_entropy/f32/strided-classes", lambda: normexp.cross_entropy(ce_x, ce_y, reduction="none")),
        ("merge_attention/many-rows", lambda: merge_many(q, k, v)),
    ]

    def digest(res):
        h = hashlib.sha256()
        for r in res if isinstance(res, tuple) else (res,):
            a = np.ascontiguousarray(np.asarray(r))
            h.update(f"{{a.dtype.str}}{{a.shape}}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    inputs = [(c, c.make(np.random.default_rng(11), "large")) for c in CASES]
    out = {{}}
    for n in (1, 2, 3, 4):
        normexp.set_num_threads(n)
        assert normexp.get_num_threads() == n, (n, normexp.get_num_threads())
        got = {{c.name: digest(run_case(c, a)) for c, a in inputs}}
        for name, f in EXTRA:
            got[name] = digest(f())
        out[n] = got
    print(json.dumps(out))
    """
)


def test_results_identical_for_1_to_4_threads(tmp_path):
    script = tmp_path / "thread_counts.py"
    script.write_text(SCRIPT.format(here=HERE))
    env = dict(os.environ, OMP_NUM_THREADS="4")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    one = out["1"]
    assert len(one) >= 40, sorted(one)
    for n in ("2", "3", "4"):
        differ = [name for name in one if out[n][name] != one[name]]
        assert not differ, f"{n} threads differ from 1 thread: {differ}"
