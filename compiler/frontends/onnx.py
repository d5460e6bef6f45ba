"""The ONNX frontend: an ``onnx.ModelProto`` or ``.onnx`` file -> Graph IR.

    graph = import_onnx("resnet18.onnx", input_shapes={"input": (1, 3, 224, 224)})

``import_onnx`` loads the model (a truncated or foreign file is a ``FrontendError`` naming
the file), reads its default-domain opset (9 to 21; converters follow the version
differences, e.g. Squeeze axes as an attribute before opset 13 and an input after), checks
that every tensor a node reads is defined, puts the nodes in topological order, and runs
``onnx.checker`` and shape inference on a *skeleton* of the model (the graph without its big
weights, so a ResNet-50 is not serialized twice). Then ``onnx_importer.Importer`` converts
the nodes through one converter table (``onnx_ops``, ``onnx_ops_tensor``), folding static
shape arithmetic on the way; the result is cleaned (``remove_unused``) and verified.

Graph inputs keep their ONNX names (through ``clean_name``); ``dim_param`` dimensions become
symbolic IR dimensions (``batch``), and ``input_shapes`` overrides or specializes them: a
symbol given a size in one input takes that size in every input.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from compiler.errors import FrontendError, Unsupported, UnsupportedOpsError
from compiler.frontends.onnx_importer import (
    Importer,
    Reject,
    ir_dtype,
    symbol_name,
    tensor_name,
)
from compiler.ir import Graph, TensorType, verify
from compiler.ir.types import Dim

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

SUPPORTED_OPSETS = range(9, 22)
"""Default-domain opset versions the converters are written and tested for."""

#: The largest dimension a model may declare: sizes past 2^31 overflow the 32-bit index
#: arithmetic of TVM and HLS loops, and no real tensor is that long.
MAX_DIM = (1 << 31) - 1

_SKELETON_LIMIT = 1024  # elements; bigger initializers are left out of checker and inference


def import_onnx(
    model: onnx.ModelProto | str | os.PathLike[str],
    name: str | None = None,
    input_shapes: Mapping[str, Sequence[Dim]] | None = None,
) -> Graph:
    """Import an ONNX model (a ``ModelProto`` or the path of a ``.onnx`` file) as a Graph.

    ``input_shapes`` maps input names to shapes that replace the declared ones (ints fix a
    dimension, names keep it symbolic). Raises ``FrontendError`` for unreadable or invalid
    models, ``UnsupportedOpsError`` listing every node that cannot be converted, and
    ``ShapeError`` naming the ONNX node whose operands do not fit together.
    """
    proto, where = _load(model)
    opset = _opset(proto, where)
    if proto.functions:
        import onnx.inliner

        proto = onnx.inliner.inline_local_functions(proto)
    nodes = _ordered_nodes(proto.graph, where)
    skeleton = _skeleton(proto, nodes)
    _check(skeleton, where)
    stem = Path(where).stem if where != _proto_label(proto) else ""
    graph = Graph(name or stem or proto.graph.name or "onnx_model")
    importer = Importer(graph, opset, _consumed(proto.graph, nodes))
    importer.initializers = {init.name: init for init in proto.graph.initializer}
    _add_inputs(importer, proto.graph, dict(input_shapes or {}), where)
    importer.convert_nodes(nodes)
    if importer.unsupported:
        raise UnsupportedOpsError(importer.unsupported, what=f"ONNX model {where}")
    for output in proto.graph.output:
        try:
            graph.outputs.append(importer.value(output.name))
        except Reject as e:
            raise FrontendError(f"{where}: graph output {output.name!r}: {e}") from None
    graph.remove_unused()
    verify(graph)
    _cross_check(importer, skeleton, where)
    return graph


# ---- loading and checking -------------------------------------------------------------------
def _load(model: onnx.ModelProto | str | os.PathLike[str]) -> tuple[onnx.ModelProto, str]:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model, _proto_label(model)
    path = Path(model)
    if not path.is_file():
        raise FrontendError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as e:
        raise FrontendError(
            f"{path}: not a readable ONNX model (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from None
    _check_external_data(model, path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except (onnx.checker.ValidationError, ValueError, OSError) as e:
        raise FrontendError(f"{path}: external data cannot be read: {e}") from None
    return model, str(path)


def _check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Every external-data file must be a regular file inside the model's folder (a model
    file must not make the compiler read ``/etc/shadow`` or ``../../secrets``), and its
    offset and length must lie within that file."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    folder = path.parent.resolve()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        where = f"{path}: initializer {tensor.name!r}"
        try:
            info = ExternalDataInfo(tensor)
            offset, length = int(info.offset or 0), int(info.length or 0)
        except (ValueError, TypeError) as e:
            raise FrontendError(f"{where}: invalid external data entry: {e}") from None
        location = Path(info.location or "")
        target = (folder / location).resolve()
        if not info.location or location.is_absolute() or not target.is_relative_to(folder):
            raise FrontendError(f"{where}: external data location {info.location!r} is not "
                                f"inside the model's folder {folder}; refused")
        if not target.is_file():
            raise FrontendError(f"{where}: external data file {info.location!r} is missing")
        size = target.stat().st_size
        if offset < 0 or length < 0 or offset + length > size:
            raise FrontendError(f"{where}: external data range offset={offset} length={length} "
                                f"lies outside {info.location!r} ({size} bytes)")


def _proto_label(model: onnx.ModelProto) -> str:
    """How messages name a model given as a ModelProto rather than a file."""
    return f"model {model.graph.name or '(unnamed)'}"


def _opset(model: onnx.ModelProto, where: str) -> int:
    versions = {o.domain: o.version for o in model.opset_import}
    opset = versions.get("", versions.get("ai.onnx"))
    if opset is None:
        raise FrontendError(f"{where}: not an ONNX model, or it imports no ai.onnx opset")
    if opset < SUPPORTED_OPSETS.start:
        raise FrontendError(
            f"{where}: opset {opset} is older than the supported {SUPPORTED_OPSETS.start}.."
            f"{SUPPORTED_OPSETS.stop - 1}; upgrade it first with "
            "onnx.version_converter.convert_version(model, 13)"
        )
    if opset not in SUPPORTED_OPSETS:
        log.warning("%s: opset %d is newer than the tested 9..21; importing anyway", where, opset)
    return opset


def _subgraph_refs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope tensor names that the subgraphs of ``node`` (If/Loop bodies) read."""
    import onnx

    refs: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            inner = {i.name for i in sub.input} | {i.name for i in sub.initializer}
            for n in sub.node:
                refs.update(x for x in n.input if x and x not in inner)
                refs.update(r for r in _subgraph_refs(n) if r not in inner)
                inner.update(n.output)
    return refs


