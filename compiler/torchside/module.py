"""Run a float IR graph as a trainable ``torch.nn.Module``, and write the weights back.

This is how compression gets its accuracy back: prune (or otherwise rewrite) the *IR*, turn
the result into a torch module with ``to_torch(graph)``, fine-tune or distill it
(``compiler.distill``), and put the trained weights back into the graph with
``module.to_graph()``, which then compiles like any other. It works for any graph whose ops
have a rule in ``TORCH_OPS`` (the conv / dense / norm / pool / elementwise / shape ops of the
zoo's CNNs and MLPs), with no model-class surgery and for any batch size (a reshape that kept
the batch dimension keeps the runtime batch).

Constants become parameters where training makes sense (conv / dense weight and bias, norm
scale and shift) and buffers elsewhere (batch-norm running statistics are frozen: the module
trains in inference-mode normalization, the form the IR has). Parameters are named by their
constant (``fc1.weight`` in ``module.weights``).

``keep_zeros=True`` freezes the zeros of pruned weights with a mask (the gradient of a masked
weight is 0 and the written-back weight is exactly 0), so unstructured sparsity survives
fine-tuning. ``fake_quant`` trains through the integer weights the quantize pass will produce
(see ``compiler.torchside.fake_quant``). torch is imported lazily: importing this module
needs no torch.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import Unsupported, UnsupportedOpsError
from compiler.ir.graph import Graph
from compiler.ir.ops import OPS
from compiler.ir.types import is_float
from compiler.torchside import ops as _ops  # noqa: F401  (its rules fill TORCH_OPS)
from compiler.torchside.registry import TORCH_OPS, TRAINABLE, WEIGHTS

if TYPE_CHECKING:
    import torch

    from compiler.torchside.fake_quant import FakeQuant

def unsupported(graph: Graph) -> list[Unsupported]:
    """Every node ``to_torch`` cannot run, with the reason."""
    out = []
    for node in graph.compute_nodes():
        if node.op not in TORCH_OPS:
            out.append(Unsupported(node.op, node.where(), "no torch rule in compiler.torchside"))
        elif any(not is_float(v.dtype) for v in node.outputs if v.dtype != "bool"):
            out.append(Unsupported(node.op, node.where(), "integer op: train before quantizing"))
    return out


def to_torch(graph: Graph, keep_zeros: bool = True, fake_quant: FakeQuant | None = None) -> Any:
    """A trainable torch module computing ``graph`` (a copy: the graph is not changed).

    The module (a ``torch.nn.Module``; its class is built on first use, so that importing
    this file needs no torch) also has ``to_graph()``, ``constant(name)`` and
    ``named_weights()``.
    """
    missing = unsupported(graph)
    if missing:
        raise UnsupportedOpsError(missing, what=f"graph @{graph.name} for to_torch")
    return _module_class()(graph.copy(), keep_zeros, fake_quant)


@functools.cache
def _module_class() -> type:
    import torch

    class GraphModule(torch.nn.Module):
        """``graph`` as a torch module; see ``compiler.torchside.module``."""

        def __init__(self, graph: Graph, keep_zeros: bool, fake_quant: FakeQuant | None):
            super().__init__()
            self.graph = graph
            self.fake_quant = fake_quant
            self.weights = torch.nn.ParameterDict()
            self._keys: dict[str, str] = {}  # constant ref -> ParameterDict / buffer key
            trainable = _trainable_refs(graph)
            weight_refs = _weight_refs(graph)
            for ref, data in graph.constants.items():
                key = "c_" + ref.replace(".", "__")
                self._keys[ref] = key
                tensor = torch.from_numpy(np.array(data))
                if ref in trainable:
                    self.weights[key] = torch.nn.Parameter(tensor)
                else:
                    self.register_buffer(key, tensor, persistent=False)
                if keep_zeros and ref in weight_refs and not np.all(data):
                    self.register_buffer("m_" + key, torch.from_numpy(data != 0))
            self._weight_refs = weight_refs

        def constant(self, ref: str) -> torch.Tensor:
            """The current value of constant ``ref`` (masked and fake-quantized weights)."""
            key = self._keys[ref]
            value = self.weights[key] if key in self.weights else getattr(self, key)
            mask = getattr(self, "m_" + key, None)
            if mask is not None:
                value = value * mask
            if self.fake_quant is not None and ref in self._weight_refs:
                value = self.fake_quant.weight(value, ref)
            return value

        def forward(self, *inputs: torch.Tensor) -> Any:
            env: dict[int, Any] = {id(v): x for v, x in zip(self.graph.inputs, inputs, strict=True)}
            for node in self.graph.nodes:
                if node.op == "const":
                    env[id(node.output)] = self.constant(node.attrs["ref"])
                    continue
                attrs = OPS[node.op].with_defaults(node.attrs)
                out = TORCH_OPS[node.op](node, [env[id(v)] for v in node.inputs], attrs)
                outs = out if isinstance(out, list | tuple) else [out]
                for value, tensor in zip(node.outputs, outs, strict=True):
                    env[id(value)] = tensor
            results = [env[id(v)] for v in self.graph.outputs]
            return results[0] if len(results) == 1 else tuple(results)

        def to_graph(self) -> Graph:
            """A copy of the graph holding the trained weights (masked zeros stay exactly 0)."""
            graph = self.graph.copy()
            with torch.no_grad():
                for ref, key in self._keys.items():
                    if key not in self.weights:
                        continue
                    value = self.weights[key]
                    mask = getattr(self, "m_" + key, None)
                    if mask is not None:
                        value = value * mask
                    graph.constants[ref] = value.detach().cpu().numpy().astype(np.float32)
            return graph

        def named_weights(self) -> dict[str, torch.Tensor]:
            """Trainable constants by constant name (``conv1.weight``)."""
            return {ref: self.weights[k] for ref, k in self._keys.items() if k in self.weights}

    return GraphModule


def _trainable_refs(graph: Graph) -> set[str]:
    refs = set()
    for node in graph.compute_nodes():
        for index in TRAINABLE.get(node.op, ()):
            if index < len(node.inputs) and node.inputs[index].is_const:
                value = node.inputs[index]
                if is_float(value.dtype) and value.producer is not None:
                    refs.add(str(value.producer.attrs["ref"]))
    return refs


def _weight_refs(graph: Graph) -> set[str]:
    refs = set()
    for node in graph.compute_nodes():
        index = WEIGHTS.get(node.op)
        if index is not None and node.inputs[index].is_const:
            producer = node.inputs[index].producer
            assert producer is not None
            refs.add(str(producer.attrs["ref"]))
    return refs
