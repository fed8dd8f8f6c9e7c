"""normexp as a Hugging Face transformers attention backend.

    import normexp.integrations.transformers as nt
    nt.register()                                   # once per process
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="normexp")

:func:`register` adds normexp to transformers' ``AttentionInterface`` (the function every attention layer
calls) and ``AttentionMaskInterface`` (the mask each model builds for it), under one name. Every attention
call of the model, prefill and KV-cache decode alike, then runs :func:`normexp.attention` through the torch
custom operator ``torch.ops.normexp.attention`` (defined when this module is imported), which has a fake
implementation, so a model under ``torch.compile(fullgraph=True)`` keeps normexp inside the graph.

What transformers passes and what normexp does with it (docs/transformers.md has the table):

- query ``(B, Hq, Lq, D)``, key/value ``(B, Hkv, Lkv, D)`` (strided views of the projections and the KV
  cache) are read in place; grouped-query attention is native (query head h reads key/value head
  ``h // (Hq // Hkv)``), no ``repeat_kv``. The output is written straight into the ``(B, Lq, Hq, Dv)``
  layout the model reshapes next: no copy in, none out. 16-bit tensors are passed through as they are.
- the mask is the one ``sdpa`` uses (``transformers.masking_utils.sdpa_mask``): a boolean
  ``(B, 1, Lq, Lkv)`` tensor (True keeps; broadcast over the heads, never expanded) holding causality,
  left padding and the sliding window in absolute positions, or ``None`` where plain causality suffices.
  With ``None`` and ``Lq > 1`` the layer is causal with torch's top-left alignment (the mask is only
  skipped where ``Lq == Lkv`` or the cache is empty), with ``Lq == 1`` it sees every key: SDPA's rule.
- ``scaling`` -> ``scale``; ``softcap`` -> ``softcap`` (Gemma 2: ``softcap * tanh(s / softcap)`` before
  the mask); ``s_aux`` -> ``sinks`` (gpt-oss: one logit per query head in each row's softmax);
  ``sliding_window`` is already in the mask.
- ``dropout > 0`` (a model in training mode) is refused, and so is a backward pass: normexp does not train.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from ..attention import attention as _normexp_attention

__all__ = ["register", "attention_forward", "DEFAULT_NAME"]

DEFAULT_NAME = "normexp"

# Names transformers gives a meaning of its own: a hub kernel ("org/repo"), a paged variant ("paged|..."),
# or one of its implementations, which registering here would replace for every model of the process.
_RESERVED = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4")


def _attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: Optional[torch.Tensor],
    sinks: Optional[torch.Tensor],
    scale: float,
    softcap: float,
    is_causal: bool,
) -> torch.Tensor:
    """normexp.attention on (B, Hq, Lq, D) / (B, Hkv, Lkv, D) tensors, returned as (B, Lq, Hq, Dv).

    The kernels write through a transposed view of the result, so the (B, Lq, Hq, Dv) layout that
    transformers reshapes to (B, Lq, Hq * Dv) costs no copy. softcap 0 means none; causality, when asked,
    is top-left aligned (torch's is_causal)."""
    b, hq, lq, _ = query.shape
    out = query.new_empty((b, lq, hq, value.shape[-1]))
    # detach(): a view without autograd history (normexp refuses tensors that require grad; the sinks are
    # a model parameter). The backward pass is refused by the autograd formula below.
    _normexp_attention(
        query.detach(), key.detach(), value.detach(),
        mask=None if mask is None else mask.detach(),
        # The sinks as float32 (one number per head, exactly): the dtype the kernels hold them in for
        # 16-bit inputs, so the check in attention.check_sinks sees the values the kernels use.
        sinks=None if sinks is None else sinks.detach().to(torch.float32),
        is_causal=is_causal, scale=scale, softcap=softcap if softcap else None,
        out=out.transpose(1, 2),
    )
    return out


_attention_op = torch.library.custom_op("normexp::attention", mutates_args=())(_attention)


@_attention_op.register_fake
def _attention_fake(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *options: Any) -> torch.Tensor:
    """The output's shape, dtype and layout, for torch.compile's tracing (the other arguments do not change
    them)."""
    b, hq, lq, _ = query.shape
    return query.new_empty((b, lq, hq, value.shape[-1]))


def _no_backward(ctx: Any, grad: torch.Tensor) -> Any:
    raise RuntimeError(
        "normexp attention has no backward pass (normexp does inference only); train with "
        "attn_implementation='sdpa' or 'eager', or run the model under torch.no_grad()"
    )


def _save_nothing(ctx: Any, inputs: Any, output: Any) -> None:
    return None


_attention_op.register_autograd(_no_backward, setup_context=_save_nothing)


def attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    softcap: Optional[float] = None,
    s_aux: Optional[torch.Tensor] = None,
    sliding_window: Optional[int] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function transformers calls for ``attn_implementation="normexp"``.

    Takes what a transformers attention layer passes (``AttentionInterface``'s signature: query
    ``(B, Hq, Lq, D)``, key and value ``(B, Hkv, Lkv, D)``, the mask built by the registered mask function,
    ``dropout``, ``scaling``, ``is_causal``, ``softcap``, ``s_aux``, ``sliding_window``) and returns
    ``(out, None)`` with ``out`` of shape ``(B, Lq, Hq, Dv)``, like transformers' ``sdpa`` (no attention
    weights are formed). ``sliding_window`` is already applied by the mask; other keyword arguments (the
    models' position ids, cache positions, ...) are not needed here and are ignored.

    Raises ValueError for ``dropout > 0`` (the model is in training mode: call ``model.eval()``), for a
    ``position_bias`` (T5-style relative bias) and for a paged ``cache`` (continuous batching): neither is
    supported.
    """
    if dropout:
        raise ValueError(
            f"dropout: normexp attention does inference only and has no dropout, got dropout={dropout!r} "
            "(the model is in training mode: call model.eval(), or train with attn_implementation='sdpa')"
        )
    if kwargs.get("position_bias") is not None:
        raise ValueError("position_bias: relative position biases (T5-style) are not supported by the normexp backend")
    if kwargs.get("cache") is not None:
        raise ValueError(
            "cache: a paged KV cache (transformers' continuous batching) is not supported by the normexp "
            "backend; use generate() with its default cache"
        )
    # SDPA's rule (transformers' sdpa_attention_forward): the module's is_causal unless the call says
    # otherwise, and only for a mask-free call with several queries. A mask holds causality itself, and a
    # single query with no mask sees every key of the cache.
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    causal = bool(is_causal) and attention_mask is None and query.shape[2] > 1
    scale = float(scaling) if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    op = _attention if _eager_call(query, key, value, attention_mask, s_aux) else torch.ops.normexp.attention
    out = op(query, key, value, attention_mask, s_aux, scale, float(softcap) if softcap else 0.0, causal)
    return out, None


def _eager_call(*tensors: Optional[torch.Tensor]) -> bool:
    """True where the custom op's dispatcher has nothing to do, so the implementation is called directly:
    an eager call (not traced by torch.compile, torch.export or torch.jit) on plain tensors with no
    autograd history to record. The dispatcher's round trip through Python costs about as much as a
    decode step's attention of a small model; generate() runs under no_grad, so it never pays it."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    grad = torch.is_grad_enabled()
    return all(t is None or (type(t) in _PLAIN and not (grad and t.requires_grad)) for t in tensors)


_PLAIN = (torch.Tensor, torch.nn.Parameter)  # not FakeTensor, FunctionalTensor, ... (traced: the op)


def register(name: str = DEFAULT_NAME) -> str:
    """Register normexp with transformers as the attention implementation ``name`` and its mask format.

    After ``register()``, ``AutoModelForCausalLM.from_pretrained(..., attn_implementation="normexp")``,
    ``from_config(config, attn_implementation="normexp")`` or ``model.set_attn_implementation("normexp")``
    run every attention call of the model on normexp (:func:`attention_forward`), with the boolean masks of
    transformers' ``sdpa`` implementation. Registering again is harmless. Returns ``name``.

    Raises TypeError if ``name`` is not a string, ValueError if it is empty, contains ``/`` or ``|``
    (transformers reads those as hub kernels and paged variants) or is one of transformers' own
    implementations (``eager``, ``sdpa``, ``flex_attention``, ``flash_attention_*``), which it would
    replace for every model of the process.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string (the attn_implementation to register), got {type(name).__name__}")
    if not name or "/" in name or "|" in name or name in _RESERVED:
        raise ValueError(
            f"name {name!r} cannot be registered: it must be non-empty, without '/' or '|', and not one of "
            f"transformers' own implementations ({', '.join(_RESERVED)})"
        )
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name
