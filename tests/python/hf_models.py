"""Small randomly initialised transformers models for the backend tests (test_transformers.py,
test_transformers_16bit.py): the configs, a left-padded batch, the comparison and a spy on the native
attention driver. Imports torch and transformers: import it after ``pytest.importorskip`` of both."""

from __future__ import annotations

import torch
import transformers

import normexp

WINDOW = 6  # sliding window of the Mistral, Gemma 2 and gpt-oss models: the prompt and the generation pass it
PROMPT = 10
PADDING = 3  # left padding of the batch's first prompt
NEW_TOKENS = 12

COMMON = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=None,
    # Wider than the default 0.02, so the scores are large enough for the softcap and the sinks to matter
    # (the negative controls) and greedy choices are not near-ties.
    initializer_range=0.2,
)

CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**COMMON),  # GQA: 4 query heads over 2 key/value heads
    "qwen2": lambda: transformers.Qwen2Config(**COMMON),
    "mistral": lambda: transformers.MistralConfig(**COMMON, sliding_window=WINDOW),
    "gemma2": lambda: transformers.Gemma2Config(
        **COMMON, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW, attn_logit_softcapping=2.0,
        final_logit_softcapping=30.0),
    "gpt_oss": lambda: transformers.GptOssConfig(
        **COMMON, head_dim=16, sliding_window=WINDOW, num_local_experts=4, num_experts_per_tok=2,
        layer_types=["sliding_attention", "full_attention"],
        # gpt-oss's YaRN RoPE, its original context scaled to this model's 256 positions (factor 32).
        rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=32.0, beta_fast=32.0, beta_slow=1.0,
                             truncate=False, original_max_position_embeddings=8)),
}
FAMILIES = list(CONFIGS)


def make_model(family: str, dtype: torch.dtype = torch.float32, **overrides):
    """The family's model with fixed random weights, in eager mode, generating exactly max_new_tokens."""
    cfg = CONFIGS[family]()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.to(dtype)


def batch():
    """Two prompts of PROMPT tokens, the first left-padded by PADDING tokens; (ids, attention_mask)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 256, (2, PROMPT), generator=g)
    mask = torch.ones_like(ids)
    ids[0, :PADDING] = 0
    mask[0, :PADDING] = 0
    return ids, mask


def rel_err(got, ref, keep=None) -> float:
    """max |got - ref| / max |ref| (over the positions where keep is True)."""
    if keep is not None:
        got, ref = got[keep], ref[keep]
    return float((got.double() - ref.double()).abs().max() / ref.double().abs().max())


def spy_native_attention(monkeypatch) -> list:
    """Record every call of the native attention driver: q's dtype, the data pointers of q, k, v and out,
    the mask and the shapes of q and k."""
    calls = []
    real = normexp._core.attention

    def spy(q, k, v, out, *args, **kwargs):
        calls.append(dict(dtype=q.dtype, kv_dtype=k.dtype, ptrs=[a.__array_interface__["data"][0] for a in (q, k, v, out)],
                          mask=args[1], shapes=(q.shape, k.shape)))
        return real(q, k, v, out, *args, **kwargs)

    monkeypatch.setattr(normexp._core, "attention", spy)
    return calls


def run(model, impl: str, ids, mask):
    """(prefill logits, greedy sequences, the logits of every generated step) with attention impl."""
    model.set_attn_implementation(impl)
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        gen = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
    return logits, gen.sequences, torch.stack(gen.logits)


