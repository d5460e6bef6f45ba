"""The torch.export frontend: ``torch.nn.Module`` / ``ExportedProgram`` -> Graph IR.

The module is exported (``torch.export.export``), decomposed to core ATen, and converted node
by node through one converter table, ``CONVERTERS`` in ``torch_context``: aten overload (or
packet) -> function ``(ctx, node)`` that emits IR nodes. The entries live in ``torch_ops``
(elementwise, reductions), ``torch_ops_shape`` (data movement, constants) and
``torch_ops_nn`` (conv, linear, pooling, norms, attention, resize).

Decomposition keeps the ops the IR has first-class (``KEEP_UNDECOMPOSED``: gelu, silu,
hardswish, hardsigmoid, relu6, layer_norm, linear, matmul, scaled_dot_product_attention,
adaptive pooling, nearest upsampling, reflect/replicate padding): torch 2.13 honours a
decomposition table without them and leaves those nodes in the graph. Everything else arrives
as core ATen. ``F.local_response_norm`` is not an aten op: export traces it into mul,
constant_pad_nd, avg_pool3d (a window over channels only), pow and div, and that is what is
imported (avg_pool3d as an ``nn.avg_pool2d`` over [N, C, D, H*W]).

Parameters, buffers and lifted constants become IR constants named by their fully qualified
name (``layer1.0.conv1.weight``); graph inputs keep the forward argument names; every node's
``loc`` is the torch module path it came from (the fx node name for code in the root
module). Symbolic sizes (``dynamic_shapes``) become symbolic IR dims named like the
``torch.export.Dim`` (``batch``); a slice bounded by one (``position_ids[:seq]``) keeps the
name as its bound, which the interpreter binds from the inputs.

An op without a converter is not fatal on its own: the import goes on, collects every such
node, and raises one ``UnsupportedOpsError`` listing them all. An op without a converter whose
tensor operands are all constants is evaluated with torch instead (``try_fold``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from compiler.errors import FrontendError, Unsupported, UnsupportedOpsError, VerifyError

# The converter modules fill CONVERTERS when they are imported.
from compiler.frontends import (  # noqa: F401
    torch_ops,
    torch_ops_moe,
    torch_ops_more,  # noqa: F401
    torch_ops_nn,
    torch_ops_shape,
)
from compiler.frontends.torch_context import (
    CONVERTERS,
    POISON,
    ImportContext,
    Reject,
    SymbolNames,
    op_name,
    to_numpy,
    torch_dtype_name,
    try_fold,
)
from compiler.ir import Graph, TensorType, Value, verify

if TYPE_CHECKING:
    from torch.export import ExportedProgram
    from torch.fx import Node as FxNode

log = logging.getLogger(__name__)

#: Ops left undecomposed because the IR has them first-class.
KEEP_UNDECOMPOSED: tuple[str, ...] = (
    "aten.gelu.default",
    "aten.silu.default",
    "aten.hardswish.default",
    "aten.hardsigmoid.default",
    "aten.relu6.default",
    "aten.layer_norm.default",
    "aten.native_layer_norm.default",
    "aten.linear.default",
    "aten.matmul.default",
    "aten.scaled_dot_product_attention.default",
    "aten.adaptive_avg_pool2d.default",
    "aten._adaptive_avg_pool2d.default",
    "aten.upsample_nearest2d.default",
    "aten.upsample_nearest2d.vec",
    "aten._upsample_nearest_exact2d.vec",
    "aten.reflection_pad1d.default",
    "aten.reflection_pad2d.default",
    "aten.replication_pad1d.default",
    "aten.replication_pad2d.default",
)

#: Nodes that compute nothing at inference (runtime asserts, shape-range hints).
SKIP: frozenset[str] = frozenset(
    {
        "aten._assert_scalar.default",
        "aten._assert_tensor_metadata.default",
        "aten.sym_constrain_range_for_size.default",
        "aten.sym_constrain_range.default",
        "aten._assert_async.msg",
    }
)


def _symbol_names(ep: ExportedProgram) -> dict[str, str]:
    """torch symbol (``s75``) -> the name of the ``torch.export.Dim`` it came from."""
    names: dict[str, str] = {}
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        shape_env = getattr(getattr(val, "fake_mode", None), "shape_env", None)
        if node.op != "placeholder" or shape_env is None:
            continue
        debug = getattr(shape_env, "source_name_to_debug_name", {})
        for source, var in getattr(shape_env, "source_to_var", {}).items():
            if source in debug:
                names.setdefault(str(var), debug[source])
        break
    return names


# ---- export -----------------------------------------------------------------------------
def _summarize(error: BaseException, limit: int = 600) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    lines = [line for line in text.splitlines() if line.strip()][:8]
    short = "\n  ".join(lines)
    return short if len(short) <= limit else short[:limit] + " ..."


def _size_oblivious() -> Any:
    """torch's size-oblivious mode: sizes of a dynamic dim are not specialized at 0/1.

    Without it, a batch-1 example input makes ``Dim("batch")`` fail (torch guards on the
    size being 1), and slicing a fixed buffer by a dynamic length specializes the length.
    """
    import torch.fx.experimental._config as fx_config

    return fx_config.patch(backed_size_oblivious=True)  # type: ignore[attr-defined]


def export_model(model: Any, example_inputs: Any, dynamic_shapes: Any = None) -> ExportedProgram:
    """``torch.export.export`` in eval mode; FrontendError with torch's message on failure."""
    import contextlib

    import torch

    if example_inputs is None:
        raise FrontendError(
            f"exporting {type(model).__name__} needs example_inputs (a tuple of tensors)"
        )
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    model = model.eval()
    context = _size_oblivious() if dynamic_shapes is not None else contextlib.nullcontext()
    try:
        with context:
            return torch.export.export(model, tuple(example_inputs), dynamic_shapes=dynamic_shapes)
    except Exception as e:
        raise FrontendError(
            f"torch.export failed for {type(model).__name__}: {_summarize(e)}"
        ) from e


