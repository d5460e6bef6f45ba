"""How close a compiled (quantized) LLM stays to its float model, teacher-forced on a text.

Each window of token ids is run as the artifact runs a prompt: its first ``prefill_len``
tokens as one prefill chunk, then one decode step per token, each fed the text's own next
token (teacher forcing), so every position after the prefill gives one next-token
distribution. Against the float model's logits on the same windows:

* ``top1``: the fraction of positions whose most likely token is the float model's;
* ``kl``: the mean KL(float || compiled) of the next-token distributions (nats);
* ``ppl`` / ``ppl_float``: the perplexity of the text's actual next tokens under each.

NumPy only; the float logits come from the caller (``compile_llm`` takes them from the torch
model it imports, ``bench/llm_bench.py`` from each peer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from compiler.errors import InputError
from compiler.llm.runtime import Batch, step_runner

#: (window) -> float logits ``[len(window) - start, vocab]``: position ``start - 1`` onwards.
LogitsFn = Callable[[Sequence[int]], np.ndarray]


@dataclass(frozen=True)
class Accuracy:
    """Teacher-forced agreement of a compiled LLM with its float model (module docstring)."""

    top1: float
    kl: float
    ppl: float
    ppl_float: float
    windows: int
    positions: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"vs float, teacher-forced over {self.windows} window(s), {self.positions} "
            f"positions: top-1 {self.top1:.3f}, KL {self.kl:.5f}, perplexity {self.ppl:.2f} "
            f"(float {self.ppl_float:.2f})"
        )


def text_windows(ids: Sequence[int], length: int, count: int) -> list[list[int]]:
    """Up to ``count`` consecutive, non-overlapping windows of ``length`` tokens."""
    return [list(ids[i : i + length]) for i in range(0, len(ids) - length + 1, length)][:count]


def check_windows(prefill_len: int, max_context: int, windows: Sequence[Sequence[int]]) -> None:
    """Windows longer than a prefill chunk and within the artifact's context."""
    if not windows:
        raise InputError("accuracy: no text windows (is the text shorter than one window?)")
    for i, w in enumerate(windows):
        if not prefill_len < len(w) <= max_context:
            raise InputError(
                f"accuracy: window {i} has {len(w)} tokens; it needs more than the prefill "
                f"chunk ({prefill_len}) and at most max_context ({max_context})"
            )


def artifact_logits(art: Any, window: Sequence[int]) -> np.ndarray:
    """The artifact's next-token logits at positions ``prefill_len - 1 .. len - 2`` of
    ``window``: one prefill chunk, then one decode step per token of the window."""
    spec = art.spec
    start = spec.prefill_len
    batch = art.batch_size
    state = Batch(spec, batch)

    def rows(tokens: Sequence[int]) -> np.ndarray:
        return np.repeat(np.asarray([tokens], np.int64), batch, axis=0)

    first = state.step(
        step_runner(art.prefill, spec),
        rows(window[:start]),
        rows(range(start)),
        np.ones((batch, start), np.int64),
    )
    out = [np.asarray(first[0], np.float64)]
    decode = step_runner(art.decode, spec)
    one = np.ones((batch, 1), np.int64)
    for pos in range(start, len(window) - 1):
        logits = state.step(decode, rows([window[pos]]), rows([pos]), one)
        out.append(np.asarray(logits[0], np.float64))
    return np.asarray(out)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(-1, keepdims=True)
    return x - (top + np.log(np.exp(x - top).sum(-1, keepdims=True)))


def compare(
    ref: Sequence[np.ndarray], got: Sequence[np.ndarray], windows: Sequence[Sequence[int]],
    start: int,
) -> Accuracy:  # fmt: skip
    """Top-1, mean KL(ref || got) and both perplexities; ``ref[i]``/``got[i]`` are the logits
    of window ``i`` from position ``start - 1`` on."""
    top1, kl, nll, nll_ref = [], [], [], []
    for r, g, window in zip(ref, got, windows, strict=True):
        lp_r = _log_softmax(np.asarray(r, np.float64))
        lp_g = _log_softmax(np.asarray(g, np.float64))
        top1.append(lp_r.argmax(-1) == lp_g.argmax(-1))
        kl.append((np.exp(lp_r) * (lp_r - lp_g)).sum(-1))
        nxt = np.asarray(window[start:])
        at = np.arange(len(nxt))
        nll.append(-lp_g[at, nxt])
        nll_ref.append(-lp_r[at, nxt])
    return Accuracy(
        top1=float(np.concatenate(top1).mean()),
        kl=float(np.concatenate(kl).mean()),
        ppl=float(np.exp(np.concatenate(nll).mean())),
        ppl_float=float(np.exp(np.concatenate(nll_ref).mean())),
        windows=len(windows),
        positions=int(sum(len(t) for t in top1)),
    )


def accuracy(art: Any, reference: LogitsFn, windows: Sequence[Sequence[int]]) -> Accuracy:
    """``art`` teacher-forced on ``windows`` against ``reference``'s logits."""
    check_windows(art.spec.prefill_len, art.spec.max_context, windows)
    start = art.spec.prefill_len
    ref = [reference(w) for w in windows]
    got = [artifact_logits(art, w) for w in windows]
    return compare(ref, got, windows, start)


def torch_logits(model: Any, start: int) -> LogitsFn:
    """A Hugging Face causal LM's own logits for a window, from position ``start - 1``."""
    import torch

    def logits(window: Sequence[int]) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.tensor([list(window)])).logits[0]
        return out[start - 1 : -1].double().numpy()

    return logits
