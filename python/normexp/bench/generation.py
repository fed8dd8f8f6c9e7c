"""``python -m normexp bench generate``: end-to-end greedy generation of a small Llama-shaped model with
Hugging Face transformers, normexp's attention backend (normexp.integrations.transformers) against
transformers' ``sdpa`` and ``eager``, prefill and decode timed separately.

Method: one model with fixed random weights (no download), one batch of random prompts. For each
implementation, ``--repeat`` runs (after one warm-up run) of: a prefill forward over the prompts into an
empty ``DynamicCache`` (timed: prefill tokens/s = batch x prompt / seconds), then ``--new-tokens`` greedy
decode steps of one token per sequence through the cache (timed together: decode tokens/s = batch x
new tokens / seconds). Implementations are interleaved run by run, so a neighbour's load hits them alike;
the medians are reported, with each one's speed relative to normexp and whether its greedy tokens equal
eager's. With ``--dtype float16`` / ``bfloat16`` the weights and the KV cache are 16-bit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Sequence

IMPLS = ("normexp", "sdpa", "eager")
DTYPES = ("float32", "float16", "bfloat16")


def build_parser(prog: str = "python -m normexp bench generate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma list of {', '.join(IMPLS)} (default: all)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weights and KV cache (default float32)")
    p.add_argument("--batch", type=int, default=1, help="sequences per batch (default 1)")
    p.add_argument("--prompt", type=int, default=256, help="prompt tokens per sequence (default 256)")
    p.add_argument("--new-tokens", type=int, default=32, help="greedy decode steps (default 32)")
    p.add_argument("--hidden", type=int, default=512, help="hidden size (default 512)")
    p.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    p.add_argument("--heads", type=int, default=8, help="query heads (default 8; head_dim = hidden / heads)")
    p.add_argument("--kv-heads", type=int, default=2, help="key/value heads (default 2: grouped-query attention)")
    p.add_argument("--vocab", type=int, default=8192, help="vocabulary size (default 8192)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per implementation (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for torch and normexp (default: each library's own default)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    return p


def _check(args: argparse.Namespace) -> list[str]:
    impls = [t.strip() for t in args.impls.split(",") if t.strip()]
    if not impls:
        raise ValueError("--impls is empty")
    for name in impls:
        if name not in IMPLS:
            raise ValueError(f"--impls: unknown implementation {name!r}; choose from {', '.join(IMPLS)}")
    for name in ("batch", "prompt", "new_tokens", "hidden", "layers", "heads", "kv_heads", "vocab", "repeat"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.hidden % args.heads or args.heads % args.kv_heads:
        raise ValueError(f"--hidden ({args.hidden}) must be a multiple of --heads ({args.heads}), and --heads a "
                         f"multiple of --kv-heads ({args.kv_heads})")
    return list(dict.fromkeys(impls))


def make_model(args: argparse.Namespace) -> Any:
    """A Llama-shaped causal LM with fixed random weights, in eager mode, in args.dtype."""
    import torch
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3 // 64 * 64 or 64,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.prompt + args.new_tokens, initializer_range=0.2, pad_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    return model.to(getattr(torch, args.dtype)).eval()


def generate(model: Any, ids: Any, new_tokens: int) -> tuple[float, float, Any]:
    """Greedy generation by hand: (prefill seconds, decode seconds, the new tokens (batch, new_tokens))."""
    import torch
    from transformers import DynamicCache

    clock = time.perf_counter
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        t0 = clock()
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits
        token = logits[:, -1].argmax(-1, keepdim=True)
        t1 = clock()
        tokens = []
        for _ in range(new_tokens):
            logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits
            token = logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(token)
        t2 = clock()
    return t1 - t0, t2 - t1, torch.cat(tokens, 1)


def measure(args: argparse.Namespace, impls: Sequence[str], log: Any = None) -> dict:
    """Run the benchmark; a dict with the settings and one row per implementation."""
    import torch

    import normexp
    from normexp.integrations import transformers as nt

    nt.register()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        normexp.set_num_threads(args.threads)
    model = make_model(args)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, args.vocab, (args.batch, args.prompt), generator=g)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in impls}
    tokens: dict[str, Any] = {}
    for rep in range(args.repeat + 1):  # run 0 warms up
        for name in impls:
            model.set_attn_implementation(name)
            pre, dec, toks = generate(model, ids, args.new_tokens)
            if rep:
                times[name].append((pre, dec))
            else:
                tokens[name] = toks
                if log:
                    log(f"{name}: warm-up run done ({pre + dec:.2f} s)")
    if "eager" not in tokens:
        model.set_attn_implementation("eager")
        tokens["eager"] = generate(model, ids, args.new_tokens)[2]
    rows = []
    for name in impls:
        pre = statistics.median(t[0] for t in times[name])
        dec = statistics.median(t[1] for t in times[name])
        rows.append(dict(impl=name, prefill_s=pre, decode_s=dec,
                         prefill_tok_s=args.batch * args.prompt / pre, decode_tok_s=args.batch * args.new_tokens / dec,
                         same_tokens_as_eager=bool(torch.equal(tokens[name], tokens["eager"]))))
    settings = {k: getattr(args, k) for k in ("dtype", "batch", "prompt", "new_tokens", "hidden", "layers", "heads",
                                               "kv_heads", "vocab", "repeat", "threads")}
    return dict(settings=settings, torch=torch.__version__, normexp=normexp.__version__, isa=normexp.isa(),
                transformers=sys.modules["transformers"].__version__, rows=rows)


def render(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"greedy generation, Llama-shaped: hidden {s['hidden']}, {s['layers']} layers, {s['heads']} heads / "
        f"{s['kv_heads']} KV heads (head_dim {s['hidden'] // s['heads']}), vocab {s['vocab']}, {s['dtype']}; "
        f"batch {s['batch']}, prompt {s['prompt']}, {s['new_tokens']} new tokens; median of {s['repeat']}",
        f"normexp {results['normexp']} ({results['isa']}), torch {results['torch']}, "
        f"transformers {results['transformers']}",
        "",
        f"{'attention':<10} {'prefill ms':>11} {'prefill tok/s':>14} {'vs normexp':>10} "
        f"{'decode ms/tok':>14} {'decode tok/s':>13} {'vs normexp':>10} {'tokens = eager':>15}",
    ]
    base = next((r for r in results["rows"] if r["impl"] == "normexp"), None)
    for r in results["rows"]:
        rel_p = f"{r['prefill_tok_s'] / base['prefill_tok_s']:.2f}x" if base else "-"
        rel_d = f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}x" if base else "-"
        lines.append(
            f"{r['impl']:<10} {r['prefill_s'] * 1e3:>11.1f} {r['prefill_tok_s']:>14.0f} {rel_p:>10} "
            f"{r['decode_s'] * 1e3 / s['new_tokens']:>14.2f} {r['decode_tok_s']:>13.1f} {rel_d:>10} "
            f"{'yes' if r['same_tokens_as_eager'] else 'NO':>15}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "python -m normexp bench generate") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        impls = _check(args)
    except ValueError as e:
        parser.error(str(e))
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"{prog} needs torch and transformers (pip install \"normexp[transformers]\"): {e}", file=sys.stderr)
        return 2

    def log(s: str) -> None:
        print(s, file=sys.stderr)

    results = measure(args, impls, log)
    print(render(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
        log(f"wrote {args.json}")
    # float32: normexp's greedy tokens must be eager's (16-bit roundings may legitimately change a choice).
    wrong = args.dtype == "float32" and not all(r["same_tokens_as_eager"] for r in results["rows"] if r["impl"] == "normexp")
    return 1 if wrong else 0
