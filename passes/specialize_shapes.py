"""specialize-shapes: graph inputs that decide shapes become the example's constants.

ONNX passes a reshape's shape, a reduction's axes, top-k's k, a window's length ... as
inputs. When such an input is a graph input the output shapes are symbolic, and a
static-shape backend (TVM, HLS) cannot build the graph. Compilers specialize: with example
inputs at hand, the value is fixed at compile time and checked when the artifact runs
(``compiler.specialize.check_guards``: an ``InputError`` naming the input, the value
compiled for and the value given), so a different value is refused, never computed wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import FLOAT_SHAPE_OPERANDS, shape_operands
from compiler.ir.ops import infer_types
from compiler.ir.types import NUMPY_DTYPES, TensorType, is_int
from passes._match import evaluate
from passes._resize_form import resize_form
from passes.fold_constants import fold_node

if TYPE_CHECKING:
    from compiler.context import PassContext

#: Folding computed shapes, ranges and windows: a window of 2^20 samples is still a weight.
_FOLD_LIMIT = 1 << 20
#: The gather form of slice/pad/tile indexes the flattened input in float32 by the
#: interpreter: exact up to 2^24 elements.
_GATHER_LIMIT = 1 << 24


@dataclass(frozen=True)
class SpecializeShapes:
    """Replace each graph input that decides a shape by a constant of the example's value.

    An input qualifies when it is an integer tensor (a float one only where it is Resize's
    scales) of static shape with at most ``max_elements`` elements, and its value reaches
    an operand listed in ``compiler.ir.op_facts.SHAPE_OPERANDS`` through small values (a
    window's length is cast and divided on its way to the range it sizes). An input that
    reaches no shape operand is data and is never touched. The input stays in the graph's
    signature (unused), and ``ctx.specialized`` records the value for the run-time guard.

    Before (example ``%axes = [1]``)::

        graph @g(%x: f32[2,3], %axes: i64[1]) -> (f32[2',3']) {
          %y: f32[2',3'] = math.reduce(%x, %axes) {kind="sum"}

    After::

        graph @g(%x: f32[2,3], %axes: i64[1]) -> (f32[2,1]) {
          %y: f32[2,1] = math.reduce(%x) {axes=[1], kind="sum"}

    Then every node is re-typed in order: shape operands that became constants give their
    ops static shapes (read off the interpreter on zeros: these ops' shapes depend on
    operand shapes and the shape operands only), constant arithmetic is folded, and the
    dynamic ops take their static forms (``STATIC_FORMS``). Without example inputs
    (``ctx.example_inputs``) only that last step runs, for the dynamic ops whose shape
    operands are constants already (an ONNX function's pads computed from static shapes).
    """

    name: ClassVar[str] = "specialize-shapes"
    max_elements: int = 64

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        examples: Sequence[np.ndarray | None] | None = ctx.example_inputs
        if examples is None or len(examples) != len(graph.inputs):
            examples = [None] * len(graph.inputs)
        chosen = [
            (value, np.asarray(array))
            for value, array in zip(graph.inputs, examples, strict=True)
            if array is not None and self.qualifies(value, np.asarray(array))
        ]
        for value, array in chosen:
            data = np.array(array, dtype=NUMPY_DTYPES[value.dtype])  # a 0-d input stays 0-d
            const = graph.add_const(f"{value.name}_specialized", data, type=value.type)
            graph.replace_all_uses(value, const)
            ctx.specialized[value.name] = {
                "dtype": value.dtype, "shape": list(data.shape), "value": data.tolist(),
            }  # fmt: skip
        # Dynamic ops whose shape operands were constants already (computed from static
        # shapes inside an ONNX function) take their static forms too.
        return settle(graph) or bool(chosen)

    def qualifies(self, value: Value, array: np.ndarray) -> bool:
        """Whether graph input ``value`` (example ``array``) decides a shape: static, small,
        reaching a shape operand, and an integer tensor unless every shape operand it reaches
        takes floats. Its other uses (a window's length divides its angles) read the same
        constant, which the guard keeps true at run time."""
        t = value.type
        if not t.is_static or t.numel > self.max_elements or tuple(array.shape) != t.shape:
            return False
        reached = _shape_uses(value, self.max_elements)
        if not reached:
            return False
        return is_int(t.dtype) or all(use in FLOAT_SHAPE_OPERANDS for use in reached)


def _shape_uses(value: Value, limit: int) -> set[tuple[str, int]]:
    """The (op, operand index) shape operands ``value`` reaches, directly or through values
    of at most ``limit`` elements (a small computation on it: a cast, a split, a sum)."""
    reached: set[tuple[str, int]] = set()
    seen: set[int] = set()
    todo = [value]
    while todo:
        current = todo.pop()
        for node, index in current.uses:
            if index in shape_operands(node.op):
                reached.add((node.op, index))
                continue
            for out in node.outputs:
                small = out.type.is_static and out.type.numel <= limit
                if small and id(out) not in seen:
                    seen.add(id(out))
                    todo.append(out)
    return reached


# ---- re-typing, folding and the static forms ------------------------------------------------
def settle(graph: Graph) -> bool:
    """Re-type every node in order after inputs became constants, fold what is constant,
    and give the dynamic ops whose shape operands are now known their static forms.
    Returns whether anything changed."""
    changed = False
    for node in list(graph.nodes):
        if node.op == "const" or node.dead:
            continue
        before = [v.type for v in node.outputs]
        if _known_shape_operands(graph, node):
            _concretize(graph, node)
        else:
            _reinfer(node)
        changed |= before != [v.type for v in node.outputs]
        if _foldable(node) and fold_node(graph, node, _FOLD_LIMIT) is True:
            changed = True
            continue
        if _reads_nothing(node):
            _fold_empty_reads(graph, node)
            changed = True
            continue
        form = STATIC_FORMS.get(node.op)
        if (
            form is not None
            and _known_shape_operands(graph, node)
            and _static(node)
            and (node.op == "math.reduce" or not _empty(node))
        ):
            form(graph, node)
            changed |= node.dead  # a form that declines leaves the node in place
    return changed


def _foldable(node: Node) -> bool:
    """Constant operands, or the shape of a static tensor (``tensor.shape``)."""
    if node.op == "tensor.shape":
        return node.inputs[0].type.is_static
    return all(v.is_const for v in node.inputs)


def _reads_nothing(node: Node) -> bool:
    """Every runtime operand is empty and every result is not: the results are constants
    (a max over an empty set is its identity, -inf), which TVM cannot reduce to."""
    runtime = [v for v in node.inputs if not v.is_const]
    return (
        bool(runtime)
        and all(v.type.is_static and v.type.numel == 0 for v in runtime)
        and all(v.type.is_static and 0 < v.type.numel <= _FOLD_LIMIT for v in node.outputs)
    )


def _fold_empty_reads(graph: Graph, node: Node) -> None:
    """Replace ``node`` by constants: the interpreter on its (empty) operands."""
    results = evaluate(graph, node, _operands(graph, node, _zeros))
    for out, data in zip(node.outputs, results, strict=True):
        graph.replace_all_uses(out, graph.add_const(out.name, data, type=out.type, loc=node.loc))
    graph.remove(node)


def _empty(node: Node) -> bool:
    """An output of no elements: left to the backend's rules (TVM refuses zero-size
    constants and reshapes), as the dynamic op it was."""
    return any(v.type.numel == 0 for v in node.outputs)


def _static(node: Node) -> bool:
    return all(v.type.is_static for v in [*node.inputs, *node.outputs])


def _known_shape_operands(graph: Graph, node: Node) -> bool:
    """``node`` has shape operands, all of them constants (or absent)."""
    indices = [i for i in shape_operands(node.op) if i < len(node.inputs)]
    return bool(indices) and all(node.inputs[i].is_const for i in indices)


def _operands(graph: Graph, node: Node, data: Callable[[Value], np.ndarray]) -> list[np.ndarray]:
    """Constants as they are, every other operand made by ``data``."""
    out = []
    for value in node.inputs:
        known = graph.const_value(value)
        out.append(known if known is not None else data(value))
    return out


def _dims(value: Value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.type.shape)  # static here


def _zeros(value: Value) -> np.ndarray:
    return np.zeros(_dims(value), NUMPY_DTYPES[value.dtype])


def _concretize(graph: Graph, node: Node) -> None:
    """Static output shapes for a node whose shape operands are constants: its data
    operands must be static; the interpreter on zeros of their shapes gives the sizes."""
    if not all(v.type.is_static for v in node.inputs):
        return
    if all(v.type.is_static for v in node.outputs):
        return  # typed already (a torch trace's topk, a cumsum): no need to run it
    results = evaluate(graph, node, _operands(graph, node, _zeros))
    for out, data in zip(node.outputs, results, strict=True):
        out.type = TensorType(out.dtype, tuple(int(d) for d in data.shape), out.type.quant)


def _reinfer(node: Node) -> None:
    """New output types from the op table where an input became static; a type that stays
    symbolic is left as the importer wrote it (it may know more, e.g. from a torch trace)."""
    if all(v.type.is_static for v in node.outputs):
        return
    types = infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.where())
    for out, t in zip(node.outputs, types, strict=True):
        if t.is_static:
            out.type = TensorType(t.dtype, t.shape, out.type.quant)


def _replace(
    graph: Graph, node: Node, op: str, inputs: Sequence[Value], attrs: dict[str, Any]
) -> None:
    """Put ``op`` where ``node`` was, with ``node``'s output types, names and location."""
    new = graph.create_node(op, inputs, attrs, [v.type for v in node.outputs],
                            [v.name for v in node.outputs], node.loc)  # fmt: skip
    graph.insert_before(node, new)
    for old, value in zip(node.outputs, new.outputs, strict=True):
        graph.replace_all_uses(old, value)
    graph.remove(node)


def _ints(graph: Graph, value: Value) -> list[int]:
    data = graph.const_value(value)
    assert data is not None  # the shape operands are constants here
    return [int(v) for v in np.asarray(data).reshape(-1)]


def _reduce(graph: Graph, node: Node) -> None:
    if len(node.inputs) < 2:
        return
    axes = _ints(graph, node.inputs[1])
    _replace(graph, node, "math.reduce", node.inputs[:1], {**node.attrs, "axes": axes or None})


def _reshape(graph: Graph, node: Node) -> None:
    """reshape/squeeze/unsqueeze_dyn: the same bytes in the (now known) output shape."""
    shape = [int(d) for d in node.outputs[0].type.shape]
    _replace(graph, node, "tensor.reshape", node.inputs[:1], {"shape": shape})


def _expand(graph: Graph, node: Node) -> None:
    shape = [int(d) for d in node.outputs[0].type.shape]
    _replace(graph, node, "tensor.expand", node.inputs[:1], {"shape": shape})


def _split(graph: Graph, node: Node) -> None:
    axis = int(node.attrs["axis"]) % node.inputs[0].type.rank
    sizes = [int(v.type.shape[axis]) for v in node.outputs]
    _replace(graph, node, "tensor.split", node.inputs[:1], {"axis": axis, "sizes": sizes})


def _constant_of_shape(graph: Graph, node: Node) -> None:
    """A scalar constant broadcast to the known shape (not a folded weight of that size)."""
    out = node.outputs[0]
    fill = graph.add_const(
        f"{out.name}_value", np.asarray(node.attrs["value"], NUMPY_DTYPES[out.dtype])
    )
    _replace(graph, node, "tensor.expand", [fill], {"shape": [int(d) for d in out.type.shape]})


def _gather_form(graph: Graph, node: Node) -> None:
    """slice/pad/tile_dyn: only move elements, so with known operands each output element
    is one input element (or the fill value). The interpreter itself, run on the input's
    positions 1..N, says which: a constant index map, gathered from the flattened input;
    constant padding becomes a ``where`` on the map's zeros (the pad positions)."""
    x, out = node.inputs[0], node.outputs[0]
    numel = x.type.numel
    if numel == 0 or numel >= _GATHER_LIMIT:
        return

    known = set(shape_operands(node.op))
    operands = []
    for i, value in enumerate(node.inputs):
        data = graph.const_value(value)
        if i in known and data is not None:
            operands.append(data)
        elif value is x:
            operands.append(np.arange(1, numel + 1, dtype=np.float32).reshape(_dims(x)))
        else:  # the fill value: position 0
            operands.append(np.zeros(_dims(value), np.float32))
    from compiler.interpreter import IMPLS, Context

    where = np.asarray(IMPLS[node.op](Context(graph), node, operands)[0]).astype(np.int64)
    if where.shape == x.type.shape and np.array_equal(where.reshape(-1), np.arange(1, numel + 1)):
        graph.replace_all_uses(out, x)  # nothing moves (pads of 0, a slice of everything)
        graph.remove(node)
        return
    flat = graph.add_node("tensor.reshape", [x], {"shape": [numel]},
                          names=[f"{out.name}_flat"], before=node)  # fmt: skip
    index = graph.add_const(f"{out.name}_index", np.maximum(where - 1, 0))
    moved = graph.add_node("tensor.gather", [flat.outputs[0], index], {"axis": 0},
                           names=[f"{out.name}_moved"], before=node)  # fmt: skip
    result = moved.outputs[0]
    if (where == 0).any():
        fill = node.inputs[2] if len(node.inputs) > 2 else graph.add_const(
            f"{out.name}_fill", np.zeros((), NUMPY_DTYPES[x.dtype]))  # fmt: skip
        mask = graph.add_const(f"{out.name}_kept", where > 0)
        chosen = graph.add_node("tensor.where", [mask, result, fill],
                                names=[f"{out.name}_padded"], before=node)  # fmt: skip
        result = chosen.outputs[0]
    graph.replace_all_uses(out, result)
    graph.remove(node)


#: op -> its rewrite into static ops once its shape operands are constants and its types
#: static. The ops not listed keep their form with static types (cumsum, topk, one_hot:
#: backends lower them with constant operands); range_dyn is folded.
STATIC_FORMS: dict[str, Callable[[Graph, Node], None]] = {
    "math.reduce": _reduce,
    "tensor.reshape_dyn": _reshape,
    "tensor.squeeze_dyn": _reshape,
    "tensor.unsqueeze_dyn": _reshape,
    "tensor.expand_dyn": _expand,
    "tensor.split_dyn": _split,
    "tensor.constant_of_shape": _constant_of_shape,
    "tensor.slice_dyn": _gather_form,
    "tensor.pad_dyn": _gather_form,
    "tensor.tile_dyn": _gather_form,
    "nn.resize_dyn": resize_form,
}