def decompose(ep: ExportedProgram) -> ExportedProgram:
    """Core ATen, except ``KEEP_UNDECOMPOSED``."""
    import contextlib

    from torch.export import default_decompositions

    table = default_decompositions()
    for op in list(table):
        if str(op) in KEEP_UNDECOMPOSED:
            del table[op]
    dynamic = any(not isinstance(v, int) for v in ep.range_constraints)
    try:
        with _size_oblivious() if dynamic else contextlib.nullcontext():
            return ep.run_decompositions(table)
    except Exception as e:
        raise FrontendError(f"decomposing the exported program failed: {_summarize(e)}") from e


def import_torch(
    model: Any, example_inputs: Any = None, dynamic_shapes: Any = None, name: str | None = None
) -> Graph:
    """Import a ``torch.nn.Module``, ``ExportedProgram`` or ``torch.fx.GraphModule``.

    A module (GraphModule included) is put in eval mode and exported on ``example_inputs``
    with ``dynamic_shapes`` (``{0: torch.export.Dim("batch")}`` per input); an
    ExportedProgram is taken as it is. The graph is named ``name`` or after the module's
    class. Raises FrontendError if torch cannot export it and UnsupportedOpsError listing
    every op the IR cannot express.
    """
    import torch

    if isinstance(model, torch.export.ExportedProgram):
        ep = model
        default_name = _root_class_name(ep)
    elif isinstance(model, torch.nn.Module):
        default_name = type(model).__name__
        if isinstance(model, torch.fx.GraphModule) and example_inputs is None:
            raise FrontendError("a torch.fx.GraphModule is re-exported: pass example_inputs")
        ep = export_model(model, example_inputs, dynamic_shapes)
    else:
        raise FrontendError(
            f"import_torch takes an nn.Module, GraphModule or ExportedProgram, "
            f"not {type(model).__name__}"
        )
    names = _symbol_names(ep)
    return convert_program(decompose(ep), name or default_name, SymbolNames(names))


