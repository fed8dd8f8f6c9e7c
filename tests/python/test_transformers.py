"""normexp as a Hugging Face transformers attention backend (normexp.integrations.transformers).

Small randomly initialised models of five families, built from their configs (no downloads), run with
attn_implementation="normexp" against transformers' own eager implementation: prefill logits within 1e-4
(relative to the largest logit) at every real token of a left-padded batch, identical greedy generations
past the sliding window with every decode step's logits within 1e-4 too, and a count of the native attention
calls proving normexp ran. Negative controls drop the softcap, the sinks or the mask and must fail the same
comparison. CI installs transformers (.ci/run); float16/bfloat16 models are in test_transformers_16bit.py.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import normexp.integrations.transformers as nt  # noqa: E402
from hf_models import FAMILIES, NEW_TOKENS, PADDING, PROMPT, WINDOW, batch, make_model, rel_err, run, spy_native_attention  # noqa: E402
from transformers.masking_utils import sdpa_mask  # noqa: E402

RTOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def registered():
    nt.register()


@pytest.fixture
def native_calls(monkeypatch):
    return spy_native_attention(monkeypatch)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_matches_eager(family, native_calls):
    model = make_model(family)
    ids, mask = batch()
    ref_logits, ref_seq, ref_steps = run(model, "eager", ids, mask)
    assert not native_calls
    logits, seq, steps = run(model, "normexp", ids, mask)
    layers = model.config.num_hidden_layers
    # One forward (every layer once), then generate: a prefill and NEW_TOKENS - 1 decode steps per layer.
    assert len(native_calls) == layers * (1 + NEW_TOKENS)
    assert [c["shapes"][0][2] for c in native_calls[layers:layers * 2]] == [PROMPT] * layers
    assert all(c["shapes"][0][2] == 1 for c in native_calls[layers * 2:])
    assert all(c["dtype"] == np.float32 for c in native_calls)
    keep = mask.bool()  # padded positions attend to nothing: their outputs are not compared
    assert rel_err(logits, ref_logits, keep) < RTOL
    assert torch.equal(seq, ref_seq)
    assert seq.shape[1] - (PROMPT - PADDING) > 2 * WINDOW  # the first row's sequence runs well past the window
    assert rel_err(steps, ref_steps) < RTOL


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_static_cache(family, native_calls):
    """A static cache (the one torch.compile'd decoding uses): keys beyond the prompt are empty slots. The
    unpadded prefill comes without a mask (Lq = 10 queries, Lkv = the cache's length), where normexp must be
    causal with the top-left alignment; the decode steps come with masks over the whole cache."""
    model = make_model(family)
    ids, mask = batch()
    ids, mask = ids[1:], mask[1:]  # the unpadded prompt
    out = {}
    for impl in ("eager", "normexp"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out[impl] = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                       cache_implementation="static", output_logits=True, return_dict_in_generate=True)
    assert torch.equal(out["normexp"].sequences, out["eager"].sequences)
    assert rel_err(torch.stack(out["normexp"].logits), torch.stack(out["eager"].logits)) < RTOL
    # The full-attention layer's prefill: no mask, more keys than queries.
    assert any(c["mask"] is None and c["shapes"][0][2] == PROMPT < c["shapes"][1][2] for c in native_calls)


def _variant(name, **changes):
    """Register normexp under another name with some arguments changed (the negative controls)."""

    def forward(module, q, k, v, attention_mask, **kwargs):
        if "mask" in changes:
            attention_mask = None
        kwargs.update({k_: v_ for k_, v_ in changes.items() if k_ != "mask"})
        return nt.attention_forward(module, q, k, v, attention_mask, **kwargs)

    transformers.AttentionInterface.register(name, forward)
    transformers.AttentionMaskInterface.register(name, sdpa_mask)
    return name


@pytest.mark.parametrize("family, variant", [
    ("gemma2", dict(softcap=None)),  # the softcap dropped
    ("gpt_oss", dict(s_aux=None)),  # the sinks dropped
    ("llama", dict(mask=None)),  # the padding mask dropped (the layer then only sees causality)
])
def test_negative_controls(family, variant):
    model = make_model(family)
    ids, mask = batch()
    ref, _, _ = run(model, "eager", ids, mask)
    got, _, _ = run(model, _variant(f"normexp_without_{next(iter(variant))}", **variant), ids, mask)
    if "mask" in variant:  # the unpadded row is right without a mask: only the padded one differs
        keep = mask.bool()
        assert rel_err(got[1], ref[1]) < RTOL
        assert rel_err(got[0], ref[0], keep[0]) > 1e-2
    else:
        assert rel_err(got, ref, mask.bool()) > 1e-2


def test_sliding_window_is_applied(native_calls):
    """The window changes Mistral's logits (so the comparison above is not vacuous for it), and the mask
    normexp is given holds it: a query sees at most WINDOW keys."""
    ids, mask = batch()
    windowed, _, _ = run(make_model("mistral"), "normexp", ids, mask)
    m = native_calls[0]["mask"]
    assert m.dtype == np.bool_ and m.shape[-2:] == (PROMPT, PROMPT)
    assert m.sum(axis=-1).max() == WINDOW
    full, _, _ = run(make_model("mistral", sliding_window=None), "normexp", ids, mask)
    assert rel_err(windowed, full, mask.bool()) > 1e-2


def test_zero_copy(native_calls):
    """q, k, v in transformers' layouts (a transposed projection, a cache tensor), the boolean mask and the
    output reach the kernels as views of the tensors' own memory."""
    b, lq, hq, hkv, d = 2, 5, 4, 2, 16
    q = torch.randn(b, lq, hq, d).transpose(1, 2)  # (B, Hq, Lq, D), strided like q_proj(x).view(...).transpose
    k = torch.randn(b, hkv, 7, d)
    v = torch.randn(b, hkv, 7, d)
    m = sdpa_mask(batch_size=b, q_length=lq, kv_length=7, q_offset=2, attention_mask=torch.ones(b, 7, dtype=torch.bool),
                  allow_is_causal_skip=False)
    out, weights = nt.attention_forward(torch.nn.Module(), q, k, v, m, scaling=0.25)
    assert weights is None and out.shape == (b, lq, hq, d) and out.is_contiguous()
    (call,) = native_calls
    assert call["ptrs"] == [q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr()]
    assert call["mask"].__array_interface__["data"][0] == m.data_ptr()
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.25, enable_gqa=True)
    assert rel_err(out, ref.transpose(1, 2)) < 1e-5


@pytest.mark.parametrize("lq, lk", [(5, 5), (3, 8), (1, 8)])
def test_is_causal_without_mask(lq, lk):
    """No mask: causal with torch's top-left alignment for several queries, every key for one (SDPA's rule)."""
    q, k, v = torch.randn(1, 4, lq, 8), torch.randn(1, 2, lk, 8), torch.randn(1, 2, lk, 8)
    out, _ = nt.attention_forward(torch.nn.Module(), q, k, v, None)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=lq > 1, enable_gqa=True)
    assert rel_err(out, ref.transpose(1, 2)) < 1e-5
    out, _ = nt.attention_forward(torch.nn.Module(), q, k, v, None, is_causal=False)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert rel_err(out, ref.transpose(1, 2)) < 1e-5


