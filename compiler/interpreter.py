"""The reference interpreter: one NumPy implementation per op, the oracle for every backend.

``interpret(graph, *inputs)`` runs a graph. Float ops compute in float32 (matmuls through
BLAS); integer ops compute exactly (see ``compiler.numerics``) and wrap to their stated
accumulator type. ``observe`` is called with every node and its outputs, which is how the
divergence finder and calibration look inside a run.

The table itself (``IMPLS``, the ``impl`` decorator, ``Context``) is the leaf module
``compiler.interpreter_context``; each ``interpreter_*`` module fills it and imports nothing
but the leaf, and this module imports them all once, so ``interpret`` always sees the whole
table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler import (  # noqa: F401  (each registers its implementations into IMPLS)
    interpreter_dynamic,
    interpreter_extra,
    interpreter_llm,
    interpreter_more,
    interpreter_nn,
    interpreter_ops,
    interpreter_quant,
    interpreter_signal,
    interpreter_vision,
    numerics,
)
from compiler.errors import InputError, TapeoutError, VerifyError
from compiler.interpreter_context import IMPLS, Context
from compiler.ir.graph import Graph, Node
from compiler.ir.ops import OPS
from compiler.ir.types import INT_RANGES, NARROW_FLOAT_DTYPES, NUMPY_DTYPES, TensorType, is_int

log = logging.getLogger(__name__)

def check_inputs(graph: Graph, inputs: Sequence[Any], batch: bool = False) -> list[np.ndarray]:
    """Convert and check user inputs against the graph's input types; InputError if wrong.

    ``batch``: a leading axis of any size replaces the first dimension of inputs of rank 2 or
    more (the HLS C simulation runs one top-function call per sample)."""
    if len(inputs) != len(graph.inputs):
        raise InputError(
            f"graph @{graph.name} takes {len(graph.inputs)} input(s) "
            f"({', '.join('%' + v.name for v in graph.inputs)}), got {len(inputs)}"
        )
    symbols: dict[str, int] = {}
    return [_check_input(value, x, symbols, batch) for value, x in zip(graph.inputs, inputs,
                                                                       strict=True)]


def check_input(value: Any, x: Any) -> np.ndarray:
    """``check_inputs`` for one input of a graph with static shapes (``value``: the graph
    input it is given for)."""
    return _check_input(value, x, {}, False)


def _as_array(value: Any, x: Any) -> np.ndarray:
    try:
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    except (ValueError, TypeError) as e:  # ragged nested lists, objects NumPy cannot take
        raise InputError(f"input %{value.name} is not an array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"input %{value.name} expects {value.type}, got an array of "
                         f"dtype {arr.dtype}")
    return arr


def _check_input(value: Any, x: Any, symbols: dict[str, int], batch: bool) -> np.ndarray:
    arr = _as_array(value, x)
    t = value.type
    if arr.ndim != t.rank:
        raise InputError(
            f"input %{value.name} expects {t}, got an array of shape {list(arr.shape)}"
        )
    skip = 1 if batch and t.rank >= 2 else 0
    for want, got in zip(t.shape[skip:], arr.shape[skip:], strict=True):
        if isinstance(want, str):
            if symbols.setdefault(want, got) != got:
                raise InputError(
                    f"input %{value.name}: dimension {want} is {got} here but "
                    f"{symbols[want]} in an earlier input"
                )
        elif want != got:
            raise InputError(f"input %{value.name} expects {t}, got shape {list(arr.shape)}")
    want_dt = NUMPY_DTYPES[t.dtype]
    if arr.dtype != want_dt:
        # Same kind only: a float array given for an integer input would be truncated.
        same_kind = (
            np.issubdtype(arr.dtype, np.floating) and np.issubdtype(want_dt, np.floating)
        ) or (np.issubdtype(arr.dtype, np.integer) and np.issubdtype(want_dt, np.integer))
        if not same_kind:
            raise InputError(f"input %{value.name} expects dtype {t.dtype}, got {arr.dtype}")
    if t.dtype in INT_RANGES and arr.dtype.kind in "iu" and arr.size:
        lo, hi = INT_RANGES[t.dtype]  # a cast would wrap silently
        if int(arr.min()) < lo or int(arr.max()) > hi:
            raise InputError(f"input %{value.name} expects {t.dtype}: values "
                             f"{arr.min()}..{arr.max()} do not fit")
    arr = arr.astype(want_dt, copy=False)
    if t.dtype in NARROW_FLOAT_DTYPES:  # float32 values given for a float8 input
        top = numerics.narrow_max(t.dtype)
        if arr.size and np.nanmax(np.abs(np.where(np.isinf(arr), 0, arr)), initial=0) > top:
            raise InputError(f"input %{value.name} expects {t.dtype}: values beyond its "
                             f"largest finite value {top:g}")
        arr = numerics.round_narrow(arr, t.dtype)
    # C order for the native runtimes; np.require keeps a 0-d array 0-d (ascontiguousarray
    # would make it 1-d, which TVM then refuses).
    return np.require(arr, requirements="C")


def interpret(
    graph: Graph,
    *inputs: Any,
    observe: Callable[[Node, list[np.ndarray]], None] | None = None,
    count_saturation: bool = False,
    context: Context | None = None,
) -> list[np.ndarray]:
    """Run ``graph`` on ``inputs`` (NumPy arrays); returns the list of output arrays."""
    ctx = context or Context(graph, count_saturation)
    env: dict[int, np.ndarray] = {}
    for value, arr in zip(graph.inputs, check_inputs(graph, inputs), strict=True):
        env[id(value)] = arr
        ctx.symbols.update(
            (d, n) for d, n in zip(value.type.shape, arr.shape, strict=True) if isinstance(d, str)
        )
    missing = sorted({n.op for n in graph.nodes if n.op not in IMPLS})
    if missing:
        raise VerifyError(f"the interpreter has no implementation of {missing}")
    for node in graph.nodes:
        try:
            args = [env[id(v)] for v in node.inputs]
        except KeyError:
            raise VerifyError(f"{node.where()}: an operand is used before it is defined") from None
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                outs = IMPLS[node.op](ctx, node, args)
        except TapeoutError:
            raise
        except Exception as e:  # a NumPy failure inside an op: say which node
            raise VerifyError(f"{node.where()}: interpreter failed: {type(e).__name__}: {e}") from e
        for value, arr in zip(node.outputs, outs, strict=True):
            env[id(value)] = as_type(arr, value.type)
            _check_shape(node, value, env[id(value)])
        if observe is not None:
            observe(node, [env[id(v)] for v in node.outputs])
    return [env[id(v)] for v in graph.outputs]


def _check_shape(node: Node, value: Any, arr: np.ndarray) -> None:
    """The result must have the rank and static dims type inference promised: a backend
    compiled from the types would otherwise disagree with this oracle without an error.
    (Symbolic dims are not compared: two derived ones may share a name.)"""
    want = value.type.shape
    ok = len(want) == arr.ndim and all(
        isinstance(w, str) or w == g for w, g in zip(want, arr.shape, strict=False)
    )
    if not ok:
        raise VerifyError(f"{node.where()}: computes shape {list(arr.shape)} for "
                          f"%{value.name}, but its type says {value.type}")


def as_type(arr: np.ndarray, t: TensorType) -> np.ndarray:
    """``arr`` stored as type ``t`` holds it (its NumPy dtype; bf16 values rounded)."""
    arr = np.asarray(arr)
    want = NUMPY_DTYPES[t.dtype]
    if arr.dtype != want:
        arr = arr.astype(want)
    if t.dtype in NARROW_FLOAT_DTYPES:
        arr = numerics.round_narrow(arr, t.dtype)
    elif t.dtype == "bf16":
        bits = arr.astype(np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000  # round to nearest even
        arr = rounded.astype(np.uint32).view(np.float32)
    return arr


def implemented_ops() -> set[str]:
    return set(IMPLS)


def unimplemented_ops() -> set[str]:
    return set(OPS) - set(IMPLS)


def is_integer_node(node: Node) -> bool:
    return bool(node.inputs) and is_int(node.inputs[0].dtype)
