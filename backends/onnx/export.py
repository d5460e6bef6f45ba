"""``export_onnx(graph)``: any lowered graph, float or quantized, as an ONNX ModelProto.

Walks the graph in order and lowers each node through ``backends.onnx.rules.RULES``. Names
follow the IR: every IR value is the ONNX tensor of the same name, the ONNX node computing it
is named after it, helper nodes get ``<value>/<op>`` names, and each node's doc_string is the
IR line it came from (so Netron reads like ``tapeout inspect``). Per-layer precision and
fusion decisions go into ``metadata_props`` (``tapeout.layers``, JSON) together with the IR
text (``tapeout.ir``). Symbolic dimensions that are graph-input symbols become dim_params.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.onnx.emitter import ONNX_DTYPES, Emitter, ExportError, Real
from backends.onnx.rules import RULES
from backends.onnx.rules import unsupported_nodes as rule_walk
from compiler.errors import Unsupported, UnsupportedOpsError
from compiler.ir.graph import Graph, Node
from compiler.ir.printer import format_node, print_graph
from compiler.report import precision_of

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

MIN_OPSET = 17  # LayerNormalization
PRODUCER = "tapeout"


def max_opset() -> int:
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


def unsupported_nodes(
    graph: Graph, opset: int = MIN_OPSET, also: Callable[[Node], str | None] | None = None
) -> list[Unsupported]:
    """Every node the exporter cannot write at ``opset``, each with its reason (``also``: a
    reader's own limits, see ``backends.onnx.rules.unsupported_nodes``)."""
    return rule_walk(graph, opset, also)


def fusion_of(node: Node) -> list[str]:
    """What the IR node fuses (bias, residual add, activation, clamp), for the report."""
    parts = []
    if node.op in ("nn.conv1d", "nn.conv2d", "nn.dense"):
        if len(node.inputs) > 2:
            parts.append("bias")
        if len(node.inputs) > 3:
            parts.append("residual")
        if node.attrs.get("act", "none") != "none":
            parts.append(str(node.attrs["act"]))
    if node.op.startswith("q.") and node.attrs.get("act", "none") != "none":
        parts.append(str(node.attrs["act"]))
    if node.attrs.get("clip_min") is not None or node.attrs.get("clip_max") is not None:
        parts.append("clip")
    return parts


def _check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= max_opset():
        raise ExportError(
            f"ONNX opset {opset} is not supported: tapeout writes opsets {MIN_OPSET} "
            f"(LayerNormalization) to {max_opset()} (this onnx package)"
        )


def export_onnx(
    graph: Graph,
    path: str | Path | None = None,
    opset: int = MIN_OPSET,
    metadata: Mapping[str, Any] | None = None,
    exact: bool = True,
) -> onnx.ModelProto:
    """``graph`` as an ONNX model (checked by ``onnx.checker``); saved to ``path`` if given.

    ``metadata`` adds entries to the model's ``metadata_props`` (values JSON-encoded unless
    they are strings). ``exact`` (the default) follows the interpreter's integer rescales
    as closely as float can: the fixed-point multipliers of q.add and the pools are applied
    where they differ from the scale ratio, and ties are broken upward before
    QuantizeLinear where power-of-two rescales make them common (see ``Emitter.quantize``).
    ``exact=False`` keeps the plain QDQ pattern everywhere, for TensorRT, which rescales and
    rounds in its own kernels. Raises ``UnsupportedOpsError`` listing every node that has no ONNX
    form at ``opset``.
    """
    import onnx
    from onnx import helper

    _check_opset(opset)
    if any(n.op.startswith("q.") for n in graph.nodes) and any(
        v.dtype == "f64" for v in graph.values()
    ):
        from compiler.ir.islands import narrow_islands

        graph = narrow_islands(graph)  # QuantizeLinear and several ORT kernels lack double
    missing = unsupported_nodes(graph, opset)
    if missing:
        raise UnsupportedOpsError(missing, what=f"graph @{graph.name} for ONNX opset {opset}")
    em = Emitter(graph, opset)
    em.exact = exact
    inputs = [_input(em, value) for value in graph.inputs]
    layers = []
    for node in graph.nodes:
        _lower(node, em)
        if node.op != "const":
            layers.append(_layer_entry(node, em))
    outputs = _outputs(em, graph)
    value_info = _value_info(em, graph, {o.name for o in outputs})
    onnx_graph = helper.make_graph(
        em.nodes, graph.name, inputs, outputs, em.initializers, value_info=value_info
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        producer_name=PRODUCER,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    model.doc_string = f"tapeout export of graph @{graph.name}"
    props = {
        "tapeout.graph": graph.name,
        "tapeout.ir": print_graph(graph, show_consts=True),
        "tapeout.quantized": any(n.op.startswith("q.") for n in graph.nodes),
        "tapeout.layers": layers,
        **dict(metadata or {}),
    }
    helper.set_model_props(
        model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}
    )
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def _tensor_type(dtype: str, shape: tuple, em: Emitter) -> onnx.TypeProto:
    from onnx import helper

    dims: list[int | str | None] = [
        d if isinstance(d, int) else (d if d in em.symbols else None) for d in shape
    ]
    return helper.make_tensor_type_proto(ONNX_DTYPES[dtype], dims)


def _storage_dtype(dtype: str, opset: int) -> str:
    """4-bit tensors are held in 8 bits before opset 21."""
    return {"i4": "i8", "u4": "u8"}.get(dtype, dtype) if opset < 21 else dtype


def _input(em: Emitter, value: Any) -> onnx.ValueInfoProto:
    from onnx import helper

    name = em.claim(value.name)
    em.names[id(value)] = name
    for axis, d in enumerate(value.type.shape):
        if isinstance(d, str):
            em.symbols.setdefault(d, (name, axis))
    dtype = _storage_dtype(value.dtype, em.opset)
    return helper.make_value_info(name, _tensor_type(dtype, value.type.shape, em))


def _lower(node: Node, em: Emitter) -> None:
    rule = RULES[node.op]
    em.begin(node)
    view = rule.quant_transparent and any(v.type.quant is not None for v in node.inputs)
    em.float_view = view and all(v.type.quant is not None for v in node.outputs)
    try:
        results = rule.lower(node, em)
    except ExportError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise em.fail(f"cannot export: {type(e).__name__}: {e}") from e
    if em.float_view:
        results = [em.quantize(r, v.type) for r, v in zip(results, node.outputs, strict=True)]
    doc = _doc(node)
    for value, result in zip(node.outputs, results, strict=True):
        if isinstance(result, Real):
            # An accumulator leaving the graph keeps its IR name for the integer tensor.
            leaves = any(value is out for out in em.graph.outputs)
            name = f"{value.name}/real" if leaves else value.name
            em.reals[id(value)] = Real(_bind(em, name, result.name), result.scale, result.axis)
            em.types[em.reals[id(value)].name] = ("f32", value.type.shape)
        else:
            em.names[id(value)] = _bind(em, value.name, result)
            em.types[em.names[id(value)]] = (
                _storage_dtype(value.dtype, em.opset),
                value.type.shape,
            )
    for onnx_node in em.emitted():
        onnx_node.doc_string = doc


def _bind(em: Emitter, name: str, tensor: str) -> str:
    """Make the IR value ``name`` the tensor ``tensor`` (renamed, or an Identity)."""
    if tensor == name or em.rename(tensor, name):
        return name
    identity = em.emit1("Identity", [tensor])
    em.rename(identity, name)
    return name


def _doc(node: Node) -> str:
    parts = [f"tapeout: {format_node(node)}"]
    if node.op != "const":
        parts.append(f"precision: {precision_of(node)}")
    fused = fusion_of(node)
    if fused:
        parts.append("fused: " + "+".join(fused))
    return "\n".join(parts)


def _layer_entry(node: Node, em: Emitter) -> dict[str, Any]:
    return {
        "name": node.outputs[0].name if node.outputs else node.op,
        "op": node.op,
        "loc": node.loc or "",
        "precision": precision_of(node),
        "fused": fusion_of(node),
        "onnx": [n.op_type for n in em.emitted()],
    }


def _outputs(em: Emitter, graph: Graph) -> list[onnx.ValueInfoProto]:
    from onnx import helper

    em.begin(None)
    taken_inputs = {v.name for v in graph.inputs} | {t.name for t in em.initializers}
    seen: set[str] = set()
    infos = []
    for value in graph.outputs:
        name = em.name_of(value)
        if name != value.name and name not in taken_inputs and em.rename(name, value.name):
            name = value.name  # a materialized accumulator, made just now
        if name in taken_inputs or name in seen or name != value.name:
            name = em.emit1("Identity", [name])
        seen.add(name)
        dtype = _storage_dtype(value.dtype, em.opset)
        infos.append(helper.make_value_info(name, _tensor_type(dtype, value.type.shape, em)))
    return infos


def _value_info(em: Emitter, graph: Graph, outputs: set[str]) -> list[onnx.ValueInfoProto]:
    from onnx import helper

    skip = outputs | {v.name for v in graph.inputs} | {t.name for t in em.initializers}
    return [
        helper.make_value_info(name, _tensor_type(dtype, shape, em))
        for name, (dtype, shape) in em.types.items()
        if name not in skip
    ]
