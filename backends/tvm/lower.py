"""Lower a tapeout graph to a Relax module through ``relax.BlockBuilder``: one rule per op.

``merged_rules()`` maps every op the CPU backend takes to a ``Rule`` (the shared contract of
``compiler.rules``): an optional ``check(node, graph)`` (a reason string when this node cannot
be lowered, so ``unsupported`` can list every bad node before any work) and
``lower(node, ctx)``, which emits Relax bindings and returns one expression per output. The
rules live in tables merged here: elementwise and data movement (``lower_tensor``),
neural-network ops (``lower_nn``), quantized integer ops (``lower_quant``), ``lower_llm``,
``lower_more`` and ``lower_ops_a``.

Layouts. The graph is NCHW; the conv kernels are NHWC (channels contiguous, so the output
channel block is one vector load). ``LowerContext`` records each value's layout and converts
lazily: layout-transparent rules (elementwise, pooling, batch norm, requantize) keep NHWC
flowing from one conv to the next, and only a rule that needs NCHW (flatten, reshape, a graph
output) pays for one transpose, cached per value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.tvm.schedules import CpuParams
from compiler.errors import BackendError, Unsupported
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.ops import get_op
from compiler.ir.types import NUMPY_DTYPES
from compiler.rules import Rule as SharedRule
from compiler.rules import unsupported_nodes

NCHW, NHWC = "NCHW", "NHWC"
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)

#: IR dtype -> TVM dtype string. The types TVM cannot compute in on a CPU travel in the type
#: the interpreter holds them in (``backends.tvm.dtypes_narrow``): bf16, float8 and float4 in
#: float32, 2- and 4-bit integers unpacked in 8 bits.
TVM_DTYPES: dict[str, str] = {
    "f32": "float32",
    "f16": "float16",
    "f64": "float64",
    "i64": "int64",
    "i32": "int32",
    "i16": "int16",
    "i8": "int8",
    "u8": "uint8",
    "u16": "uint16",
    "u32": "uint32",
    "u64": "uint64",
    "bool": "bool",
    "bf16": "float32",
    "f8e4m3fn": "float32",
    "f8e4m3fnuz": "float32",
    "f8e5m2": "float32",
    "f8e5m2fnuz": "float32",
    "f4e2m1": "float32",
    "i4": "int8",
    "i2": "int8",
    "u4": "uint8",
    "u2": "uint8",
}

LowerFn = Callable[[Node, "LowerContext"], Sequence[Any]]
CheckFn = Callable[[Node, Graph], str | None]


@dataclass(frozen=True)
class Rule(SharedRule[Graph, "LowerContext"]):
    """How one op lowers: ``check(node, graph)`` says why a node cannot, ``lower(node, ctx)``
    emits it.

    ``layouts`` is True for rules that accept NHWC operands (read with ``ctx.arg_any``) and
    report the layout of their result through ``ctx.set_layout``.
    """

    layouts: bool = False
    #: The rule packs its constant operands itself (q.block_dense's 4-bit weights, two per
    #: byte), so a sub-byte dtype there is not a missing TVM type.
    packs_constants: bool = False


@dataclass
class LowerContext:
    """The state of one lowering: the block builder, emitted values and their layouts."""

    bb: Any
    graph: Graph
    params: CpuParams
    exprs: dict[int, Any] = field(default_factory=dict)
    layouts: dict[int, str] = field(default_factory=dict)
    converted: dict[tuple[int, str], Any] = field(default_factory=dict)
    kernels: dict[str, int] = field(default_factory=dict)
    out_layout: str = NCHW
    #: Results a rule emitted ahead for other nodes (node id -> its outputs): one kernel for
    #: several nodes, e.g. the q/k/v projections that read the same input.
    ahead: dict[int, Sequence[Any]] = field(default_factory=dict)
    #: The rule table (``lower_node``), the nodes lowered so far and those being lowered.
    rules: dict[str, Any] = field(default_factory=dict)
    lowered: set[int] = field(default_factory=set)
    busy: set[int] = field(default_factory=set)

    # ---- lowering nodes --------------------------------------------------------------------
    def lower_node(self, node: Node) -> None:
        """Lower ``node`` (its operands already lowered) and record its outputs."""
        self.busy.add(id(node))
        try:
            # A rule may have emitted this node's results with an earlier one's.
            ahead = self.ahead.pop(id(node), None)
            outs = ahead if ahead is not None else self.rules[node.op].lower(node, self)
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(
                f"{node.where()}: TVM lowering failed: {type(e).__name__}: {e}"
            ) from e
        finally:
            self.busy.discard(id(node))
        for value, expr in zip(node.outputs, outs, strict=True):
            self.exprs[id(value)] = expr
        self.lowered.add(id(node))

    def ensure(self, value: Value) -> bool:
        """Lower what ``value`` is computed from now, ahead of graph order, so that a rule
        can read it (a RoPE table computed after the projections that it rotates); False
        when it depends on a node being lowered."""
        if value.is_const or id(value) in self.exprs:
            return True
        node = value.producer
        if node is None or id(node) in self.busy:
            return False
        if not all(self.ensure(v) for v in node.inputs):
            return False
        self.lower_node(node)
        return True

    # ---- reading operands ----------------------------------------------------------------
    def const(self, value: Value) -> np.ndarray | None:
        return self.graph.const_value(value)

    def layout(self, value: Value) -> str:
        return self.layouts.get(id(value), NCHW)

    def arg(self, value: Value, layout: str = NCHW) -> Any:
        """``value`` as a Relax expression in ``layout`` (NHWC only for rank-4 values)."""
        from tvm import relax

        data = self.const(value)
        if data is not None:
            if layout == NHWC:
                data = np.ascontiguousarray(data.transpose(TO_NHWC))
            return tvm_const(data, TVM_DTYPES[value.dtype])
        if id(value) not in self.exprs:
            raise BackendError(f"%{value.name} is used before it is lowered")
        have = self.layout(value)
        if have == layout:
            return self.exprs[id(value)]
        key = (id(value), layout)
        if key not in self.converted:
            perm = TO_NHWC if layout == NHWC else TO_NCHW
            expr = relax.op.permute_dims(self.exprs[id(value)], list(perm))
            self.converted[key] = self.bb.emit(expr, f"{value.name}_{layout.lower()}")
        return self.converted[key]

    def arg_any(self, value: Value) -> Any:
        """``value`` in whatever layout it already has (see ``layout``)."""
        return self.arg(value, self.layout(value))

    def common_layout(self, node: Node) -> str:
        """NHWC when a non-constant rank-4 operand already is and the output is rank 4."""
        if node.outputs[0].type.rank != 4:
            return NCHW
        for v in node.inputs:
            if not v.is_const and v.type.rank == 4 and self.layout(v) == NHWC:
                return NHWC
        return NCHW

    def arg_in(self, value: Value, layout: str, rank: int = 4) -> Any:
        """An operand broadcast against a rank-4 result in ``layout``: lower-rank operands
        are first given leading unit dimensions, as NumPy broadcasting would."""
        from tvm import relax

        if layout == NCHW or value.type.rank == 0:
            return self.arg(value)
        if value.type.rank == rank:
            return self.arg(value, layout)
        shape = (1,) * (rank - value.type.rank) + tuple(int(d) for d in value.type.shape)
        data = self.const(value)
        if data is not None:
            return tvm_const(
                np.ascontiguousarray(data.reshape(shape).transpose(TO_NHWC)),
                TVM_DTYPES[value.dtype],
            )
        expr = self.bb.emit(relax.op.reshape(self.arg(value), shape))
        return self.bb.emit(relax.op.permute_dims(expr, list(TO_NHWC)))

    # ---- attributes and emitting -----------------------------------------------------------
    @staticmethod
    def attrs(node: Node) -> dict[str, Any]:
        return get_op(node.op).with_defaults(node.attrs)

    def emit(self, expr: Any, hint: str = "") -> Any:
        return self.bb.emit(expr, hint)

    def emit_te(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str = "",
        opaque: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Emit a tensor-expression compute. Relax expressions among ``args`` become TE
        tensors; everything else (None, numbers, lists, dataclasses) is passed as is.
        ``opaque`` keeps Relax from fusing the kernel with its neighbours."""
        from tvm import relax

        exprs = [a for a in args if isinstance(a, relax.Expr)]

        def call(*tensors: Any) -> Any:
            it = iter(tensors)
            return fn(*(next(it) if isinstance(a, relax.Expr) else a for a in args), **kwargs)

        name = name or fn.__name__
        self.kernels[name] = self.kernels.get(name, 0) + 1
        # An opaque kernel is never fused with its neighbours (op pattern kOpaque = 8).
        attrs = {"op_pattern": 8} if opaque else None
        return self.bb.emit_te(call, *exprs, primfunc_name_hint=name, primfunc_attrs=attrs)

    def set_layout(self, value: Value, layout: str) -> None:
        self.layouts[id(value)] = layout