def _root_class_name(ep: ExportedProgram) -> str:
    """The class of the exported module: the type of the module stack's root ('' path)."""
    for node in ep.graph.nodes:
        for path, type_name in _module_stack(node):
            if path == "":
                return str(type_name).rsplit(".", 1)[-1]
    return "main"


def _module_stack(node: FxNode) -> list[tuple[str, Any]]:
    """(path, type) entries of ``nn_module_stack``, without torch's placeholder entries."""
    stack = node.meta.get("nn_module_stack") or {}
    return [
        (str(entry[0]), entry[1])
        for entry in stack.values()
        if not str(entry[0]).startswith("_empty_nn_module_stack")
    ]


# ---- conversion ---------------------------------------------------------------------------
def location(node: FxNode) -> str:
    """The torch module path a node came from (``layer1.0.conv1``), else the node's name."""
    stack = _module_stack(node)
    return stack[-1][0] if stack and stack[-1][0] else node.name


def convert_program(ep: ExportedProgram, name: str, symbols: SymbolNames) -> Graph:
    """Convert a decomposed ExportedProgram into a verified, dead-code-free Graph."""
    from torch.export.graph_signature import InputKind, OutputKind

    graph = Graph(name)
    ctx = ImportContext(graph, symbols)
    specs = {spec.arg.name: spec for spec in ep.graph_signature.input_specs}
    unsupported: list[Unsupported] = []
    for node in ep.graph.nodes:
        ctx.node, ctx.loc = node, location(node)
        if node.op == "placeholder":
            spec = specs[node.name]
            if spec.kind == InputKind.USER_INPUT:
                ctx.env[node] = _add_input(ctx, node)
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
                ctx.env[node] = _add_state(ctx, node, _state(ep, spec.target), spec.target)
            else:
                unsupported.append(Unsupported(f"input:{spec.kind.name}", node.name))
                ctx.env[node] = POISON
        elif node.op == "call_function":
            problem = _convert_node(ctx, node)
            if problem is not None:
                unsupported.append(problem)
        elif node.op == "get_attr":
            unsupported.append(Unsupported("get_attr", ctx.loc, "submodules are not supported"))
            ctx.env[node] = POISON
    if unsupported:
        raise UnsupportedOpsError(unsupported, what=f"torch model {name}")
    user_outputs = [
        getattr(spec.arg, "name", repr(spec.arg))
        for spec in ep.graph_signature.output_specs
        if spec.kind == OutputKind.USER_OUTPUT
    ]
    by_name = {node.name: node for node in ep.graph.nodes}
    for out in user_outputs:
        value = ctx.env.get(by_name.get(out)) if out in by_name else None
        if not isinstance(value, Value):
            raise FrontendError(f"model output {out!r} is not a tensor the IR can return")
        graph.outputs.append(value)
    graph.remove_unused()
    verify(graph)
    return graph


def _state(ep: ExportedProgram, target: str) -> Any:
    if target in ep.state_dict:
        return ep.state_dict[target]
    if target in ep.constants:
        return ep.constants[target]
    raise FrontendError(f"exported program has no data for {target!r}")


def _add_state(ctx: ImportContext, node: FxNode, tensor: Any, fqn: str) -> Any:
    """A parameter, buffer or lifted constant as an IR constant named by its FQN."""
    try:
        dtype = torch_dtype_name(tensor.dtype)
    except Reject as e:
        raise FrontendError(f"weight {fqn!r}: {e}") from None
    data = to_numpy(tensor)
    return ctx.graph.add_const(fqn, data, type=TensorType(dtype, tuple(data.shape)))


def _add_input(ctx: ImportContext, node: FxNode) -> Any:
    import torch

    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise FrontendError(f"input {node.name!r} is not a tensor (got {type(val).__name__})")
    try:
        t = TensorType(torch_dtype_name(val.dtype), ctx.symbols.shape(val.shape))
    except Reject as e:
        raise FrontendError(f"input {node.name!r}: {e}") from None
    return ctx.graph.add_input(node.name, t)


