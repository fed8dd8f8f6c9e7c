"""normexp.sample's serving controls: logit_bias, prev_tokens with the repetition / presence / frequency
penalties, per-row parameters and return_logprobs.

Each behaviour is checked against ``reference``, a float64 NumPy statement of the documented rules (bias,
then penalties, then temperature, top-k, top-p, min-p). Greedy cases are built so that each penalty
changes the answer; drawn frequencies are compared with the reference distribution by a chi-square test
at a fixed seed (deterministic: the tokens are identical on every ISA and thread count, tested here too),
and negative controls show that the same counts reject the distribution a wrong rule would give.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from scipy import stats

import normexp

ALPHA = 1e-3


# ---- the float64 reference of the rules ---------------------------------------------------------------
def controlled_scores(logits, bias=None, prev=None, rep=1.0, pres=0.0, freq=0.0):
    """One row's scores after logit_bias and the penalties, as the docstring states them: the bias added in
    the logits' dtype, each seen token's score changed in float64 and rounded back to that dtype."""
    x = np.array(logits)
    if bias is not None:
        x = (x + np.asarray(bias, dtype=x.dtype)).astype(x.dtype)
    if prev is not None:
        p = np.asarray(prev)
        counts = np.bincount(p[p >= 0], minlength=x.size).astype(np.float64)
        seen = counts > 0
        v = x.astype(np.float64)
        if rep != 1:
            v = np.where(v > 0, v / rep, v * rep)
        v = v - (pres + freq * counts)
        x = np.where(seen, v.astype(x.dtype), x)
    return x


def reference(logits, temperature=1.0, top_k=None, top_p=None, min_p=None, **controls):
    """(probabilities, kept mask) of one row in float64; temperature 0: a one-hot of the first maximum."""
    x = controlled_scores(logits, **controls).astype(np.float64)
    if temperature == 0:
        p = np.zeros(x.size)
        p[int(np.argmax(x))] = 1.0
        return p, p > 0
    w = np.exp((x - x.max()) / temperature)
    keep = np.ones(x.size, bool)
    if top_k and top_k < x.size:
        keep &= x >= np.sort(x)[::-1][top_k - 1]
    if top_p is not None and top_p < 1:
        q = np.where(keep, w, 0.0)
        q = q / q.sum()
        order = np.argsort(-q, kind="stable")
        n_keep = int(np.searchsorted(np.cumsum(q[order]), top_p * (1 - 1e-12))) + 1
        keep &= q >= q[order][n_keep - 1]
    if min_p:
        keep &= w >= min_p
    p = np.where(keep, w, 0.0)
    return p / p.sum(), keep


def chi_square_p(counts, probs):
    """p-value of a chi-square goodness-of-fit test, the categories of expected count < 5 merged."""
    exp = probs * counts.sum()
    order = np.argsort(exp)
    c, e = counts[order].astype(float), exp[order]
    k = int((np.cumsum(e) < 5).sum())
    if k:
        c = np.concatenate([[c[: k + 1].sum()], c[k + 1 :]])
        e = np.concatenate([[e[: k + 1].sum()], e[k + 1 :]])
    return stats.chisquare(c, e).pvalue


def row(seed, v=40, scale=2.0, dtype=np.float64):
    return (np.random.default_rng(seed).standard_normal(v) * scale).astype(dtype)


def repeat(x, n):
    return np.broadcast_to(x, (n,) + np.shape(x))


# ---- greedy: each control changes the answer -----------------------------------------------------------
GREEDY = [
    # (logits, controls, answer without the controls, answer with them)
    ([3.0, 2.9, 0.0], dict(prev=[0], rep=1.1), 0, 1),  # 3 / 1.1 = 2.73 < 2.9
    ([-1.0, -1.05, -3.0], dict(prev=[0], rep=1.1), 0, 1),  # negative: -1 * 1.1 = -1.1 < -1.05
    ([2.0, 2.1, 0.0], dict(prev=[0], rep=0.9), 1, 0),  # r < 1 raises a seen token: 2 / 0.9 = 2.22
    ([3.0, 2.5, 0.0], dict(prev=[0], pres=0.6), 0, 1),
    ([3.0, 2.5, 0.0], dict(prev=[0], pres=0.4), 0, 0),
    ([3.0, 2.5, 0.0], dict(prev=[0, 0, 0], freq=0.2), 0, 1),  # counted: 3 - 3 * 0.2 = 2.4
    ([3.0, 2.5, 0.0], dict(prev=[0, -1, -1], freq=0.2), 0, 0),  # -1 is padding: 3 - 0.2 = 2.8
    ([3.0, 2.5, 0.0], dict(prev=[0, 0], pres=0.3, freq=0.15), 0, 1),  # 3 - (0.3 + 2 * 0.15) = 2.4
    ([1.0, 0.5, 0.2], dict(bias=[0.0, 0.0, 1.0]), 0, 2),
    ([1.0, 0.5, 0.2], dict(bias=[-np.inf, 0.0, 0.0]), 0, 1),  # -inf bans a token
    ([1.0, 0.5, 0.2], dict(bias=[0.0, 0.3, 0.0], prev=[1], rep=2.0), 0, 0),  # bias first: (0.5 + 0.3) / 2
    ([1.0, 0.5, 0.2], dict(bias=[0.0, 0.6, 0.0], prev=[0], pres=0.05), 0, 1),  # 1.1 > 0.95
]


def _kwargs(controls):
    names = {"bias": "logit_bias", "prev": "prev_tokens", "rep": "repetition_penalty", "pres": "presence_penalty",
             "freq": "frequency_penalty"}
    return {names[k]: v for k, v in controls.items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("logits,controls,before,after", GREEDY)
def test_greedy_answer_changes_with_each_control(logits, controls, before, after, dtype):
    x = np.array(logits, dtype)
    assert normexp.sample(x, temperature=0) == before
    assert int(np.argmax(controlled_scores(x, **controls))) == after  # the reference agrees
    assert normexp.sample(x, temperature=0, **_kwargs(controls)) == after


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_greedy_matches_the_reference_on_random_rows(dtype, isa):
    g = np.random.default_rng(5)
    rows, v = 300, 257
    x = (g.standard_normal((rows, v)) * 2).astype(dtype)
    prev = g.integers(-1, 20, (rows, 12))  # small ids: the penalized tokens compete for the maximum
    x[:, :20] += 2
    bias = g.standard_normal(v).astype(dtype) * 0.5
    rep, pres, freq = g.uniform(0.8, 1.6, rows), g.uniform(0, 1, rows), g.uniform(0, 0.5, rows)
    got = normexp.sample(x, temperature=0, logit_bias=bias, prev_tokens=prev, repetition_penalty=rep,
                         presence_penalty=pres, frequency_penalty=freq)
    want = [int(np.argmax(controlled_scores(x[r], bias, prev[r], rep[r], pres[r], freq[r]))) for r in range(rows)]
    np.testing.assert_array_equal(got, want)
    plain = normexp.sample(x, temperature=0)
    assert (plain != got).sum() > rows // 10  # the controls did change many answers (not a vacuous check)


# ---- the drawn distribution --------------------------------------------------------------------------
DIST_CASES = [
    dict(prev=[0, 1, 1, 5, -1], rep=1.5),
    dict(prev=[0, 1, 1, 5, 5, 5], pres=0.7, freq=0.3, temperature=0.8),
    dict(bias=np.linspace(-1, 1, 40), prev=[4, 1, 22], rep=1.3, pres=0.2, top_k=12),
    dict(bias=np.linspace(1, -1, 40), prev=[0, 0, 7], freq=0.4, top_p=0.85, temperature=1.4),
    dict(prev=[1, 2, 3, 4], rep=0.8, min_p=0.05),
    dict(bias=np.where(np.arange(40) % 3 == 0, -np.inf, 0.0), prev=[1, 4], pres=1.0, top_k=20, top_p=0.9, min_p=0.02),
]

WRONG = {  # a rule broken the way an implementation could break it, per control
    "rep": lambda c: {**c, "rep": 1.0},
    "pres": lambda c: {**c, "pres": 0.0},
    "freq": lambda c: {**c, "freq": 0.0},
    "bias": lambda c: {**c, "bias": None},
}


def _draws(x, n, seed, **controls):
    c = dict(controls)
    kw = {k: c.pop(k) for k in ("temperature", "top_k", "top_p", "min_p") if k in c}
    if "prev" in c:
        c["prev"] = repeat(np.asarray(c["prev"]), n)
    return normexp.sample(repeat(x, n), rng=seed, **kw, **_kwargs(c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("controls", DIST_CASES, ids=[str(i) for i in range(len(DIST_CASES))])
def test_drawn_frequencies_follow_the_reference(controls, dtype):
    x = row(1, dtype=dtype)
    x[:8] += 1.5  # the penalized tokens carry probability, so a rule left out is visible
    n = 40_000
    tok = _draws(x, n, 123, **controls)
    p, keep = reference(x, **controls)
    counts = np.bincount(tok, minlength=x.size)
    assert counts[~keep].sum() == 0, "a token outside the kept set was drawn"
    assert chi_square_p(counts[keep], p[keep]) > ALPHA
    # Negative controls: the same counts reject the distribution of each rule left out.
    for name, wrong in WRONG.items():
        if name in controls and controls[name] is not None and not (name == "rep" and controls[name] == 1):
            q, _ = reference(x, **wrong(controls))
            bad = (counts > 0) & (q == 0)  # drawn where the wrong rule allows nothing: rejected outright
            assert bad.any() or chi_square_p(counts[q > 0], q[q > 0]) < 1e-6, name


def test_chi_square_rejects_a_slightly_wrong_penalty():
    """Power of the test above: a 10% error in one penalty is rejected at these sample sizes."""
    x = row(2)
    x[:8] += 1.5
    tok = _draws(x, 40_000, 9, prev=[4, 4, 5], freq=0.5, pres=0.5)
    counts = np.bincount(tok, minlength=x.size)
    p, _ = reference(x, prev=[4, 4, 5], freq=0.5, pres=0.5)
    q, _ = reference(x, prev=[4, 4, 5], freq=0.55, pres=0.5)
    assert chi_square_p(counts, p) > ALPHA
    assert chi_square_p(counts, q) < 1e-6


# ---- per-row parameters ------------------------------------------------------------------------------
def test_per_row_parameters_equal_the_scalar_calls():
    """Row r of a call with per-row arrays is what a call with row r's values as scalars draws (the same
    uniform per row: the Generator gives one to every row as soon as one row samples)."""
    g = np.random.default_rng(3)
    rows, v = 12, 300
    x = (g.standard_normal((rows, v)) * 2).astype(np.float32)
    prev = g.integers(-1, v, (rows, 30))
    params = [
        dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.2, presence_penalty=0.0, frequency_penalty=0.1),
        dict(temperature=0.7, top_k=5, top_p=1.0, min_p=0.0, repetition_penalty=1.0, presence_penalty=0.5, frequency_penalty=0.0),
        dict(temperature=1.3, top_k=0, top_p=0.8, min_p=0.0, repetition_penalty=1.5, presence_penalty=0.0, frequency_penalty=0.2),
        dict(temperature=1.0, top_k=2000, top_p=1.0, min_p=0.05, repetition_penalty=0.9, presence_penalty=0.1, frequency_penalty=0.0),
    ]
    which = np.arange(rows) % len(params)
    arrays = {k: np.array([params[i][k] for i in which]) for k in params[0]}
    got, lp = normexp.sample(x, prev_tokens=prev, rng=7, return_logprobs=True, **arrays)
    for i, kw in enumerate(params):
        # temperature 0 consumes no uniforms alone, which a greedy row does not need anyway
        want, wlp = normexp.sample(x, prev_tokens=prev, rng=7, return_logprobs=True, **kw)
        np.testing.assert_array_equal(got[which == i], want[which == i])
        np.testing.assert_array_equal(lp[which == i], wlp[which == i])
    assert np.all(lp[which == 0] == 0)  # greedy rows


def test_per_row_distributions_mixed_with_greedy_rows():
    x = row(4)
    n = 30_000
    temps = np.tile([0.0, 0.6, 1.7], n)
    tops = np.tile([0, 0, 10], n)
    tok = normexp.sample(repeat(x, 3 * n), temperature=temps, top_k=tops, rng=11)
    assert np.all(tok[0::3] == np.argmax(x))
    for j, (t, k) in ((1, (0.6, 0)), (2, (1.7, 10))):
        p, keep = reference(x, temperature=t, top_k=k)
        counts = np.bincount(tok[j::3], minlength=x.size)
        assert counts[~keep].sum() == 0
        assert chi_square_p(counts[keep], p[keep]) > ALPHA
        other, _ = reference(x, temperature=1.7 if t == 0.6 else 0.6, top_k=k)  # the other row's parameters
        assert chi_square_p(counts[keep], other[keep] / other[keep].sum()) < 1e-6


def test_per_row_arrays_follow_the_batch_shape():
    g = np.random.default_rng(8)
    x = g.standard_normal((2, 3, 50))
    t = np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 1.0]])
    prev = g.integers(-1, 50, (2, 3, 4))
    got = normexp.sample(x, temperature=t, prev_tokens=prev, presence_penalty=np.full((2, 3), 0.5), rng=1)
    flat = normexp.sample(x.reshape(6, 50), temperature=t.reshape(6), prev_tokens=prev.reshape(6, 4),
                          presence_penalty=np.full(6, 0.5), rng=1)
    np.testing.assert_array_equal(got.reshape(6), flat)
    with pytest.raises(ValueError, match=r"temperature has shape \(6,\).*\(2, 3\)"):
        normexp.sample(x, temperature=t.reshape(6), rng=1)


def test_top_k_zero_means_no_cut():
    x = row(6)
    a = normexp.sample(repeat(x, 500), top_k=0, rng=4)
    np.testing.assert_array_equal(a, normexp.sample(repeat(x, 500), rng=4))
    np.testing.assert_array_equal(a, normexp.sample(repeat(x, 500), top_k=np.zeros(500, np.int64), rng=4))


# ---- logprobs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.7, top_k=9), dict(top_p=0.8), dict(min_p=0.1, temperature=1.5),
                                dict(prev=[4, 4, 5], rep=1.4, pres=0.2, freq=0.1, bias=np.linspace(0, 1, 40), top_p=0.9)])
def test_logprobs_are_the_reference_log_probabilities(kw, dtype, isa):
    x = row(3, dtype=dtype)
    n = 400
    c = dict(kw)
    opts = {k: c.pop(k) for k in ("temperature", "top_k", "top_p", "min_p") if k in c}
    if "prev" in c:
        c["prev"] = repeat(np.asarray(c["prev"]), n)
    tok, lp = normexp.sample(repeat(x, n), rng=2, return_logprobs=True, **opts, **_kwargs(c))
    assert lp.dtype == dtype and lp.shape == (n,)
    p, _ = reference(x, **kw)
    np.testing.assert_allclose(lp, np.log(p[tok]), rtol=0, atol=2e-5)


def test_logprobs_of_greedy_rows_and_single_candidates_are_zero():
    x = row(5)
    tok, lp = normexp.sample(np.stack([x, x, x]), temperature=np.array([0.0, 1.0, 0.0]), top_k=np.array([0, 1, 3]),
                             rng=1, return_logprobs=True)
    assert tok[0] == tok[1] == tok[2] == np.argmax(x)
    np.testing.assert_array_equal(lp, [0.0, 0.0, 0.0])
    t1, l1 = normexp.sample(x, return_logprobs=True, rng=3)  # 1-d logits: two NumPy scalars
    assert np.ndim(t1) == 0 and np.ndim(l1) == 0 and l1 < 0


def test_logprobs_of_the_block_path_long_rows():
    """A vocabulary of 5000 without top_k takes the block inverse CDF; top_p the stored-weights list."""
    g = np.random.default_rng(9)
    x = g.standard_normal(5000) * 1.5
    x[:10] += 5
    for kw in (dict(), dict(top_p=0.7), dict(top_k=4500, min_p=0.01)):
        tok, lp = normexp.sample(repeat(x, 200), rng=5, return_logprobs=True, **kw)
        p, _ = reference(x, **kw)
        np.testing.assert_allclose(lp, np.log(p[tok]), rtol=0, atol=2e-5)


# ---- determinism: every ISA and thread count -----------------------------------------------------------
def _controls_batch(seed=12):
    g = np.random.default_rng(seed)
    x = (g.standard_normal((64, 5003)) * 3).astype(np.float32)
    prev = g.integers(-1, 5003, (64, 40))
    kw = dict(logit_bias=(g.standard_normal(5003) * 0.3).astype(np.float32), prev_tokens=prev,
              repetition_penalty=g.uniform(0.9, 1.5, 64), presence_penalty=0.3, frequency_penalty=g.uniform(0, 0.4, 64),
              temperature=np.where(np.arange(64) % 5 == 0, 0.0, 0.9), top_k=np.arange(64) % 3 * 40,
              top_p=np.where(np.arange(64) % 2 == 0, 1.0, 0.9), min_p=0.01)
    return x, kw


def test_every_isa_draws_the_same_tokens():
    x, kw = _controls_batch()
    results = {}
    for name in normexp.available_isas():
        with normexp.use_isa(name):
            results[name] = normexp.sample(x, rng=3, return_logprobs=True, **kw)
    ref_tok, ref_lp = results["scalar"]
    for name, (tok, lp) in results.items():
        np.testing.assert_array_equal(tok, ref_tok, err_msg=name)
        np.testing.assert_array_equal(lp, ref_lp, err_msg=name)


THREAD_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import numpy as np
    sys.path.insert(0, {here!r})
    import normexp
    from test_sampler_controls import _controls_batch

    x, kw = _controls_batch()
    g = np.random.default_rng(1)
    long_row = (g.standard_normal(70_001) * 4).astype(np.float32)  # one row split over the threads
    long_bias = (g.standard_normal(70_001)).astype(np.float32)
    long_prev = g.integers(-1, 70_001, 500)
    out = {{}}
    for n in (1, 2, 3, 4):
        normexp.set_num_threads(n)
        assert normexp.get_num_threads() == n
        a = normexp.sample(x, rng=3, return_logprobs=True, **kw)
        b = [normexp.sample(long_row, logit_bias=long_bias, prev_tokens=long_prev, repetition_penalty=1.3,
                            temperature=t, top_k=k, top_p=p, rng=s, return_logprobs=True)
             for s, (t, k, p) in enumerate([(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 50, 0.9), (1.2, 0, 0.8)])]
        c = [normexp.sample(long_row, prev_tokens=long_prev, repetition_penalty=1.3, frequency_penalty=0.2,
                            temperature=t, top_k=k, top_p=p, rng=s, return_logprobs=True)
             for s, (t, k, p) in enumerate([(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 50, 0.9), (1.2, 0, 0.8)])]
        h = hashlib.sha256(a[0].tobytes() + a[1].tobytes() + np.array(b + c).tobytes()).hexdigest()
        out[n] = h
    print(json.dumps(out))
    """
)