def _loc(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _ordered_nodes(graph: onnx.GraphProto, where: str) -> list[onnx.NodeProto]:
    """The nodes in topological order; FrontendError for undefined tensors or a cycle."""
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    deps: list[set[int]] = []
    missing: list[str] = []
    for i, node in enumerate(nodes):
        reads = {x for x in node.input if x} | _subgraph_refs(node)
        for name in sorted(reads - defined - producer.keys()):
            missing.append(f"node {_loc(node, i)!r} ({node.op_type}) reads {name!r}")
        deps.append({producer[x] for x in reads if x in producer and x not in defined})
    missing += [
        f"graph output {o.name!r}" for o in graph.output if o.name not in defined | producer.keys()
    ]
    if missing:
        raise FrontendError(
            f"{where}: tensors that no initializer, graph input or node defines: "
            + "; ".join(missing)
        )
    if all(d < i for i, ds in enumerate(deps) for d in ds):
        return nodes
    order = _kahn(deps)
    if len(order) < len(nodes):
        placed = set(order)
        stuck = [_loc(nodes[i], i) for i in range(len(nodes)) if i not in placed]
        raise FrontendError(f"{where}: the graph has a cycle through nodes {stuck}")
    log.info("%s: nodes were not in topological order; sorted them", where)
    return [nodes[i] for i in order]


def _kahn(deps: list[set[int]]) -> list[int]:
    """Topological order of node indices (original order among the ready ones); nodes on a
    cycle are left out."""
    users: list[list[int]] = [[] for _ in deps]
    waiting = [len(ds) for ds in deps]
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for user in users[i]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    return order


def _consumed(graph: onnx.GraphProto, nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Every tensor name some node (in any subgraph too) or a graph output reads."""
    import onnx

    used = {o.name for o in graph.output}
    for node in nodes:
        used.update(x for x in node.input if x)
        for attr in node.attribute:
            graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in graphs:
                used |= _consumed(sub, sub.node)
    return used


def _skeleton(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """The model with ``nodes`` and without its big initializers (declared as inputs instead)
    for the checker and shape inference, which would otherwise serialize every weight."""
    import onnx

    skeleton = onnx.ModelProto()
    skeleton.ir_version = model.ir_version
    skeleton.opset_import.extend(model.opset_import)
    graph, source = skeleton.graph, model.graph
    graph.name = source.name
    graph.node.extend(nodes)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    declared = {i.name for i in source.input}
    for init in source.initializer:
        if int(np.prod(init.dims, dtype=np.int64)) <= _SKELETON_LIMIT:
            graph.initializer.append(init)
        elif init.name not in declared:
            graph.input.append(
                onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
            )
    return skeleton


def _check(skeleton: onnx.ModelProto, where: str) -> None:
    import onnx

    if not skeleton.graph.output:
        raise FrontendError(f"{where}: not an ONNX model (the graph has no outputs)")
    if skeleton.graph.sparse_initializer:
        raise FrontendError(f"{where}: sparse initializers are not supported")
    try:
        onnx.checker.check_model(skeleton, full_check=False)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise FrontendError(f"{where}: invalid ONNX model: {str(e).strip()}") from None


# ---- graph inputs ---------------------------------------------------------------------------
def _declared_shape(value_info: onnx.ValueInfoProto, where: str) -> list[Dim]:
    tensor = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type"):
        kind = value_info.type.WhichOneof("value") or "untyped"
        raise UnsupportedOpsError(
            [Unsupported(f"{kind.replace('_type', '')} input", value_info.name,
                         "the IR's values are tensors; sequence and optional inputs are not "
                         "supported")],
            what=f"ONNX model {where}",
        )  # fmt: skip
    if not tensor.HasField("shape"):
        raise FrontendError(
            f"{where}: input {value_info.name!r} declares no shape; give "
            f"import_onnx(input_shapes={{{value_info.name!r}: (...)}})"
        )
    dims: list[Dim] = []
    for i, d in enumerate(tensor.shape.dim):
        if d.HasField("dim_value"):
            if not 0 <= d.dim_value <= MAX_DIM:
                raise FrontendError(
                    f"{where}: input {value_info.name!r} declares dimension {i} = "
                    f"{d.dim_value}; a dimension must be in 0..{MAX_DIM}"
                )
            dims.append(int(d.dim_value))
        else:
            dims.append(symbol_name(d.dim_param or f"{value_info.name}_dim{i}"))
    return dims


def _add_inputs(
    importer: Importer,
    graph: onnx.GraphProto,
    overrides: dict[str, Sequence[Dim]],
    where: str,
) -> None:
    """Graph inputs (those without an initializer) as IR inputs, with ``overrides`` applied."""
    runtime = [i for i in graph.input if i.name not in importer.initializers]
    by_clean = {tensor_name(i.name): i.name for i in runtime}
    shapes = {i.name: _declared_shape(i, where) for i in runtime}
    given: dict[str, list[Dim]] = {}
    for key, shape in overrides.items():
        onnx_name = key if key in shapes else by_clean.get(key)
        if onnx_name is None:
            raise FrontendError(
                f"{where}: input_shapes names {key!r}, but the inputs are {list(shapes)}"
            )
        if len(shape) != len(shapes[onnx_name]):
            raise FrontendError(
                f"{where}: input_shapes gives {key!r} rank {len(shape)}, the model declares "
                f"{shapes[onnx_name]}"
            )
        given[onnx_name] = [d if isinstance(d, int) else symbol_name(d) for d in shape]
    sizes = {
        old: new
        for name, shape in given.items()
        for old, new in zip(shapes[name], shape, strict=True)
        if isinstance(old, str) and isinstance(new, int)
    }
    for value_info in runtime:
        try:
            dtype = ir_dtype(value_info.type.tensor_type.elem_type, f"input {value_info.name!r}")
        except Reject as e:
            raise FrontendError(f"{where}: {e}") from None
        shape = given.get(value_info.name) or [
            sizes.get(d, d) if isinstance(d, str) else d for d in shapes[value_info.name]
        ]
        value = importer.graph.add_input(
            tensor_name(value_info.name), TensorType(dtype, tuple(shape))
        )
        importer.values[value_info.name] = value


# ---- after the import -----------------------------------------------------------------------
def _cross_check(importer: Importer, skeleton: onnx.ModelProto, where: str) -> None:
    """Warn where ONNX shape inference and the IR disagree on a static shape (a frontend bug
    or an inconsistent model); the IR's inference is the one used."""
    import onnx

    for value_info in skeleton.graph.input:
        value = importer.values.get(value_info.name)
        if value is not None and value_info.type.HasField("tensor_type"):
            dims = value_info.type.tensor_type.shape.dim
            for d, new in zip(dims, value.shape, strict=False):
                d.Clear()
                if isinstance(new, int):
                    d.dim_value = new
                else:
                    d.dim_param = new
    if not _inference_safe(skeleton):
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    except Exception as e:  # inference is only a cross-check: never fail the import on it
        log.warning("%s: ONNX shape inference failed: %s", where, e)
        return
    for value_info in [*inferred.graph.value_info, *inferred.graph.output]:
        value = importer.values.get(value_info.name)
        tensor = value_info.type.tensor_type
        if value is None or not tensor.HasField("shape") or not value.type.is_static:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if None in dims:
            continue
        if tuple(dims) != tuple(value.shape):
            log.warning(
                "%s: ONNX infers shape %s for %r, the IR has %s", where, dims, value_info.name,
                list(value.shape),
            )  # fmt: skip


def _inference_safe(skeleton: onnx.ModelProto) -> bool:
    """False for models on which onnx's C++ shape inference aborts the whole process (a
    Split whose output count disagrees with ``num_outputs``): checked before calling it."""
    for node in skeleton.graph.node:
        if node.op_type == "Split":
            count = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
            if count is not None and count != len(node.output):
                return False
    return True
