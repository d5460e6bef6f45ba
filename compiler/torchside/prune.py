"""The torch side of pruning: Taylor importance, and fine-tuning a pruned graph.

Pruning happens on the IR (``prune-magnitude``, ``prune-channels``, ``prune-2to4``); training
happens in torch. The route between them, for any model the frontend imports:

    graph = compiler.import_model(model, example_inputs)          # IR
    scores = taylor_importance(model, (x, y))                    # optional, for criterion=taylor
    prune_channels(graph, ratio=0.5, criterion="taylor", scores=scores)
    student = student_from_graph(graph)                            # a torch module of the IR
    compiler.distill(model, student, (x, y), epochs=30)           # or fine_tune(student, ...)
    graph = student.to_graph()                                     # trained weights, same IR

A channel-pruned graph is physically smaller, so the student is a smaller network; an
unstructured-pruned graph keeps its zeros through training with masks (``keep_zeros``). There
is no model-class surgery: the student runs the IR itself (``compiler.torchside.module``), and the
weights go back into the very graph that compiles. torch is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import TapeoutError
from compiler.ir.graph import Graph
from compiler.torchside.distill import DistillResult, batches, distill, torch_threads
from passes.prune_channels import ImportanceScores

if TYPE_CHECKING:
    import torch

    from compiler.torchside.fake_quant import FakeQuant


def _named_weights(model: Any) -> dict[str, Any]:
    """Per-output-channel parameters by name: a graph module's constants, or a module's
    parameters named ``*.weight`` (conv, linear and norm weights)."""
    if hasattr(model, "named_weights"):
        return {k: v for k, v in model.named_weights().items() if v.dim() >= 1}
    return {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 1}


def taylor_importance(
    model: torch.nn.Module,
    data: Any,
    batches_: int = 4,
    batch_size: int = 64,
    loss_fn: Any = None,
    threads: int | None = 1,
) -> ImportanceScores:
    """First-order Taylor importance of every output channel (Molchanov et al., 2019).

    For each weight ``W`` with output channels along dim 0, the importance of channel ``c`` is
    ``sum over batches of |sum_{i in c} dL/dW_i * W_i|``: the first-order estimate of how much
    the loss changes when the channel is removed. ``data`` is ``(x, y)`` (labels needed: the loss
    is cross-entropy unless ``loss_fn(outputs, y)`` is given). Keys are parameter names
    (``conv1.weight``, ``bn1.weight``), which are the IR constant names the torch frontend
    gives, so the result goes straight into ``prune-channels{criterion=taylor}``.
    """
    with torch_threads(threads):
        return _taylor(model, data, batches_, batch_size, loss_fn)


def _taylor(
    model: Any, data: Any, batches_: int, batch_size: int, loss_fn: Any
) -> ImportanceScores:
    import torch
    import torch.nn.functional as F

    loss_fn = loss_fn or F.cross_entropy
    weights = _named_weights(model)
    scores = {
        name: torch.zeros(int(w.shape[0]), dtype=torch.float64) for name, w in weights.items()
    }
    model.eval()
    seen = 0
    for x, y in batches(data, batch_size, shuffle=True, seed=0):
        if y is None:
            raise TapeoutError("taylor_importance needs labelled data: (x, y)")
        model.zero_grad()
        loss_fn(model(x), y).backward()
        with torch.no_grad():
            for name, w in weights.items():
                if w.grad is not None:
                    contribution = (w.grad * w).reshape(w.shape[0], -1).sum(dim=1)
                    scores[name] += contribution.abs().double()
        seen += 1
        if seen >= batches_:
            break
    model.zero_grad()
    return ImportanceScores({name: s.numpy() for name, s in scores.items()})


def student_from_graph(
    graph: Graph,
    fold_batchnorm: bool = True,
    fake_quant: FakeQuant | None = None,
    keep_zeros: bool = True,
) -> Any:
    """A trainable torch module of (a copy of) ``graph``; ``.to_graph()`` gives it back.

    ``fold_batchnorm`` first folds batch norms into the convs (``fold-batchnorm``), so the
    student trains the weights the quantize pass will see: needed for ``fake_quant`` to be
    bit-exact, and the graph the FPGA pipeline would build anyway.
    """
    from compiler.pass_manager import run_pipeline
    from compiler.torchside.module import to_torch

    graph = graph.copy()
    if fold_batchnorm:
        run_pipeline(graph, "fold-batchnorm,dce")
    return to_torch(graph, keep_zeros=keep_zeros, fake_quant=fake_quant)


def fine_tune(
    model: torch.nn.Module,
    data: Any,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    **kwargs: Any,
) -> DistillResult:
    """Plain supervised fine-tuning (cross-entropy on labels): ``distill`` with no teacher."""
    return distill(None, model, data, epochs, alpha=1.0, lr=lr, batch_size=batch_size, **kwargs)


def sparsity(graph: Graph) -> float:
    """Fraction of zeros over the conv / dense / matmul weights of ``graph``."""
    from passes._prune import weight_layers

    arrays = [graph.const_value(n.inputs[1]) for n in weight_layers(graph)]
    total = sum(a.size for a in arrays if a is not None)
    zeros = sum(a.size - np.count_nonzero(a) for a in arrays if a is not None)
    return zeros / total if total else 0.0


def graph_accuracy(graph: Graph, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of ``graph`` run by the reference interpreter (float or integer IR).

    A batch-1 graph is re-specialized to ``batch`` rows (``passes.quant.batching``) so the
    test set runs in a few interpreter calls. Needs no torch.
    """
    from compiler.interpreter import interpret
    from passes.quant.batching import respecialize

    correct = 0
    runners: dict[int, Graph] = {}
    for start in range(0, len(x), batch):
        rows = x[start : start + batch]
        if len(rows) not in runners:
            runners[len(rows)] = respecialize(graph, len(rows))
        logits = interpret(runners[len(rows)], rows)[0]
        correct += int(np.sum(logits.argmax(axis=-1) == y[start : start + batch]))
    return correct / len(x)