def test_thread_counts_draw_the_same_tokens():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_NUM_THREADS="4")
    r = subprocess.run([sys.executable, "-c", THREAD_SCRIPT.format(here=here)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    hashes = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(set(hashes.values())) == 1, hashes


# ---- the caller's memory ---------------------------------------------------------------------------------
def test_logits_are_neither_written_nor_copied():
    """Bias and penalties are applied in the library's per-thread row buffers: the logits stay unchanged,
    and the call allocates nothing near their size in Python (tracemalloc sees NumPy's allocations)."""
    g = np.random.default_rng(2)
    x = (g.standard_normal((64, 32_000)) * 2).astype(np.float32)  # 8 MiB
    bias = np.zeros(32_000, np.float32)
    bias[::7] = -1.0
    prev = g.integers(-1, 32_000, (64, 256))
    before = x.copy()
    kw = dict(logit_bias=bias, prev_tokens=prev, repetition_penalty=1.2, frequency_penalty=0.3, top_p=0.9,
              temperature=np.full(64, 0.8), rng=1, return_logprobs=True)
    normexp.sample(x, **kw)  # warm up (imports, caches)
    tracemalloc.start()
    try:
        normexp.sample(x, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(x, before)
    assert peak < x.nbytes // 16, peak  # prev_tokens (128 KiB) and the per-row arrays; not the logits
    # Negative control: the measurement does see a copy of the logits.
    tracemalloc.start()
    try:
        normexp.sample(x + 0, **kw)
        _, peak_copy = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_copy >= x.nbytes


# ---- errors ------------------------------------------------------------------------------------------
BAD = [
    (dict(repetition_penalty=0.0), ValueError, "repetition_penalty"),
    (dict(repetition_penalty=np.array([1.0, -1.0, 1.0])), ValueError, r"repetition_penalty\[1\]"),
    (dict(presence_penalty=-0.5), ValueError, "presence_penalty"),
    (dict(frequency_penalty=np.array([0.0, 0.0, np.nan])), ValueError, r"frequency_penalty\[2\]"),
    (dict(top_p=np.array([0.5, 1.5, 1.0])), ValueError, r"top_p\[1\]"),
    (dict(top_p=np.array([0.5, 1.0])), ValueError, r"top_p has shape \(2,\)"),
    (dict(temperature=np.array([1.0, np.inf, 0.0])), ValueError, r"temperature\[1\]"),
    (dict(top_k=np.array([1, -3, 0])), ValueError, r"top_k\[1\]"),
    (dict(top_k=-1), ValueError, "top_k"),
    (dict(min_p=np.array([True, False, True])), TypeError, "min_p"),
    (dict(prev_tokens=np.array([[0, 1], [2, 30], [-1, -1]]), repetition_penalty=1.1), IndexError, "row 1"),
    (dict(prev_tokens=np.array([[0, 1], [2, 3], [-5, -1]])), IndexError, "row 2"),
    (dict(prev_tokens=np.array([0, 1])), ValueError, "prev_tokens"),
    (dict(prev_tokens=np.array([[0.0, 1.0]] * 3)), TypeError, "prev_tokens"),
    (dict(logit_bias=np.zeros((2, 30))), ValueError, "logit_bias"),
    (dict(logit_bias=np.array(["a"] * 30)), TypeError, "logit_bias"),
    (dict(logit_bias=np.r_[np.zeros(29), np.nan]), ValueError, "logit_bias"),
    (dict(logit_bias=np.r_[np.zeros(29), np.inf]), ValueError, r"\+inf"),
    (dict(logit_bias=np.full(30, -np.inf)), ValueError, "-inf"),
    (dict(return_logprobs=2), TypeError, "return_logprobs"),
]


@pytest.mark.parametrize("kw,exc,match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_parameters_are_refused_by_name_before_any_draw(kw, exc, match):
    x = row(1, v=30).reshape(1, 30).repeat(3, 0)
    gen = np.random.default_rng(0)
    state = gen.bit_generator.state
    with pytest.raises(exc, match=match):
        normexp.sample(x, rng=gen, **kw)
    # A bias that bans every token of a row is found with the rows (C++); NaN / +inf biases before any draw.
    bans_all = isinstance(kw.get("logit_bias"), np.ndarray) and kw["logit_bias"].dtype.kind == "f" and bool(
        np.isneginf(kw["logit_bias"]).all())
    if not bans_all:
        assert gen.bit_generator.state == state, "randomness was drawn before the error"


def test_native_library_checks_per_row_options_too():
    """The C++ driver refuses what Python would (a second line for C++ callers): reached through _core."""
    x = np.zeros((2, 4))
    out = np.empty(2, np.int64)
    with pytest.raises(ValueError, match=r"top_ps\[1\]"):
        normexp._core.sample(x, np.zeros(2), out, 1.0, 0, 1.0, 0.0, top_ps=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"prev_tokens row 0 holds token 4"):
        normexp._core.sample(x, np.zeros(2), out, 1.0, 0, 1.0, 0.0, prev_tokens=np.array([[4], [0]]))
    with pytest.raises(ValueError, match="logit_bias"):
        normexp._core.sample(x, np.zeros(2), out, 1.0, 0, 1.0, 0.0, logit_bias=np.zeros(4, np.float32))


# ---- other libraries' arrays ----------------------------------------------------------------------------
def test_torch_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(4)
    x = (g.standard_normal((6, 100)) * 2).astype(np.float32)
    bias = g.standard_normal(100).astype(np.float32)
    prev = g.integers(-1, 100, (6, 9))
    temps = np.array([0.0, 1.0, 0.7, 0.0, 1.2, 0.9])
    kw = dict(repetition_penalty=1.3, presence_penalty=0.2, top_k=np.array([0, 5, 0, 0, 20, 3]), rng=5,
              return_logprobs=True)
    want_tok, want_lp = normexp.sample(x, logit_bias=bias, prev_tokens=prev, temperature=temps, **kw)
    tok, lp = normexp.sample(torch.from_numpy(x), logit_bias=torch.from_numpy(bias), prev_tokens=torch.from_numpy(prev),
                             temperature=torch.from_numpy(temps), **{**kw, "top_k": torch.tensor([0, 5, 0, 0, 20, 3])})
    assert isinstance(tok, torch.Tensor) and isinstance(lp, torch.Tensor)
    assert tok.dtype == torch.int64 and lp.dtype == torch.float32
    np.testing.assert_array_equal(tok.numpy(), want_tok)
    np.testing.assert_array_equal(lp.numpy(), want_lp)


# ---- penalties without a bias: patched blocks instead of a copied row --------------------------------------
SPARSE_CASES = [dict(temperature=0), dict(), dict(top_k=40), dict(top_k=5000), dict(top_p=0.8), dict(min_p=0.02),
                dict(top_k=60, top_p=0.9, temperature=0.7)]


@pytest.mark.parametrize("spread", ["few blocks", "many blocks"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", SPARSE_CASES, ids=[str(c) for c in SPARSE_CASES])
def test_penalties_alone_draw_what_the_built_row_draws(kw, dtype, spread, isa):
    """A row changed by penalties alone is read in place with its changed 64-entry blocks patched (or, when
    they touch more than 1/16 of the blocks, copied once); with a bias (zeros here) it is built in a row
    buffer. All must give the same tokens and logprobs bit for bit, on every path: seen tokens at block
    edges, clustered, at the row's ends, and the row's maximum."""
    g = np.random.default_rng(21)
    rows, v = 24, 9001  # not a multiple of 64: the last block is short
    x = (g.standard_normal((rows, v)) * 3).astype(dtype)
    prev = np.full((rows, 300), -1)
    if spread == "many blocks":
        prev[:] = g.integers(-1, v, (rows, 300))
    prev[:, :8] = [0, 63, 64, 127, v - 1, v - 2, 8960, 8961]
    prev[:, 8] = np.argmax(x, axis=1)
    prev[::3, 9:40] = np.arange(31) + 1000  # a dense cluster over a block edge
    pen = dict(prev_tokens=prev, repetition_penalty=np.linspace(0.7, 2.0, rows), presence_penalty=0.4,
               frequency_penalty=0.1)
    a = normexp.sample(x, rng=6, return_logprobs=True, **pen, **kw)
    b = normexp.sample(x, rng=6, return_logprobs=True, logit_bias=np.zeros(v, dtype), **pen, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    plain = normexp.sample(x, rng=6, **kw)
    assert (plain != a[0]).any()  # the penalties did change tokens
