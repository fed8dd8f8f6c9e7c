"""float16 and bfloat16 models on the normexp transformers backend: the 16-bit tensors reach the kernels as
they are (no float32 copy of q, k, v or the KV cache), and the results are as close to the float32 model as
transformers' own 16-bit eager attention is.

These need normexp.attention to take float16/bfloat16 q, k and v (docs/attention.md); the reference is the
float32 eager model with the same (16-bit) weights, so the test measures the 16-bit error of each
implementation rather than comparing one rounding with another.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("ml_dtypes")  # NumPy's view of bfloat16 tensors

import normexp.integrations.transformers as nt  # noqa: E402
from hf_models import NEW_TOKENS, PROMPT, batch, make_model, rel_err, run, spy_native_attention  # noqa: E402

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@pytest.fixture(scope="module", autouse=True)
def registered():
    nt.register()


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt_oss"])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_16bit_model(family, dtype, monkeypatch):
    dt = DTYPES[dtype]
    model = make_model(family, dtype=dt)
    ids, mask = batch()
    keep = mask.bool()
    eager, _, _ = run(model, "eager", ids, mask)
    calls = spy_native_attention(monkeypatch)
    logits, seq, steps = run(model, "normexp", ids, mask)

    layers = model.config.num_hidden_layers
    assert len(calls) == layers * (1 + NEW_TOKENS)
    # The kernels read the model's own 16-bit tensors: q and the KV cache in its dtype, nothing widened.
    assert all(c["dtype"].itemsize == 2 and c["kv_dtype"].itemsize == 2 for c in calls)
    assert all(str(c["dtype"]) == dtype for c in calls)
    assert logits.dtype == dt

    # The same weights in float32, eager: the reference both 16-bit runs are measured against.
    ref_model = make_model(family).to(dt).to(torch.float32)  # the 16-bit weights, exactly, in float32
    ref_model.set_attn_implementation("eager")
    with torch.no_grad():
        ref = ref_model(ids, attention_mask=mask).logits
        # The float32 model's logits along normexp's own generation (teacher forcing): each decode step's
        # logits from the 16-bit KV cache against the float32 logits at the same position; eager's 16-bit
        # logits at those positions measure the 16-bit error of the model itself.
        full_mask = torch.cat([mask, torch.ones(2, NEW_TOKENS, dtype=mask.dtype)], 1)
        ref_steps = ref_model(seq, attention_mask=full_mask).logits[:, PROMPT - 1:-1].transpose(0, 1)
        model.set_attn_implementation("eager")
        eager_steps = model(seq, attention_mask=full_mask).logits[:, PROMPT - 1:-1].transpose(0, 1)
    # normexp rounds once per output (float32 arithmetic inside); eager rounds its scores and weights to 16
    # bits as well. The rest of the model (projections, norms, the MoE router) adds its own 16-bit noise to
    # both, so the bound is "no worse than transformers' own 16-bit attention", with room for that noise.
    def bound(eager_err: float) -> float:
        return 2 * eager_err + 1e-3

    assert rel_err(logits, ref, keep) <= bound(rel_err(eager, ref, keep))
    assert rel_err(steps, ref_steps) <= bound(rel_err(eager_steps, ref_steps))
    # Greedy decisions the float32 model agrees with, within that error of the logits.
    top = ref_steps.max(-1).values
    chosen = ref_steps.gather(-1, seq[:, PROMPT:].T.unsqueeze(-1)).squeeze(-1)
    assert float((top - chosen).max()) <= bound(rel_err(eager_steps, ref_steps)) * float(ref_steps.abs().max())


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_16bit_zero_copy(dtype, monkeypatch):
    """Strided 16-bit q (a transposed projection) and cache tensors are read in place, and the 16-bit
    output is written in place: the kernels see the tensors' own memory."""
    dt = DTYPES[dtype]
    calls = spy_native_attention(monkeypatch)
    q = torch.randn(2, 5, 4, 16).to(dt).transpose(1, 2)
    k = torch.randn(2, 2, 7, 16).to(dt)
    v = torch.randn(2, 2, 7, 16).to(dt)
    out, _ = nt.attention_forward(torch.nn.Module(), q, k, v, None, scaling=0.25)
    assert out.dtype == dt and out.shape == (2, 5, 4, 16)
    (call,) = calls
    assert call["ptrs"] == [q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr()]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), scale=0.25, is_causal=True, enable_gqa=True)
    assert rel_err(out, ref.transpose(1, 2)) < (1e-2 if dtype == "bfloat16" else 2e-3)
