"""Cut one graph into parts: by device (placement) or into balanced pipeline stages.

Both cuts produce ``Part``s: a run of nodes in topological order, lifted into a graph of its own
whose inputs are the values it reads from earlier parts (or the graph's inputs) and whose
outputs are the values later parts (or the graph's outputs) read. The values keep their names
and types (quantization parameters included) across the cut, so the glue between parts is a
lookup by name and every boundary is visible in the IR text of both sides.

- ``place``: every node goes to the first device whose backend takes it (the backends'
  pre-flight ``unsupported`` rules decide); a topological order that stays on one device while
  it can keeps the parts few and large.
- ``cut_stages``: contiguous stages of balanced estimated cost (MACs, plus a small cost per
  node for the memory-bound ones), each cut placed where the slowest stage plus the bytes that
  cross it costs least.

Pure IR: no toolchain is imported here; ``compiler.multi`` compiles and runs the parts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compiler.errors import DeviceMemoryError, TapeoutError
from compiler.ir.graph import Graph, Node, Value
from compiler.ir.op_facts import node_macs

if TYPE_CHECKING:
    from compiler.target import Target

#: Cost of a node that does no MACs, in MAC-equivalents per output element: such ops are
#: memory-bound, and a stage of nothing but them is not free.
MOVE_COST_PER_ELEMENT = 1.0

#: Cost of moving one byte across a pipeline cut, in MAC-equivalents: a stage sends its results
#: through a pipe (pickle, copy, unpickle), about a byte per nanosecond, on a core that does some
#: fifty MACs per nanosecond. A cut that crosses twice the bytes must buy that much balance.
TRANSFER_COST_PER_BYTE = 50.0


@dataclass
class Part:
    """A run of nodes that one device (or one pipeline stage) executes."""

    index: int
    device: int
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]

    @property
    def cost(self) -> float:
        return sum(node_cost(n) for n in self.nodes)


def node_cost(node: Node) -> float:
    """Estimated cost in MAC-equivalents (``node_macs``, or a per-element move cost)."""
    if node.op == "const":
        return 0.0
    macs = node_macs(node)
    if macs:
        return float(macs)
    size = sum(_numel(v) for v in node.outputs)
    return MOVE_COST_PER_ELEMENT * size


def value_bytes(value: Value) -> int:
    """Bytes of one tensor (symbolic dims count as 1)."""
    bits = int("".join(c for c in value.dtype if c.isdigit()) or 8)
    return _numel(value) * max(bits // 8, 1)


def _numel(value: Value) -> int:
    return math.prod(d if isinstance(d, int) else 1 for d in value.type.shape)


# ---- placement -------------------------------------------------------------------------------


def place(graph: Graph, refused: Sequence[set[str]]) -> dict[int, int]:
    """Device index per compute node (by ``id``): the first device that does not refuse it.

    ``refused[d]`` holds the IR names (``%x``) of the nodes device ``d`` cannot take. A node no
    device takes is an error listing every such node.
    """
    placement: dict[int, int] = {}
    nobody: list[str] = []
    for node in graph.compute_nodes():
        device = next((d for d, names in enumerate(refused) if node.name not in names), None)
        if device is None:
            nobody.append(node.where())
        else:
            placement[id(node)] = device
    if nobody:
        raise TapeoutError(
            f"{len(nobody)} node(s) of @{graph.name} are taken by no device: " + "; ".join(nobody)
        )
    return placement


def group_by_device(graph: Graph, placement: dict[int, int]) -> list[Part]:
    """Parts of consecutive same-device nodes, in a topological order that switches devices
    only when no ready node is left on the current one (few, large parts)."""
    compute = graph.compute_nodes()
    remaining = {id(n): sum(1 for v in n.inputs if v.producer in _set(compute)) for n in compute}
    ready = [n for n in compute if remaining[id(n)] == 0]
    order: list[Node] = []
    device = placement[id(ready[0])] if ready else 0
    while ready:
        pick = next((n for n in ready if placement[id(n)] == device), ready[0])
        ready.remove(pick)
        device = placement[id(pick)]
        order.append(pick)
        for out in pick.outputs:
            for user in out.users:
                if id(user) in remaining:
                    remaining[id(user)] -= 1
                    if remaining[id(user)] == 0:
                        ready.append(user)
    runs: list[list[Node]] = []
    for node in order:
        if runs and placement[id(runs[-1][0])] == placement[id(node)]:
            runs[-1].append(node)
        else:
            runs.append([node])
    return _parts(graph, runs, [placement[id(run[0])] for run in runs])


def _set(nodes: Sequence[Node]) -> set[Node]:
    return set(nodes)


# ---- pipeline stages -------------------------------------------------------------------------


def cut_stages(
    graph: Graph,
    stages: int,
    cost: Callable[[Node], float] = node_cost,
    memory: Sequence[int | None] | None = None,
    devices: Sequence[str] | None = None,
) -> list[Part]:
    """``stages`` contiguous runs of the topological order with balanced cost.

    Cuts are placed one at a time: each where the slower of this stage and the mean of the
    stages left, plus ``TRANSFER_COST_PER_BYTE`` for every byte that crosses, is least.
    ``memory[k]`` (bytes, None: unknown) is what stage k's device holds: a cut that would
    overfill a stage moves, and a model that cannot fit at all is a ``DeviceMemoryError``
    naming the stage and ``devices[k]``, raised before anything is compiled.
    """
    nodes = graph.compute_nodes()
    if stages < 1:
        raise TapeoutError(f"pipeline_stages must be >= 1, got {stages}")
    if stages > len(nodes):
        raise TapeoutError(
            f"pipeline_stages={stages} but @{graph.name} has only {len(nodes)} compute nodes"
        )
    caps: list[int | None] = list(memory) if memory is not None else [None] * stages
    if len(caps) != stages:
        raise TapeoutError(f"{len(caps)} memory sizes for {stages} stages")
    names = list(devices) if devices is not None else [f"device {k}" for k in range(stages)]
    fit = _Fit(graph, nodes, caps, names)
    earliest = fit.earliest_starts()
    prefix = [0.0]
    for node in nodes:
        prefix.append(prefix[-1] + cost(node))
    total = prefix[-1] or 1.0
    cuts: list[int] = []
    for k in range(1, stages):
        start = cuts[-1] if cuts else 0
        low = max(start + 1, earliest[k])
        high = min(len(nodes) - (stages - k), fit.latest_end(start, k - 1))
        if low > high:
            raise fit.refusal(k - 1, start, low)

        def score(i: int, start: int = start, k: int = k) -> tuple[float, int]:
            # The pipeline runs at its slowest stage: this stage, or the mean of the ones left.
            slowest = max(prefix[i] - prefix[start], (total - prefix[i]) / (stages - k))
            return slowest + TRANSFER_COST_PER_BYTE * _crossing_bytes(nodes, i), i

        cuts.append(min(range(low, high + 1), key=score))
    bounds = [0, *cuts, len(nodes)]
    runs = [nodes[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return _parts(graph, runs, [0] * len(runs))


def stage_bytes(graph: Graph, nodes: Sequence[Node]) -> int:
    """Estimated memory of a stage: the constants it reads (once each), the tensors it
    receives, and every tensor it produces (an upper bound: no buffer is reused)."""
    return _Fit(graph, list(nodes), [None], ["-"]).span_bytes(0, len(nodes))


class _Fit:
    """Memory of runs of ``nodes`` against per-stage capacities (None: unchecked)."""

    def __init__(self, graph: Graph, nodes: list[Node], caps: list[int | None], names: list[str]):
        self.graph, self.nodes, self.caps, self.names = graph, nodes, caps, names

    @staticmethod
    def _growth(node: Node, seen: set[int]) -> int:
        """Bytes ``node`` adds to a run that has touched ``seen``: a run holds every distinct
        tensor it reads or writes (constants, received tensors, its own results) once."""
        added = 0
        for v in (*node.inputs, *node.outputs):
            if id(v) not in seen:
                seen.add(id(v))
                added += value_bytes(v)
        return added

    def span_bytes(self, start: int, end: int) -> int:
        seen: set[int] = set()
        return sum(self._growth(n, seen) for n in self.nodes[start:end])

    def latest_end(self, start: int, stage: int) -> int:
        """The furthest cut after ``start`` that keeps ``stage`` within its memory."""
        cap = self.caps[stage]
        if cap is None:
            return len(self.nodes)
        seen: set[int] = set()
        used = 0
        for i in range(start, len(self.nodes)):
            used += self._growth(self.nodes[i], seen)
            if used > cap:
                return i
        return len(self.nodes)

    def earliest_start(self, end: int, stage: int) -> int:
        """The earliest start before ``end`` that keeps ``stage`` within its memory (at least
        one node per earlier stage left)."""
        cap = self.caps[stage]
        if cap is None:
            return stage
        seen: set[int] = set()
        used = 0
        for i in range(end - 1, stage - 1, -1):
            used += self._growth(self.nodes[i], seen)
            if used > cap:
                return i + 1
        return stage

    def earliest_starts(self) -> list[int]:
        """Per stage k: the earliest index stage k may start at so that stages k.. can still
        hold the rest (each packed as full as its memory allows, from the end)."""
        starts = [0] * len(self.caps)
        end = len(self.nodes)
        for k in range(len(self.caps) - 1, 0, -1):
            start = self.earliest_start(end, k)
            if start == end:
                raise self.refusal(k, end - 1, end)
            starts[k] = start
            end = start
        if self.caps[0] is not None and self.span_bytes(0, end) > self.caps[0]:
            raise self.refusal(0, 0, end)
        return starts

    def refusal(self, stage: int, start: int, end: int) -> DeviceMemoryError:
        need = self.span_bytes(start, max(end, start + 1))
        cap = self.caps[stage] or 0
        first, last = self.nodes[start], self.nodes[max(end, start + 1) - 1]
        return DeviceMemoryError(
            f"@{self.graph.name} does not fit {len(self.caps)} stage(s): stage {stage} on "
            f"{self.names[stage]} needs at least {_mib(need)} MiB (weights and activations of "
            f"{first.name} .. {last.name}) but the device has {_mib(cap)} MiB; add stages or "
            "devices with more memory"
        )


def check_fits(graph: Graph, parts: Sequence[Part], devices: Sequence[Target]) -> None:
    """Placement cannot move a node to make room: a part its device cannot hold is refused
    (``DeviceMemoryError``) before anything is compiled. Parts on one device share it."""
    need: dict[int, int] = {}
    for part in parts:
        need[part.device] = need.get(part.device, 0) + stage_bytes(graph, part.nodes)
    for index, used in need.items():
        device = devices[index]
        cap = device.memory_bytes()
        if cap is not None and used > cap:
            raise DeviceMemoryError(
                f"@{graph.name}: the parts placed on {device.name} need {_mib(used)} MiB "
                f"(weights and activations) but its target file gives {_mib(cap)} MiB"
            )


def _mib(count: int) -> str:
    return f"{count / 2**20:.1f}"


def _crossing_bytes(nodes: Sequence[Node], cut: int) -> int:
    before = set(nodes[:cut])
    after = set(nodes[cut:])
    crossing = {id(v): v for n in before for v in n.outputs if any(u in after for u in v.users)}
    return sum(value_bytes(v) for v in crossing.values())


# ---- lifting runs into parts ----------------------------------------------------------------


def _parts(graph: Graph, runs: Sequence[Sequence[Node]], devices: Sequence[int]) -> list[Part]:
    owner = {id(n): i for i, run in enumerate(runs) for n in run}
    graph_outputs = {id(v) for v in graph.outputs}
    parts = []
    for i, run in enumerate(runs):
        inputs: dict[int, Value] = {}
        for node in run:
            for v in node.inputs:
                if v.is_const or (v.producer is not None and owner.get(id(v.producer)) == i):
                    continue
                inputs.setdefault(id(v), v)
        outputs = [
            v
            for node in run
            for v in node.outputs
            if id(v) in graph_outputs or any(owner.get(id(u), i) != i for u in v.users)
        ]
        parts.append(Part(i, devices[i], list(run), list(inputs.values()), outputs))
    return parts


def lift(graph: Graph, part: Part) -> Graph:
    """``part`` as a graph of its own: boundary values become inputs and outputs, with the
    same names and types; the constants it reads come along (by reference, not copied)."""
    sub = Graph(f"{graph.name}_part{part.index}")
    mapping: dict[int, Value] = {}
    for v in part.inputs:
        mapping[id(v)] = sub.add_input(v.name, v.type, exact=True)
    consts = {id(v): v for n in part.nodes for v in n.inputs if v.is_const}
    for v in consts.values():
        data = graph.const_value(v)
        assert data is not None  # is_const values always have data
        ref = v.producer.attrs["ref"] if v.producer is not None else v.name
        sub.constants[ref] = data
        const = sub.create_node("const", [], {"ref": ref}, [v.type], [v.name], exact_names=True)
        sub.nodes.append(const)
        mapping[id(v)] = const.outputs[0]
    for node in part.nodes:
        new = sub.create_node(
            node.op,
            [mapping[id(v)] for v in node.inputs],
            dict(node.attrs),
            [v.type for v in node.outputs],
            [v.name for v in node.outputs],
            node.loc,
            exact_names=True,
        )
        sub.nodes.append(new)
        for old, out in zip(node.outputs, new.outputs, strict=True):
            mapping[id(old)] = out
    sub.outputs = [mapping[id(v)] for v in part.outputs]
    return sub
