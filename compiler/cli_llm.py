"""CLI subcommands for decoder LLMs: ``compile-llm`` and ``generate``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from compiler.errors import FrontendError, InputError

#: ``--weights`` -> ``quantize-llm`` options (None: float; "gguf": a GGUF file's own blocks).
WEIGHTS: dict[str, dict[str, Any] | str | None] = {
    "f32": None,
    "gguf": "gguf",
    "int8": {"weights": "int8"},
    "int4": {"weights": "int4"},
}


def _load_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model, tokenizer, GGUF file or None) from an HF folder or a ``.gguf`` file."""
    if str(args.model).endswith(".gguf"):
        from compiler.frontends.gguf import read_gguf, to_transformers

        gguf = read_gguf(args.model)
        return to_transformers(gguf), gguf.tokenizer(), gguf
    from compiler.frontends.torch_llm import load_hf_causal_lm

    model, tokenizer = load_hf_causal_lm(args.model)
    return model, tokenizer, None


def _text_ids(path: str, flag: str, tokenizer: Any) -> list[int]:
    """The token ids of the text file given to ``flag``."""
    if tokenizer is None:
        raise InputError(f"{flag} needs the model's tokenizer, and this model has none")
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{flag} {path}: {e}") from None
    return [int(t) for t in tokenizer.encode(text)]


def _calib_prompts(args: argparse.Namespace, tokenizer: Any) -> list[list[int]]:
    """``--calib-text``'s tokens in windows of ``--max-context`` (at most 8)."""
    if args.calib_text is None:
        raise InputError("--awq needs --calib-text FILE (a few paragraphs of typical text)")
    ids = _text_ids(args.calib_text, "--calib-text", tokenizer)
    step = args.max_context
    return [ids[i : i + step] for i in range(0, len(ids), step)][:8]


def _eval_windows(args: argparse.Namespace, tokenizer: Any) -> list[list[int]] | None:
    """``--eval-text``'s first ``--eval-windows`` windows of ``--max-context`` tokens."""
    if args.eval_text is None:
        return None
    from compiler.llm.evaluate import text_windows

    ids = _text_ids(args.eval_text, "--eval-text", tokenizer)
    windows = text_windows(ids, args.max_context, args.eval_windows)
    if not windows:
        raise InputError(
            f"--eval-text {args.eval_text}: {len(ids)} tokens, fewer than one window of "
            f"--max-context {args.max_context}"
        )
    return windows


def _rewrite(args: argparse.Namespace, tokenizer: Any, gguf: Any) -> Any:
    """The ``compile_llm(rewrite=)`` of ``--weights`` (None for float weights)."""
    from passes.quantize_llm import quantize_llm_graphs

    weights = args.weights or ("gguf" if gguf is not None else "f32")
    option = WEIGHTS[weights]
    if option is None:
        return None
    if option == "gguf":
        if gguf is None:
            raise InputError("--weights gguf keeps a GGUF file's blocks: the model is no .gguf")
        from compiler.frontends.gguf import hf_blocks

        blocks = hf_blocks(gguf)
        # A dense the file stores as F16/F32 has no blocks to keep: it gets int8 ones.
        return lambda graphs: quantize_llm_graphs(
            graphs,
            blocks=blocks,
            weights="int8",
            group=args.group,
            lm_head=args.lm_head,
            act_bits=args.act_bits,
        )
    assert isinstance(option, dict)
    calib = _calib_prompts(args, tokenizer) if args.awq else []
    opts = dict(option, group=args.group, sym=not args.asym, lm_head=args.lm_head)
    opts["act_bits"] = args.act_bits
    return lambda graphs: quantize_llm_graphs(graphs, awq=args.awq, calib=calib, **opts)


def cmd_compile_llm(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.llm import compile_llm

    model, tokenizer, gguf = _load_model(args)
    art = compile_llm(
        model,
        target=args.target,
        max_context=args.max_context,
        prefill_len=args.prefill_len,
        batch_size=args.batch_size,
        output_dir=args.output,
        tokenizer=tokenizer,
        rewrite=_rewrite(args, tokenizer, gguf),
        accuracy_windows=_eval_windows(args, tokenizer),
        **({"pipeline_stages": args.stages} if args.stages else {}),
    )
    if not args.json:
        print(art.report())
        print(f"wrote {args.output}")
    out = {"output": args.output, "spec": art.spec.to_json()}
    if art.accuracy is not None:
        out["accuracy"] = art.accuracy.to_json()
    return out


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

    if "tvm" not in sys.modules and sys.argv[1:2] == ["generate"]:
        # A `tapeout generate` process only runs a built model: TVM's runtime library is
        # enough (its compiler library costs about 110 MB of resident memory more). Not when
        # main() is called in a process that may compile later (a test, a notebook).
        os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
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
    p.add_argument("model", help="a Hugging Face model folder, or a llama GGUF file (.gguf)")
    p.add_argument("--target", "-t", default="cpu")
    p.add_argument("-o", "--output", required=True, help="artifact folder to write")
    p.add_argument("--max-context", type=int, default=256, help="tokens of prompt + output")
    p.add_argument("--prefill-len", type=int, default=32, help="tokens per prefill chunk")
    p.add_argument("--batch-size", type=int, default=1, help="prompts generated together")
    p.add_argument(
        "--weights",
        choices=sorted(WEIGHTS),
        help="dense weights: f32, gguf (a .gguf file's own blocks: the default for one), "
        "or int8/int4 blocks quantized by tapeout (W8A8/W4A8); default f32",
    )
    p.add_argument("--group", type=int, default=32, help="int8/int4 block size (32..128)")
    p.add_argument("--asym", action="store_true", help="int8/int4 with a per-block minimum")
    p.add_argument("--lm-head", default="int8", choices=("int8", "same", "f32"))
    p.add_argument(
        "--act-bits",
        type=int,
        default=8,
        choices=(8, 16),
        help="activation codes per block of the quantized denses: 8 (W8A8/W4A8, like "
        "llama.cpp) or 16 (two int8 planes per dot product: near-float accuracy)",
    )
    p.add_argument("--awq", action="store_true", help="activation-aware scale search")
    p.add_argument("--calib-text", help="text file of calibration prompts for --awq")
    p.add_argument("--stages", type=int, help="cut each graph's decoder layers into N stages")
    p.add_argument(
        "--eval-text",
        help="text file: run the compiled model on it teacher-forced against the float one "
        "(top-1, KL, perplexity in the report and accuracy.json)",
    )
    p.add_argument("--eval-windows", type=int, default=4, help="windows of --max-context tokens")


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