def test_torch_compile_fullgraph(native_calls):
    """The whole model under torch.compile(fullgraph=True): no graph break (fullgraph raises on one), the
    same logits as the uncompiled model, and normexp ran inside the compiled graph."""
    model = make_model("llama")
    ids, mask = batch()
    model.set_attn_implementation("normexp")
    with torch.no_grad():
        ref = model(ids, attention_mask=mask).logits
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        got = compiled(ids, attention_mask=mask).logits
    assert len(native_calls) == 2 * model.config.num_hidden_layers
    assert rel_err(got, ref, mask.bool()) < 1e-6


def test_torch_compile_decode_static_cache(native_calls):
    """generate() with a static cache and a compile config compiles the decode step (fullgraph=True: a graph
    break raises); the tokens are eager's and every step ran on normexp. transformers compiles only on
    accelerators unless the config's _compile_all_devices is set (its own switch for CPUs)."""
    model = make_model("gemma2")
    ids, mask = batch()
    config = transformers.CompileConfig(fullgraph=True, backend="aot_eager")
    config._compile_all_devices = True
    torch._dynamo.utils.counters.clear()
    seqs = {}
    for impl in ("normexp", "eager"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            seqs[impl] = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                        cache_implementation="static", compile_config=config if impl == "normexp" else None)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the decode step was compiled
    assert torch.equal(seqs["normexp"], seqs["eager"])
    assert len(native_calls) == model.config.num_hidden_layers * 6  # the prefill and 5 decode steps


