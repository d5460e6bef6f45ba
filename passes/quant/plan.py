"""The quantization plan: which nodes run in integers, which values share a scale, the scales.

Decided on the float graph as the passes before quantize left it (in a pipeline ending in an
integer quantize they make only what an integer layer takes: ``fit_to_quantize``), keyed by
value names so that the same plan applies to batch-respecialized copies and to one-layer
sub-graphs. Nothing is un-fused: a conv/dense with a residual operand or an activation
without an integer form (gelu, ...) is refused by name; a relu/relu6/clip that is the only
user of a conv/dense or add is taken into that layer (``absorbed``).

Which nodes become integer:

- *anchors*: conv1d/conv2d/dense with constant weights, and matmul with a constant right
  operand, always (unless excluded): they are what quantization is for;
- *adds* (``math.add`` of two activations -> ``q.add``), *average pools* (-> ``q.avg_pool2d``,
  ``q.global_avg_pool``) and *data movement* (max pool, reshape, flatten, transpose, concat,
  pad, slice, split, ... on integer data, same scale in and out) when both (a) each activation
  operand is available in integers anyway (produced by an integer node, or also consumed by
  one) and (b) some consumer wants the result in integers (with ``integer_outputs``, the
  power-of-two/FPGA mode, a graph output counts as one). This is a greatest fixpoint:
  start with all of them integer, drop the ones that fail, repeat. A residual stream whose
  other users are float (layer norm in a transformer) therefore stays float, while a
  ResNet's adds and pools run in integers end to end.

Everything else stays float between ``q.dequantize`` and ``q.quantize``.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from compiler.errors import TapeoutError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import fused_activation, integer_keeps, view_ops
from compiler.ir.types import QuantParams, is_float
from compiler.quant_config import CALIBRATORS
from passes.quant.integer_ops import absorbed_gain, integer_kind
from passes.quant.stats import TensorStats, choose_quant

log = logging.getLogger(__name__)

ANCHOR_OPS = ("nn.conv1d", "nn.conv2d", "nn.dense", "nn.matmul")
POOL_OPS = ("nn.avg_pool2d", "nn.global_avg_pool", "nn.adaptive_avg_pool2d")
#: Ops that move integer data without changing it: the output shares the input's scale.
#: The view ops (``compiler.ir.op_facts``), the other layout ops that keep every element,
#: and the ops that pick elements (max pools, nearest resize) or pad with the zero point.
PASSTHROUGH_OPS = (
    *view_ops(),
    "tensor.transpose",
    "tensor.slice",
    "tensor.split",
    "tensor.concat",
    "tensor.pad",
    "nn.max_pool2d",
    "nn.global_max_pool",
    "nn.resize",
)
OVERRIDE_KEYS = ("precision", "per_channel", "calibrator", "percentile")
LAYER_PRECISIONS = ("int8", "int16", "float")


@dataclass(frozen=True)
class QuantOptions:
    """The scheme: dtypes, symmetry, granularity, calibrator, exclusions and overrides."""

    activation_dtype: str = "i8"
    weight_dtype: str = "i8"
    symmetric: bool = True
    per_channel: bool = True
    power_of_two: bool = False
    calibrator: str = "minmax"
    percentile: float = 99.99
    exclude: tuple[str, ...] = ()
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Count graph outputs as integer consumers (FPGA-style: integer up to the last op).
    integer_outputs: bool = False
    #: dtype of the float islands between integer layers ("f32" or "f64").
    island_dtype: str = "f32"
    #: Softmax, layer norm, GELU and activation matmuls in integers (passes.quant.integer_ops).
    integer_ops: bool = False


@dataclass
class Layer:
    """One node of the float graph that becomes integer."""

    key: str  # the float node's first output name (unique)
    name: str  # what reports and overrides call it: its source location, else ``key``
    op: str
    kind: str  # "anchor" | "add" | "pool" | "move"
    out: str  # the value the integer result stands for (after an absorbed activation)
    act: str = "none"  # relu / relu6 / clip, applied in integers
    act_args: list[float] = field(default_factory=list)
    absorbed: str | None = None  # key of a relu/relu6/clip node folded into a q.add
    gain: float = 1.0  # a positive scalar factor absorbed into a bmm's requantize
    inputs: list[str] = field(default_factory=list)  # activation operands (integer inputs)
    precision: str = "int8"  # "int8" | "int16" (mixed precision's wider choice)
    per_channel: bool = True
    calibrator: str = "minmax"
    percentile: float = 99.99


@dataclass
class Plan:
    """Integer layers, values consumed as integers, shared-scale groups, and the scales."""

    options: QuantOptions
    layers: dict[str, Layer]
    int_values: set[str]
    group_of: dict[str, str]
    quant: dict[str, QuantParams] = field(default_factory=dict)
    dtype: dict[str, str] = field(default_factory=dict)
    calib_clip: dict[str, float] = field(default_factory=dict)

    def layer_of_node(self, node: Node) -> Layer | None:
        return self.layers.get(node.outputs[0].name) if node.outputs else None

    def absorbed_keys(self) -> set[str]:
        return {lay.absorbed for lay in self.layers.values() if lay.absorbed}


def node_key(node: Node) -> str:
    return node.outputs[0].name if node.outputs else node.op


def node_names(node: Node) -> list[str]:
    return [n for n in (node.loc, node_key(node), node.op, node.op.split(".")[-1]) if n]


def matches(node: Node, patterns: Iterable[str]) -> bool:
    """True if a pattern (fnmatch) names the node's location, output, op or short op."""
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in node_names(node))


