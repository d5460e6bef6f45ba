"""ONNX ops defined as functions: expand a node into the primitive nodes of its schema's body.

Many newer ONNX ops (Attention, GroupNormalization, MeanVarianceNormalization, ...) are
specified as a function of older ops. For an op with no converter, the importer asks
``expand`` for the body that the op's schema gives at the model's opset (a plain function,
or one built for the node's input types), with the node's attributes substituted and every
internal tensor renamed under a prefix, and converts those nodes instead. That is how ONNX
itself defines the op, so the result means the same; ops the body uses that have no
converter are reported as usual, under locations inside the expanded node.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

    from compiler.ir import TensorType

log = logging.getLogger(__name__)


def _type_proto(t: TensorType) -> onnx.TypeProto:
    from onnx import helper

    from compiler.frontends.onnx_importer import ONNX_DTYPES

    elem = next(code for code, name in ONNX_DTYPES.items() if name == t.dtype)
    dims = [d if isinstance(d, int) else None for d in t.shape]
    return helper.make_tensor_type_proto(elem, dims)


def _body(
    proto: onnx.NodeProto, opset: int, input_types: Sequence[TensorType | None]
) -> onnx.FunctionProto | None:
    """The function body the schema of ``proto``'s op gives at ``opset``, or None."""
    import onnx

    try:
        # Any: the schema's function accessors are missing from onnx's type stubs.
        schema: Any = onnx.defs.get_schema(proto.op_type, opset, proto.domain)
    except onnx.defs.SchemaError:
        return None
    plain = [v for v in schema.function_opset_versions if v <= opset]
    if plain:
        body = onnx.FunctionProto()
        body.ParseFromString(schema.get_function_with_opset_version(max(plain)))
        return body
    dependent = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    present = [name != "" for name in proto.input]
    if not dependent or any(t is None for t, p in zip(input_types, present, strict=False) if p):
        return None
    node = onnx.NodeProto()
    node.CopyFrom(proto)
    for name, attr in schema.attributes.items():  # the builder reads defaults off the node
        if attr.default_value.name and name not in {a.name for a in node.attribute}:
            node.attribute.append(attr.default_value)
    # An absent optional input ("") is an empty type, so later inputs keep their positions.
    types = [_type_proto(t).SerializeToString() if t is not None
             else onnx.TypeProto().SerializeToString() for t in input_types]  # fmt: skip
    try:
        data = schema.get_context_dependent_function_with_opset_version(
            max(dependent), node.SerializeToString(), types
        )
    except Exception as e:  # the builder refuses some attribute/type combinations
        log.debug("no function body for %s: %s", proto.op_type, e)
        return None
    body = onnx.FunctionProto()
    body.ParseFromString(data)
    return body


def expand(
    proto: onnx.NodeProto, opset: int, input_types: Sequence[TensorType | None], prefix: str
) -> list[onnx.NodeProto] | None:
    """The nodes that compute ``proto`` by its schema's function body (internal tensors
    renamed with ``prefix``), or None when the op has no body usable here."""
    import onnx

    body = _body(proto, opset, input_types)
    if body is None:
        return None
    schema = onnx.defs.get_schema(proto.op_type, opset, proto.domain)
    attrs = {a.name: a for a in proto.attribute}
    for name, attr in schema.attributes.items():
        if name not in attrs and attr.default_value.name:
            attrs[name] = attr.default_value
    names = {formal: (proto.input[i] if i < len(proto.input) else "")
             for i, formal in enumerate(body.input)}  # fmt: skip
    names.update({formal: proto.output[i] for i, formal in enumerate(body.output)
                  if i < len(proto.output) and proto.output[i]})  # fmt: skip

    def rename(name: str) -> str:
        return names.get(name, prefix + name) if name else ""

    nodes: list[onnx.NodeProto] = []
    for inner in body.node:
        node = onnx.NodeProto()
        node.CopyFrom(inner)
        node.ClearField("input")
        node.ClearField("output")
        node.input.extend(rename(x) for x in inner.input)
        node.output.extend(rename(x) for x in inner.output)
        node.name = prefix + (inner.name or f"{inner.op_type}_{len(nodes)}")
        node.ClearField("attribute")
        for attr in inner.attribute:
            if attr.ref_attr_name:
                if attr.ref_attr_name in attrs:
                    new = onnx.AttributeProto()
                    new.CopyFrom(attrs[attr.ref_attr_name])
                    new.name = attr.name
                    node.attribute.append(new)
            else:
                node.attribute.append(attr)
                if attr.type == onnx.AttributeProto.GRAPH:  # Scan/Loop/If bodies
                    _rename_captured(node.attribute[-1].g, rename, set())
                for sub in node.attribute[-1].graphs:
                    _rename_captured(sub, rename, set())
        nodes.append(node)
    return nodes


def _rename_captured(graph: onnx.GraphProto, rename: Any, own: set[str]) -> None:
    """Rename, in a subgraph of a function body, the names it takes from the body around
    it (those it does not define itself, at any depth), as the body's own are renamed."""
    own = own | {v.name for v in graph.input} | {i.name for i in graph.initializer}
    own |= {o for node in graph.node for o in node.output if o}
    for node in graph.node:
        node.input[:] = [x if not x or x in own else rename(x) for x in node.input]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _rename_captured(sub, rename, own)
    for out in graph.output:
        if out.name not in own:
            out.name = rename(out.name)