def tvm_dtype(value: Value) -> str:
    return TVM_DTYPES[value.dtype]


def tvm_const(value: Any, dtype: str) -> Any:
    """A Relax constant; a zero-size one is ``zeros`` of its shape instead, because TVM saves
    a zero-size constant in a form its loader refuses ("Invalid DLTensor file format")."""
    from tvm import relax

    data = np.asarray(value)
    if data.ndim and data.size == 0:
        return relax.op.zeros(data.shape, dtype)
    return relax.const(value, dtype)


def static_shape(value: Value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.type.shape)


def split_siblings(
    y: Any,
    nodes: Sequence[Node],
    ctx: LowerContext,
    finish: Callable[[Node, Any, int], Any] | None = None,
) -> Sequence[Any]:
    """Hand each of ``nodes`` its columns of ``y``, the ``[rows, N]`` result of one kernel
    over their weights' rows concatenated in order (``N`` = the sum of their weights' first
    dimensions), reshaped to its output and parked in ``ctx.ahead``; ``finish(node, part,
    columns)`` may add to a part first. Returns the first node's result."""
    from tvm import relax

    from backends.tvm.lower_heads import fuse_heads

    if finish is None:  # q/k/v split into heads with RoPE: one kernel (lower_heads)
        fuse_heads(y, nodes, ctx)
    start = 0
    for n in nodes:
        size = static_shape(n.inputs[1])[0]
        part = y
        if len(nodes) > 1:
            part = ctx.emit(relax.op.strided_slice(y, [1], [start], [start + size]))
        if finish is not None:
            part = finish(n, part, size)
        ctx.ahead[id(n)] = [ctx.emit(relax.op.reshape(part, static_shape(n.outputs[0])))]
        start += size
    return ctx.ahead.pop(id(nodes[0]))