def override_for(node: Node, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for pattern, values in overrides.items():
        if matches(node, [pattern]):
            unknown = set(values) - set(OVERRIDE_KEYS)
            if unknown:
                raise TapeoutError(
                    f"override {pattern!r}: unknown key(s) {sorted(unknown)}; "
                    f"expected {', '.join(OVERRIDE_KEYS)}"
                )
            return dict(values)
    return {}


# ---- deciding integer nodes -----------------------------------------------------------------
def _activation_operands(graph: Graph, node: Node) -> list[int]:
    """Operand indices that must be integer when ``node`` runs in integers."""
    return [i for i, v in enumerate(node.inputs) if not v.is_const and is_float(v.dtype)]


def _kind(graph: Graph, node: Node, options: QuantOptions) -> str | None:
    if not node.outputs or not all(is_float(v.dtype) for v in node.outputs):
        return None
    if options.integer_ops and node.op not in PASSTHROUGH_OPS and node.op != "math.add":
        kind = integer_kind(graph, node, _activation_operands(graph, node))
        if kind is not None:
            return kind
    if node.op in ANCHOR_OPS:
        weight = node.inputs[1]
        if node.inputs[0].is_const or graph.const_value(weight) is None:
            return None
        if node.op == "nn.matmul" and weight.type.rank != 2:
            return None
        return "anchor"
    if node.op == "math.add":
        return "add" if len(_activation_operands(graph, node)) == 2 else None
    if node.op in POOL_OPS:
        return "pool" if _integer_pool(node) else None
    if node.op in PASSTHROUGH_OPS:
        operands = _activation_operands(graph, node)
        return "move" if operands and len(operands) == len(node.inputs) else None
    return None


def _integer_pool(node: Node) -> bool:
    """Average pools whose window count is the same everywhere (one multiplier)."""
    if node.op == "nn.global_avg_pool":
        return node.inputs[0].type.rank == 4
    if node.op == "nn.adaptive_avg_pool2d":
        return list(node.attrs["output_size"]) == [1, 1]
    if node.attrs.get("ceil_mode"):
        return False
    return bool(node.attrs.get("count_include_pad", True)) or not any(node.attrs.get("pads") or [])


def build_plan(graph: Graph, options: QuantOptions) -> Plan:
    """Decide the integer layers of float ``graph`` (see the module docstring)."""
    layers: dict[str, Layer] = {}
    for node in graph.nodes:
        kind = _kind(graph, node, options)
        if kind is None or matches(node, options.exclude):
            continue
        over = override_for(node, options.overrides)
        if over.get("precision", "int8") in ("float", "fp32"):
            continue
        layers[node_key(node)] = _make_layer(graph, node, kind, options, over)
    owner = {lay.absorbed: k for k, lay in layers.items() if lay.absorbed}
    for key in owner:
        layers.pop(key, None)  # an absorbed multiply is no layer of its own
    outputs = set()
    if options.integer_outputs:
        outputs = {v.name for v in graph.outputs} | _table_sources(graph)
    _fixpoint(graph, layers, owner, outputs)
    int_values = {v.name for v in graph.values() if _int_uses(v, layers) or v.name in outputs}
    return Plan(options, layers, int_values, _groups(graph, layers))


def _table_sources(graph: Graph) -> set[str]:
    """Values that reach a graph output only through float elementwise math on them alone.

    Such a tail (hardswish, sigmoid, ... before the output) is a function of one tensor; an
    integer backend evaluates it as a 256-entry table when that tensor is 8-bit, so in
    integer-output mode the tensor itself is wanted in integers.
    """
    from compiler.ir.ops import OPS

    memo: dict[str, str] = {}

    def source(value: Value) -> str:
        """The one value ``value`` is an elementwise function of (itself if none)."""
        if value.name in memo:
            return memo[value.name]
        node = value.producer
        spec = OPS.get(node.op) if node is not None else None
        result = value.name
        if node is not None and spec is not None and "elementwise" in spec.tags \
                and node.op != "const" and len(node.outputs) == 1:
            found = set()
            for operand in node.inputs:
                data = graph.const_value(operand)
                if data is None or data.size != 1:
                    found.add(source(operand))
            if len(found) == 1:
                result = found.pop()
        memo[value.name] = result
        return result

    sources = {source(out) for out in graph.outputs}
    return {name for name in sources
            if name not in {v.name for v in graph.outputs}
            and graph.find(name).producer is not None}


def integer_clamp(node: Node) -> tuple[str, list[float]] | None:
    """The (act, act_args) of a relu/relu6/clip node, as an integer layer applies it (the
    activations ``FusedActivation.integer`` marks); None for any other node."""
    fused = fused_activation(node.op, node.attrs)
    return fused if fused is not None and fused[0] != "none" and integer_keeps(fused[0]) else None


def _make_layer(
    graph: Graph, node: Node, kind: str, options: QuantOptions, over: dict[str, Any]
) -> Layer:
    precision = over.get("precision", "int8")
    if precision not in LAYER_PRECISIONS + ("fp32",):
        raise TapeoutError(
            f"layer {node_names(node)[0]}: precision {precision!r} is not one of "
            f"{', '.join(LAYER_PRECISIONS)}"
        )
    calibrator = over.get("calibrator", options.calibrator)
    if calibrator not in CALIBRATORS:
        raise TapeoutError(f"layer {node_names(node)[0]}: unknown calibrator {calibrator!r}")
    layer = Layer(
        key=node_key(node),
        name=node.loc or node_key(node),
        op=node.op,
        kind=kind,
        out=node_key(node),
        precision=precision,
        per_channel=bool(over.get("per_channel", options.per_channel)),
        calibrator=calibrator,
        percentile=float(over.get("percentile", options.percentile)),
        inputs=[node.inputs[i].name for i in _activation_operands(graph, node)],
    )
    if kind == "anchor":
        _check_anchor(node)
        layer.inputs = layer.inputs[:1]
        layer.act = node.attrs.get("act", "none")
        layer.act_args = [float(a) for a in node.attrs.get("act_args", [])]
    elif kind == "bmm" and (gain := absorbed_gain(graph, node)) is not None:
        layer.absorbed, layer.gain = node_key(gain[0]), gain[1]
        layer.out = gain[0].outputs[0].name
    if (kind == "add" or node.op in CLAMPED_ANCHORS) and layer.act == "none":
        _absorb_clamp(graph, node, layer)
    return layer


#: Anchors that take a following relu/relu6/clip into their requantize (matmul keeps it
#: apart, as fuse-bias-act does).
CLAMPED_ANCHORS = ("nn.conv1d", "nn.conv2d", "nn.dense")


def _absorb_clamp(graph: Graph, node: Node, layer: Layer) -> None:
    """A relu/relu6/clip that is the only user of ``node``'s result runs in the integer
    layer (q.add's act, the requantize's clamp): the layer then stands for its result."""
    users = node.outputs[0].users
    clamp = integer_clamp(users[0]) if len(users) == 1 else None
    if clamp is not None and not any(o is node.outputs[0] for o in graph.outputs):
        layer.act, layer.act_args = clamp
        layer.absorbed = node_key(users[0])
        layer.out = users[0].outputs[0].name


def _check_anchor(node: Node) -> None:
    """The forms an integer conv/dense cannot take: quantize reads the graph as the passes
    before it left it (no un-fusing), and these have no integer form."""
    if node.op in CLAMPED_ANCHORS and len(node.inputs) > 3:
        raise TapeoutError(
            f"quantize: {node.where()} has a residual operand (fuse-residual's form); an "
            "integer skip connection is a q.add after the requantize: run fuse-residual "
            "only in float pipelines (before an integer quantize it declines)"
        )
    act = node.attrs.get("act", "none")
    if not integer_keeps(act):
        raise TapeoutError(
            f"quantize: {node.where()} carries act={act!r}, which an integer layer cannot "
            "keep (only relu, relu6, clip): before an integer quantize, fuse-bias-act "
            "leaves it a separate op (fuse-bias-act{integer=true}); or exclude the layer"
        )


def _int_uses(value: Value, layers: dict[str, Layer], skip: Node | None = None) -> bool:
    """True if an integer layer other than ``skip`` consumes ``value`` as an integer operand."""
    for user, index in value.uses:
        layer = layers.get(node_key(user))
        if layer is None or user is skip:
            continue
        if layer.kind in ("anchor", "layernorm") and index != 0:
            continue  # weights and bias are constants of their own
        return True
    return False


def _fixpoint(
    graph: Graph, layers: dict[str, Layer], owner: dict[str, str], outputs: set[str]
) -> None:
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            layer = layers.get(node_key(node))
            if layer is None or layer.kind in ANCHOR_KINDS:
                continue
            available = all(
                _produced_int(node.inputs[i], layers, owner)
                or _int_uses(node.inputs[i], layers, node)
                for i in _activation_operands(graph, node)
            )
            outs = [graph.find(layer.out)] if layer.absorbed else node.outputs
            wanted = any(_int_uses(v, layers) or v.name in outputs for v in outs)
            if not (available and wanted):
                del layers[layer.key]
                changed = True


def _produced_int(value: Value, layers: dict[str, Layer], owner: dict[str, str]) -> bool:
    if value.producer is None:
        return False
    key = node_key(value.producer)
    layer = layers.get(owner.get(key, key))
    return layer is not None and (layer.out == value.name or layer.kind == "move")


#: Layers that are integer whatever their neighbours are (their operands are quantized).
ANCHOR_KINDS = ("anchor", "bmm", "softmax", "layernorm")


def _groups(graph: Graph, layers: dict[str, Layer]) -> dict[str, str]:
    """Union-find over values that must share one scale (data movement ties in to out)."""
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        root = name
        while parent[root] != root:
            root = parent[root]
        parent[name] = root
        return root

    for node in graph.nodes:
        layer = layers.get(node_key(node))
        if layer is None or layer.kind != "move":
            continue
        names = layer.inputs + [v.name for v in node.outputs]
        for n in names:
            parent.setdefault(n, n)
        root = find(names[0])
        for n in names[1:]:
            parent[find(n)] = root
    return {n: find(n) for n in list(parent)}


# ---- scales ---------------------------------------------------------------------------------
def assign_scales(plan: Plan, stats: dict[str, TensorStats]) -> None:
    """Fill ``plan.quant``/``dtype``/``calib_clip`` for every integer value, group by group."""
    options = plan.options
    members: dict[str, list[str]] = {}
    for name in sorted(needs_scale(plan)):
        members.setdefault(plan.group_of.get(name, name), []).append(name)
    wide = _wide_values(plan)
    calib = _value_calibrators(plan)
    for names in members.values():
        merged = stats[names[0]]
        for n in names[1:]:
            merged = merged.merged(stats[n])
        dtype = "i16" if any(n in wide for n in names) else options.activation_dtype
        calibrator, pct = next(
            (calib[n] for n in names if n in calib), (options.calibrator, options.percentile)
        )
        choice = choose_quant(
            merged,
            dtype,
            calibrator,
            options.symmetric and dtype != "u8",
            options.power_of_two,
            pct,
        )
        for n in names:
            plan.quant[n], plan.dtype[n], plan.calib_clip[n] = choice.quant, dtype, choice.clipped


def needs_scale(plan: Plan) -> set[str]:
    """Values that exist in integer form: consumed as integers, or produced by data movement."""
    produced = {
        lay.out
        for lay in plan.layers.values()
        if lay.kind in ("add", "pool", "bmm", "softmax", "layernorm", "table")
    }
    return set(plan.int_values) | produced | set(plan.group_of)


def _wide_values(plan: Plan) -> set[str]:
    """Inputs and outputs of int16 layers get 16-bit activations."""
    wide: set[str] = set()
    for layer in plan.layers.values():
        if layer.precision == "int16":
            wide.add(layer.out)
            wide.update(layer.inputs)
    roots = {plan.group_of.get(n, n) for n in wide}
    return wide | {n for n, r in plan.group_of.items() if r in roots}


def _value_calibrators(plan: Plan) -> dict[str, tuple[str, float]]:
    return {
        lay.out: (lay.calibrator, lay.percentile)
        for lay in plan.layers.values()
        if (lay.calibrator, lay.percentile) != (plan.options.calibrator, plan.options.percentile)
    }