def test_custom_op_opcheck():
    """torch.library.opcheck: the schema, the fake implementation and the autograd registration agree with
    the real one."""
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    m = torch.rand(2, 1, 3, 5) > 0.3
    sinks = torch.randn(4)
    for args in [(q, k, v, None, None, 0.3, 0.0, True), (q, k, v, m, sinks, 0.3, 5.0, False)]:
        torch.library.opcheck(torch.ops.normexp.attention.default, args)


def test_eager_calls_skip_the_dispatcher(monkeypatch):
    """attention_forward calls the implementation directly where the op's dispatcher has nothing to do (plain
    tensors, no autograd to record, not traced) and goes through torch.ops.normexp.attention otherwise: the
    same bits either way."""
    through_op = []
    real = torch.ops.normexp.attention

    class Ops:
        @staticmethod
        def attention(*args):
            through_op.append(1)
            return real(*args)

    monkeypatch.setattr(torch.ops, "normexp", Ops)
    q = torch.randn(1, 4, 3, 8)
    k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    sinks = torch.nn.Parameter(torch.randn(4))
    with torch.no_grad():
        direct, _ = nt.attention_forward(torch.nn.Module(), q, k, v, None, s_aux=sinks)
    assert not through_op
    recorded, _ = nt.attention_forward(torch.nn.Module(), q, k, v, None, s_aux=sinks)  # the sinks require grad
    assert through_op == [1] and recorded.grad_fn is not None
    assert torch.equal(direct, recorded.detach())


def test_backward_and_dropout_refused():
    q = torch.randn(1, 2, 3, 8, requires_grad=True)
    k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    out, _ = nt.attention_forward(torch.nn.Module(), q, k, v, None)  # the forward works
    with pytest.raises(RuntimeError, match="no backward pass"):
        out.sum().backward()
    with pytest.raises(ValueError, match="dropout"):
        nt.attention_forward(torch.nn.Module(), q, k, v, None, dropout=0.1)
    model = make_model("llama", attention_dropout=0.1)
    model.set_attn_implementation("normexp")
    model.train()
    ids, mask = batch()
    with pytest.raises(ValueError, match="model.eval"):
        model(ids, attention_mask=mask)


def test_unsupported_arguments_refused():
    q = torch.randn(1, 2, 3, 8)
    with pytest.raises(ValueError, match="position_bias"):
        nt.attention_forward(torch.nn.Module(), q, q, q, None, position_bias=torch.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="cache: a paged KV cache"):
        nt.attention_forward(torch.nn.Module(), q, q, q, None, cache=object())
    out, _ = nt.attention_forward(torch.nn.Module(), q, q, q, None, cache=None, position_bias=None)
    assert out.shape == (1, 3, 2, 8)


def test_register_arguments():
    assert nt.register() == "normexp"
    assert transformers.AttentionInterface._global_mapping["normexp"] is nt.attention_forward
    assert transformers.AttentionMaskInterface._global_mapping["normexp"] is sdpa_mask
    with pytest.raises(TypeError, match="name must be a string"):
        nt.register(3)
    for bad in ["", "sdpa", "eager", "org/kernel", "paged|normexp"]:
        with pytest.raises(ValueError, match="cannot be registered"):
            nt.register(bad)


def test_importing_normexp_imports_neither_torch_nor_transformers():
    code = ("import sys, normexp, normexp.integrations; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_bench_generate(tmp_path, capsys):
    """python -m normexp bench generate on a tiny model: a row per implementation, normexp's greedy tokens
    equal to eager's, the JSON written; bad arguments are refused by name."""
    import json

    from normexp.bench import cli

    path = tmp_path / "gen.json"
    argv = ["generate", "--hidden", "64", "--layers", "1", "--heads", "4", "--kv-heads", "2", "--vocab", "256",
            "--prompt", "8", "--new-tokens", "3", "--repeat", "1", "--threads", "1", "--json", str(path)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "prefill tok/s" in text and "decode tok/s" in text
    rows = json.loads(path.read_text())["rows"]
    assert [r["impl"] for r in rows] == ["normexp", "sdpa", "eager"]
    assert all(r["same_tokens_as_eager"] and r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 for r in rows)
    for bad, what in [(["--impls", "flash"], "--impls"), (["--prompt", "0"], "--prompt"),
                      (["--heads", "3"], "--hidden"), (["--dtype", "int8"], "--dtype")]:
        with pytest.raises(SystemExit):
            cli.main(["generate"] + bad)
        assert what in capsys.readouterr().err