def merged_rules() -> dict[str, Rule]:
    from backends.tvm import lower_ops_b
    from backends.tvm.dtype_ops import dtype_rules
    from backends.tvm.dtypes_narrow import narrow_rules
    from backends.tvm.lower_int_ops import extend as extend_int_ops
    from backends.tvm.lower_llm import LLM_RULES
    from backends.tvm.lower_more import extend
    from backends.tvm.lower_nn import NN_RULES
    from backends.tvm.lower_norm import extend as extend_norm
    from backends.tvm.lower_ops_a import extend as extend_ops_a
    from backends.tvm.lower_quant import QUANT_RULES
    from backends.tvm.lower_tensor import TENSOR_RULES

    rules = extend_ops_a(
        lower_ops_b.extend(extend({**TENSOR_RULES, **NN_RULES, **QUANT_RULES, **LLM_RULES}))
    )
    return extend_norm(narrow_rules(dtype_rules(extend_int_ops(rules))))


def _guard(node: Node, rule: SharedRule[Any, Any], graph: Graph) -> str | None:
    """What no CPU rule can take: a dtype without a TVM type, symbolic output shapes. (The
    operand dtypes TVM's code generation fails on for one op are that op's rule's check.)"""
    packs = isinstance(rule, Rule) and rule.packs_constants
    bad = [
        v for v in [*node.inputs, *node.outputs]
        if v.dtype not in TVM_DTYPES and not (packs and v.is_const)
    ]
    if bad:
        return f"dtype {bad[0].dtype} has no TVM type"
    if any(not v.type.is_static for v in node.outputs):
        return "symbolic output shape"
    return None


def check_graph(graph: Graph) -> list[Unsupported]:
    """Every node the CPU backend cannot lower, each with a reason (the shared walker)."""
    items = [
        Unsupported(
            "input",
            value.name,
            f"symbolic shape {value.type}; give example inputs so the shape can be specialized",
        )
        for value in graph.inputs
        if not value.type.is_static
    ]
    # A graph input or output no node checks (an output that is an input, an unused input)
    # still needs a TVM type for main's signature.
    items += [
        Unsupported(kind, value.name, f"dtype {value.dtype} has no TVM type")
        for kind, values in (("input", graph.inputs), ("output", graph.outputs))
        for value in values
        if value.dtype not in TVM_DTYPES and not value.is_const
    ]
    from backends.tvm.lower_ops_b import DATA_DEPENDENT

    return items + unsupported_nodes(
        graph, graph, merged_rules(), lambda n: DATA_DEPENDENT.get(n.op, "no TVM lowering"),
        guard=_guard,
    )


def lower_graph(
    graph: Graph, params: CpuParams, cache_pairs: Sequence[tuple[int, int]] = ()
) -> tuple[Any, dict[str, int]]:
    """The Relax ``IRModule`` with one function ``main(*graph inputs) -> outputs``; with
    ``cache_pairs`` (``backends.tvm.lower_cache``) ``main(*graph inputs, slot)`` writes those
    outputs into their inputs in place and returns the others, then the written inputs."""
    from tvm import relax

    from backends.tvm.lower_cache import SLOT_INPUT, emit_cache_writes

    rules = merged_rules()
    bb = relax.BlockBuilder()
    inputs = [
        relax.Var(v.name, relax.TensorType(static_shape(v), tvm_dtype(v))) for v in graph.inputs
    ]
    slot = relax.Var(SLOT_INPUT, relax.TensorType((1,), "int64"))
    ctx = LowerContext(bb, graph, params, rules=rules)
    with bb.function("main", [*inputs, slot] if cache_pairs else inputs):
        with bb.dataflow():
            for value, var in zip(graph.inputs, inputs, strict=True):
                ctx.exprs[id(value)] = var
            for node in graph.nodes:
                if node.op != "const" and id(node) not in ctx.lowered:
                    ctx.lower_node(node)
            written = {o for o, _ in cache_pairs}
            results = [ctx.arg(v) for i, v in enumerate(graph.outputs) if i not in written]
            if cache_pairs:
                results += emit_cache_writes(ctx, graph, list(cache_pairs), slot, inputs)
            out = bb.emit_output(relax.Tuple(results))
        bb.emit_func_output(out)
    return bb.finalize(), ctx.kernels


def numpy_dtype(value: Value) -> np.dtype:
    return NUMPY_DTYPES[value.dtype]
