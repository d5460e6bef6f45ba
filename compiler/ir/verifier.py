"""The verifier: every IR invariant, checked in one place, with messages into the IR text."""

from __future__ import annotations

import numpy as np

from compiler.errors import ShapeError, VerifyError
from compiler.ir.graph import Graph, Node
from compiler.ir.op_facts import check_node
from compiler.ir.ops import OPS, infer_types
from compiler.ir.types import NUMPY_DTYPES, TensorType


def _shapes_agree(inferred: TensorType, recorded: TensorType) -> bool:
    if inferred.dtype != recorded.dtype or inferred.rank != recorded.rank:
        return False
    # A symbolic dimension produced by inference (``s'``) may have been specialized or renamed.
    return all(
        a == b or isinstance(a, str) or isinstance(b, str)
        for a, b in zip(inferred.shape, recorded.shape, strict=True)
    )


def _check_signature(node: Node) -> None:
    opdef = OPS.get(node.op)
    if opdef is None:
        raise VerifyError(f"{node.where()}: unknown op {node.op!r}")
    n = len(node.inputs)
    if not opdef.min_inputs <= n <= opdef.max_inputs:
        raise VerifyError(
            f"{node.where()}: {node.op} takes {opdef.min_inputs}"
            f"..{opdef.max_inputs} operands, got {n}"
        )
    unknown = set(node.attrs) - set(opdef.attrs)
    if unknown:
        raise VerifyError(
            f"{node.where()}: unknown attribute(s) {sorted(unknown)} for {node.op}; "
            f"it takes {sorted(opdef.attrs)}"
        )
    from compiler.ir.ops import REQUIRED

    missing = [k for k, v in opdef.attrs.items() if v is REQUIRED and k not in node.attrs]
    if missing:
        raise VerifyError(f"{node.where()}: missing required attribute(s) {missing}")
    expected_outputs = opdef.num_outputs(opdef.with_defaults(node.attrs))
    if len(node.outputs) != expected_outputs:
        raise VerifyError(
            f"{node.where()}: {node.op} has {expected_outputs} output(s), "
            f"node defines {len(node.outputs)}"
        )


def _check_const(graph: Graph, node: Node) -> None:
    ref = node.attrs.get("ref")
    data = graph.constants.get(ref) if isinstance(ref, str) else None
    if data is None:
        raise VerifyError(f"{node.where()}: constant @{ref} has no data")
    t = node.outputs[0].type
    if tuple(data.shape) != tuple(t.shape):
        raise VerifyError(
            f"{node.where()}: constant @{ref} has shape {list(data.shape)}, type says {t}"
        )
    if data.dtype != NUMPY_DTYPES[t.dtype]:
        raise VerifyError(
            f"{node.where()}: constant @{ref} is stored as {data.dtype}, type says {t.dtype}"
        )


def _check_types(node: Node) -> None:
    try:
        inferred = infer_types(node.op, [v.type for v in node.inputs], node.attrs, node.where())
    except ShapeError as e:
        raise ShapeError(str(e)) from None
    for got, want in zip(node.outputs, inferred, strict=True):
        if not _shapes_agree(want, got.type):
            raise ShapeError(
                f"{node.where()}: output %{got.name} is typed {got.type}, "
                f"but {node.op} of these operands gives {want}"
            )


def _check_facts(node: Node) -> None:
    """What ``compiler.ir.op_facts`` leaves undefined: an op reading one zero point of a
    per-channel operand with differing ones (the interpreter and TVM used to read it
    differently), a non-zero conv/dense weight zero point, an integer accumulator with an
    activation other than relu."""
    reason = check_node(node)
    if reason is not None:
        raise VerifyError(f"{node.where()}: {reason}")


def verify(graph: Graph, check_types: bool = True) -> None:
    """Raise VerifyError (or ShapeError) on the first broken invariant.

    Checked: known ops, operand counts and attributes; each value defined once, before every
    use (so no cycles); use-lists match operands; constants have data of the right shape and
    dtype; output types agree with type inference; the op facts are defined (one zero point
    per tensor where an integer op reads one, symmetric conv/dense weights, relu as the only
    activation of an integer accumulator: ``compiler.ir.op_facts``); graph outputs are
    defined.
    """
    defined: dict[int, str] = {}
    names: set[str] = set()

    def define(v_id: int, name: str, where: str) -> None:
        if name in names:
            raise VerifyError(f"{where}: value %{name} is defined twice")
        names.add(name)
        defined[v_id] = name

    for v in graph.inputs:
        define(id(v), v.name, f"graph @{graph.name} input")
        if v.producer is not None:
            raise VerifyError(f"graph input %{v.name} has a producer")
    for node in graph.nodes:
        _check_signature(node)
        for i, v in enumerate(node.inputs):
            if id(v) not in defined:
                raise VerifyError(
                    f"{node.where()}: operand %{v.name} is used before it is defined "
                    "(or the graph has a cycle)"
                )
            if (node, i) not in v.uses:
                raise VerifyError(f"{node.where()}: use-list of %{v.name} misses this node")
        for out in node.outputs:
            if out.producer is not node:
                raise VerifyError(f"{node.where()}: %{out.name} does not point at its producer")
            define(id(out), out.name, node.where())
        if node.op == "const":
            _check_const(graph, node)
        elif check_types:
            _check_types(node)
            _check_facts(node)
    index = {id(n) for n in graph.nodes}
    for v in graph.values():
        for user, i in v.uses:
            if id(user) not in index or i >= len(user.inputs) or user.inputs[i] is not v:
                raise VerifyError(f"use-list of %{v.name} names a node that does not use it")
    if not graph.outputs:
        raise VerifyError(f"graph @{graph.name} has no outputs")
    for v in graph.outputs:
        if id(v) not in defined:
            raise VerifyError(f"graph output %{v.name} is not defined in the graph")


def check_constants_finite(graph: Graph) -> list[str]:
    """Names of float constants holding NaN or Inf (a quantizer must refuse them)."""
    return [
        k
        for k, a in graph.constants.items()
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a))
    ]