def _convert_node(ctx: ImportContext, node: FxNode) -> Unsupported | None:
    """Convert one call_function node into ``ctx.env``; an Unsupported if it cannot be."""
    import torch

    op = op_name(node)
    val = node.meta.get("val")
    if op in SKIP:
        ctx.env[node] = None
        return None
    if op == "_operator.getitem":
        source, index = node.args[0], int(node.args[1])  # type: ignore[arg-type]
        entry = ctx.env.get(source)
        ctx.env[node] = (
            POISON if entry is POISON else entry[index] if isinstance(entry, list | tuple) else None
        )
        if ctx.env[node] is None and isinstance(val, torch.Tensor) and node.users:
            ctx.env[node] = POISON
            what = op_name(source) if isinstance(source, torch.fx.Node) else str(source)
            return Unsupported(f"{what}[{index}]", ctx.loc, "this output is not supported")
        return None
    if isinstance(val, torch.SymInt | torch.SymFloat | torch.SymBool | int | float | bool):
        if op.startswith("aten.") and not op.startswith("aten.sym_"):
            ctx.env[node] = POISON
            return Unsupported(op, ctx.loc, "data-dependent scalar")
        try:
            ctx.env[node] = ctx.symbols.dim(val) if not isinstance(val, float) else val
        except Reject:
            ctx.env[node] = val
        return None
    converter = CONVERTERS.get(op) or CONVERTERS.get(op.rsplit(".", 1)[0])
    inputs = [a for a in node.all_input_nodes]
    if converter is None:
        if not any(ctx.env.get(a) is POISON for a in inputs) and try_fold(ctx, node):
            return None
        ctx.env[node] = POISON
        return Unsupported(op, ctx.loc, "no converter")
    if any(ctx.env.get(a) is POISON for a in inputs):
        ctx.env[node] = POISON
        return None
    ctx.args, ctx.created = ctx.bind(node), []
    try:
        result = converter(ctx, node)
        _check_result(ctx, node, result)
        _name_result(ctx, node, result)
    except Reject as e:
        ctx.env[node] = POISON
        return Unsupported(op, ctx.loc, str(e))
    except (VerifyError, KeyError, IndexError, TypeError, ValueError) as e:  # a converter bug
        raise FrontendError(
            f"converting {op} at {ctx.loc} (node {node.name}) failed: {type(e).__name__}: {e}"
        ) from e
    ctx.env[node] = result
    return None


def _name_result(ctx: ImportContext, node: FxNode, result: Any) -> None:
    """Give the node's name to its result, not to a helper value (a cast) emitted before it."""
    first = result[0] if isinstance(result, list | tuple) and result else result
    if not isinstance(first, Value) or not any(v is first for v in ctx.created):
        return
    for value in ctx.created:
        if value.name == node.name and value is not first:
            value.name, first.name = first.name, value.name  # a swap keeps names unique
            return


def _check_result(ctx: ImportContext, node: FxNode, result: Any) -> None:
    """Compare converter output with torch's; adopt torch's symbolic dims.

    A static shape or dtype mismatch is a converter bug: FrontendError naming the node.
    """
    import torch

    val = node.meta.get("val")
    pairs = (
        zip(result, val, strict=False)
        if isinstance(result, list | tuple) and isinstance(val, list | tuple)
        else [(result, val)]
    )
    for value, meta in pairs:
        if not isinstance(value, Value) or not isinstance(meta, torch.Tensor):
            continue
        dtype = torch_dtype_name(meta.dtype)
        shape = ctx.symbols.shape(meta.shape)
        if (
            value.dtype != dtype
            or value.type.rank != len(shape)
            or any(
                isinstance(a, int) and isinstance(b, int) and a != b
                for a, b in zip(value.shape, shape, strict=True)
            )
        ):
            raise FrontendError(
                f"converting {op_name(node)} at {location(node)} (node {node.name}) gave "
                f"{value.type}, torch says {TensorType(dtype, shape)}"
            )
        if shape != value.shape and not value.type.is_static:
            value.type = TensorType(dtype, shape, value.type.quant)
