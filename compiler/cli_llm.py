"""CLI subcommands for decoder LLMs: ``compile-llm`` and ``generate``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from compiler.errors import FrontendError, InputError


def cmd_compile_llm(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.frontends.torch_llm import load_hf_causal_lm
    from compiler.llm import compile_llm

    model, tokenizer = load_hf_causal_lm(args.model)
    art = compile_llm(
        model,
        target=args.target,
        max_context=args.max_context,
        prefill_len=args.prefill_len,
        batch_size=args.batch_size,
        output_dir=args.output,
        tokenizer=tokenizer,
        **({"pipeline_stages": args.stages} if args.stages else {}),
    )
    if not args.json:
        print(art.report())
        print(f"wrote {args.output}")
    return {"output": args.output, "spec": art.spec.to_json()}


def _prompt(args: argparse.Namespace) -> Any:
    if (args.prompt is None) == (args.prompt_ids is None):
        raise InputError("give exactly one of --prompt TEXT and --prompt-ids 1,2,3")
    if args.prompt is not None:
        return args.prompt
    try:
        return [int(t) for t in args.prompt_ids.split(",") if t.strip()]
    except ValueError:
        raise InputError(
            f"--prompt-ids must be comma-separated integers: {args.prompt_ids!r}"
        ) from None


class _Stream:
    """Prints each new token as it comes: the text's new suffix, or the id."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.shown = ""

    def __call__(self, row: int, token: int) -> None:
        self.ids.append(token)
        if self.tokenizer is None:
            sys.stdout.write(f"{token} ")
        else:
            text = self.tokenizer.decode(self.ids)
            sys.stdout.write(text[len(self.shown) :] if text.startswith(self.shown) else text)
            self.shown = text
        sys.stdout.flush()


def cmd_generate(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.llm import load_llm

    art = load_llm(args.artifact)
    prompt = _prompt(args)
    if isinstance(prompt, str) and art.tokenizer is None:
        raise FrontendError(f"{args.artifact} has no tokenizer: use --prompt-ids")
    stream = None if args.json else _Stream(art.tokenizer)
    stop = None if args.stop is None else [int(s) for s in args.stop.split(",") if s.strip()]
    res = art.generate(
        prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop=stop,
        on_token=stream,
        seed=args.seed,
    )
    if not args.json:
        print(
            f"\n[prefill {res.prefill_ms:.1f} ms, decode {res.decode_tokens_per_s:.1f} tokens/s, "
            f"{len(res.tokens[0])} tokens, target {art.target}]"
        )
    return {
        "tokens": res.tokens[0],
        "text": None if res.text is None else res.text[0],
        "prefill_ms": round(res.prefill_ms, 3),
        "decode_tokens_per_s": round(res.decode_tokens_per_s, 2),
    }


def _args_compile_llm(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a Hugging Face model folder (config.json + weights)")
    p.add_argument("--target", "-t", default="cpu")
    p.add_argument("-o", "--output", required=True, help="artifact folder to write")
    p.add_argument("--max-context", type=int, default=256, help="tokens of prompt + output")
    p.add_argument("--prefill-len", type=int, default=32, help="tokens per prefill chunk")
    p.add_argument("--batch-size", type=int, default=1, help="prompts generated together")
    p.add_argument("--stages", type=int, help="cut each graph's decoder layers into N stages")


def _args_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="folder written by compile-llm / compile_llm")
    p.add_argument("--prompt", help="prompt text (needs the artifact's tokenizer)")
    p.add_argument("--prompt-ids", help="prompt as comma-separated token ids")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--stop", help="stop token ids, comma-separated (default: the model's eos)")
    p.add_argument("--seed", type=int)


Handler = Callable[[argparse.Namespace], dict[str, Any]]

#: Entries of ``compiler.cli.COMMANDS``: name -> (help, add its arguments, handler).
LLM_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "compile-llm": (
        "compile a causal LM (HF folder) for generation",
        _args_compile_llm,
        cmd_compile_llm,
    ),
    "generate": ("generate text with a compiled LLM artifact", _args_generate, cmd_generate),
}
