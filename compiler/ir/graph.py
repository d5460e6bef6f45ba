"""Graph, Node and Value: the one IR every frontend produces and every backend consumes.

A ``Value`` is a typed tensor that knows its producer and its uses. A ``Node`` applies an op
from the op table (``compiler.ir.ops``) to input values and defines output values; it carries
a source location (torch module path or ONNX node name). A ``Graph`` holds inputs, outputs,
nodes in topological order and the constant data that ``const`` nodes refer to by name.

Mutation goes through the helpers here (``add_node``, ``insert_before``, ``replace_all_uses``,
``remove``, ``add_const``) so that use-lists stay right; each says whether it changed anything.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from compiler.errors import VerifyError
from compiler.ir.types import TensorType, dtype_of_numpy, storage_array

_NAME_OK = re.compile(r"^[A-Za-z0-9_.]+$")
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.]")


def clean_name(name: str) -> str:
    """Map any model-supplied name onto the IR's name alphabet ``[A-Za-z0-9_.]``."""
    cleaned = _NAME_BAD_CHARS.sub("_", name) or "v"
    return cleaned


class Value:
    """A typed tensor in a graph: a graph input, a constant, or a node output."""

    __slots__ = ("name", "type", "producer", "uses")

    def __init__(self, name: str, type: TensorType, producer: Node | None = None):
        self.name = name
        self.type = type
        self.producer = producer
        self.uses: list[tuple[Node, int]] = []

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def is_const(self) -> bool:
        return self.producer is not None and self.producer.op == "const"

    @property
    def users(self) -> list[Node]:
        seen: dict[int, Node] = {}
        for node, _ in self.uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    """One op application: ``outputs = op(inputs) {attrs}``, with a source location."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "loc", "fused", "dead")

    def __init__(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: dict[str, Any] | None,
        outputs: Sequence[Value],
        loc: str | None = None,
    ):
        self.op = op
        self.inputs: list[Value] = list(inputs)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.outputs: list[Value] = list(outputs)
        self.loc = loc
        #: Provenance: the source locations of the nodes a fusion folded into this one, in
        #: order (its output stands for the last one's value); printed as ``fused(...)``.
        self.fused: tuple[str, ...] = ()
        self.dead = False  # set when the node is removed from its graph

    @property
    def output(self) -> Value:
        """The single output of a one-output node."""
        if len(self.outputs) != 1:
            raise VerifyError(f"{self.op} node {self.name} has {len(self.outputs)} outputs, not 1")
        return self.outputs[0]

    @property
    def name(self) -> str:
        return "%" + self.outputs[0].name if self.outputs else self.op

    def where(self) -> str:
        """How error messages point at this node: its IR name and its source location."""
        return f"{self.name} = {self.op}" + (f" (from {self.loc})" if self.loc else "")

    def __repr__(self) -> str:
        return f"<Node {self.where()}>"


class Graph:
    """Inputs, outputs, nodes in topological order, and constants by name."""

    def __init__(self, name: str = "main"):
        self.name = clean_name(name)
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self._names: set[str] = set()

    # ---- names ---------------------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        """A value name not used in this graph yet, derived from ``hint``."""
        base = clean_name(hint)
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def _claim(self, name: str) -> str:
        if not _NAME_OK.match(name):
            raise VerifyError(f"value name {name!r} has characters outside [A-Za-z0-9_.]")
        if name in self._names:
            raise VerifyError(f"value name %{name} is defined twice")
        self._names.add(name)
        return name

    # ---- building ------------------------------------------------------------------------
    def add_input(self, name: str, type: TensorType, exact: bool = False) -> Value:
        value = Value(self._claim(name) if exact else self.fresh_name(name), type)
        self.inputs.append(value)
        return value

    def create_node(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: dict[str, Any] | None,
        out_types: Sequence[TensorType],
        names: Sequence[str] | None = None,
        loc: str | None = None,
        exact_names: bool = False,
    ) -> Node:
        """A node with fresh outputs, its uses recorded, not yet placed in ``nodes``."""
        names = list(names) if names is not None else [op.split(".")[-1]] * len(out_types)
        if len(names) != len(out_types):
            raise VerifyError(f"{op}: {len(names)} names for {len(out_types)} outputs")
        node = Node(op, inputs, attrs, [], loc)
        for n, t in zip(names, out_types, strict=True):
            name = self._claim(n) if exact_names else self.fresh_name(n)
            node.outputs.append(Value(name, t, node))
        for i, v in enumerate(node.inputs):
            v.uses.append((node, i))
        return node

    def add_node(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        out_types: Sequence[TensorType] | None = None,
        names: Sequence[str] | None = None,
        loc: str | None = None,
        before: Node | None = None,
    ) -> Node:
        """Create a node and place it at the end, or before ``before``.

        Without ``out_types`` the output types come from the op table's type inference.
        """
        if out_types is None:
            from compiler.ir.ops import infer_types

            out_types = infer_types(op, [v.type for v in inputs], attrs or {}, where=loc or op)
        node = self.create_node(op, inputs, attrs, out_types, names, loc)
        if before is None:
            self.nodes.append(node)
        else:
            self.insert_before(before, node)
        return node

    def add_const(
        self, hint: str, data: np.ndarray, type: TensorType | None = None, loc: str | None = None
    ) -> Value:
        """Store ``data`` under a fresh constant name and add the ``const`` node defining it."""
        data = np.asarray(data)
        if type is None:
            type = TensorType(dtype_of_numpy(data.dtype), tuple(int(d) for d in data.shape))
        data = storage_array(data)  # ml_dtypes data (float8, int4) is held widened
        ref = clean_name(hint)
        ref_name, i = ref, 0
        while ref_name in self.constants:
            i += 1
            ref_name = f"{ref}_{i}"
        self.constants[ref_name] = data
        node = self.create_node("const", [], {"ref": ref_name}, [type], [hint], loc)
        # Constants go first so that they dominate every use, wherever the use is inserted.
        self.nodes.insert(self._const_prefix_end(), node)
        return node.outputs[0]

    def _const_prefix_end(self) -> int:
        i = 0
        while i < len(self.nodes) and self.nodes[i].op == "const":
            i += 1
        return i

    def const_value(self, value: Value) -> np.ndarray | None:
        """The data of a constant value, or None if ``value`` is not a constant."""
        if not value.is_const:
            return None
        assert value.producer is not None
        return self.constants.get(value.producer.attrs["ref"])

    # ---- mutation ------------------------------------------------------------------------
    def insert_before(self, anchor: Node, node: Node) -> bool:
        try:
            index = next(i for i, n in enumerate(self.nodes) if n is anchor)
        except StopIteration:
            raise VerifyError(
                f"insert_before: {anchor.where()} is not in graph @{self.name}"
            ) from None
        self.nodes.insert(index, node)
        return True

    def set_input(self, node: Node, index: int, value: Value) -> bool:
        old = node.inputs[index]
        if old is value:
            return False
        old.uses.remove((node, index))
        node.inputs[index] = value
        value.uses.append((node, index))
        return True

    def replace_all_uses(self, old: Value, new: Value) -> bool:
        """Make every user of ``old`` (and the graph outputs) use ``new`` instead."""
        if old is new:
            return False
        changed = False
        for node, index in list(old.uses):
            changed |= self.set_input(node, index, new)
        for i, out in enumerate(self.outputs):
            if out is old:
                self.outputs[i] = new
                changed = True
        return changed

    def remove(self, node: Node) -> bool:
        """Remove ``node``; its outputs must be unused. Returns False if it was not here."""
        for out in node.outputs:
            if out.uses or any(o is out for o in self.outputs):
                raise VerifyError(f"cannot remove {node.where()}: %{out.name} is still used")
        for i, n in enumerate(self.nodes):
            if n is node:
                del self.nodes[i]
                break
        else:
            return False
        for index, v in enumerate(node.inputs):
            v.uses.remove((node, index))
        node.dead = True
        for out in node.outputs:
            self._names.discard(out.name)
        if node.op == "const":
            ref = node.attrs["ref"]
            if not any(n.op == "const" and n.attrs.get("ref") == ref for n in self.nodes):
                self.constants.pop(ref, None)
        return True

    def remove_unused(self) -> int:
        """Remove nodes none of whose outputs are used, repeatedly; returns how many."""
        live = {id(v) for v in self.outputs}
        removed = 0
        for node in reversed(list(self.nodes)):
            if any(id(o) in live or o.uses for o in node.outputs):
                live.update(id(v) for v in node.inputs)
                continue
            self.remove(node)
            removed += 1
        return removed

    def topo_sort(self) -> bool:
        """Reorder ``nodes`` topologically (constants first); True if the order changed."""
        import networkx as nx

        dag = nx.DiGraph()
        index = {id(n): i for i, n in enumerate(self.nodes)}
        dag.add_nodes_from(range(len(self.nodes)))
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if v.producer is not None and id(v.producer) in index:
                    dag.add_edge(index[id(v.producer)], i)
        try:
            order = list(
                nx.lexicographical_topological_sort(
                    dag, key=lambda i: (self.nodes[i].op != "const", i)
                )
            )
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(dag)
            names = " -> ".join(self.nodes[a].name for a, _ in cycle)
            raise VerifyError(f"graph @{self.name} has a cycle: {names}") from None
        changed = order != list(range(len(self.nodes)))
        self.nodes = [self.nodes[i] for i in order]
        return changed

    # ---- queries -------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        yield from self.inputs
        for node in self.nodes:
            yield from node.outputs

    def find(self, name: str) -> Value:
        name = name.lstrip("%")
        for v in self.values():
            if v.name == name:
                return v
        raise KeyError(f"no value %{name} in graph @{self.name}")

    def nodes_of(self, *ops: str) -> list[Node]:
        return [n for n in self.nodes if n.op in ops]

    def compute_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.op != "const"]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.compute_nodes():
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def copy(self) -> Graph:
        """A deep structural copy sharing constant arrays (they are treated as immutable):
        the same names, types, attributes (copied, so a pass may edit them), locations and
        fusion provenance."""
        new = Graph(self.name)
        mapping: dict[int, Value] = {}
        for v in self.inputs:
            mapping[id(v)] = new.add_input(v.name, v.type, exact=True)
        for node in self.nodes:
            copied = new.create_node(
                node.op, [mapping[id(v)] for v in node.inputs], copy.deepcopy(node.attrs),
                [v.type for v in node.outputs], [v.name for v in node.outputs], node.loc,
                exact_names=True,
            )
            copied.fused = node.fused
            new.nodes.append(copied)
            for old, out in zip(node.outputs, copied.outputs, strict=True):
                mapping[id(old)] = out
        new.outputs = [mapping[id(v)] for v in self.outputs]
        new.constants = dict(self.constants)
        new._names |= self._names  # names a pass reserved stay reserved in the copy
        return new

    def __str__(self) -> str:
        from compiler.ir.printer import print_graph

        return print_graph(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        if str(self) != str(other) or self.constants.keys() != other.constants.keys():
            return False
        return all(
            a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            for a, b in ((self.constants[k], other.constants[k]) for k in self.constants)
        )

    __hash__ = None  # type: ignore[assignment]


def users_of(values: Iterable[Value]) -> list[Node]:
    """Distinct nodes that use any of ``values``, in first-use order."""
    seen: dict[int, Node] = {}
    for v in values:
        for node, _ in v.uses:
            seen.setdefault(id(node), node)
    return list(seen.values())
