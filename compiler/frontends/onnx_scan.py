"""The ONNX ``Scan`` converter: a loop over a static sequence length, unrolled at import.

Scan (opset 9 on) runs its ``body`` graph once per slice of its scan inputs, carrying state
variables from one iteration to the next and stacking the per-iteration scan outputs. With
the sequence length known at import, the loop is unrolled: each iteration converts the
body's nodes again, with every name the body defines renamed under ``{loc}/it{t}/`` (names
from the enclosing graph stay as they are), so the IR stays a plain dataflow graph that
every backend can take. LinearAttention's function body is such a Scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from compiler.frontends.onnx_importer import OnnxNode, Output, Reject
from compiler.frontends.onnx_table import converts
from compiler.ir import Value

if TYPE_CHECKING:
    import onnx

_MAX_STEPS = 4096  # an unrolled loop longer than this would bloat the graph


def _renamed(body: onnx.GraphProto, prefix: str) -> onnx.GraphProto:
    """A copy of ``body`` whose own names (inputs, initializers, node outputs) carry
    ``prefix``; references to the enclosing graph keep their names."""
    import onnx

    own = {v.name for v in body.input} | {i.name for i in body.initializer}
    own |= {o for node in body.node for o in node.output if o}
    copy = onnx.GraphProto()
    copy.CopyFrom(body)

    def rename(name: str) -> str:
        return prefix + name if name in own else name

    for v in [*copy.input, *copy.output]:
        v.name = rename(v.name)
    for init in copy.initializer:
        init.name = rename(init.name)
    for node in copy.node:
        node.input[:] = [rename(x) if x else x for x in node.input]
        node.output[:] = [rename(x) if x else x for x in node.output]
        if node.name:
            node.name = prefix + node.name
    return copy


def _slice(n: OnnxNode, x: Value, axis: int, t: int, hint: str) -> Value:
    attrs = {"starts": [t], "ends": [t + 1], "axes": [axis]}
    part = n.emit("tensor.slice", [x], attrs, hint=f"{hint}_s")
    return n.emit("tensor.squeeze", [part], {"axes": [axis]}, hint=hint)


def _stack(n: OnnxNode, parts: list[Value], axis: int, index: int) -> Value:
    hint = f"out{index}"
    grown = [
        n.emit("tensor.unsqueeze", [p], {"axes": [axis]}, hint=f"{hint}_u{t}")
        for t, p in enumerate(parts)
    ]
    if len(grown) == 1:
        return grown[0]
    return n.emit("tensor.concat", grown, {"axis": axis}, hint=None if index == 0 else hint)


def _axes(n: OnnxNode, key: str, count: int, ranks: Sequence[int]) -> list[int]:
    axes = [int(a) for a in n.attr(key, [0] * count)]
    if len(axes) != count:
        raise Reject(f"Scan {key} has {len(axes)} entries for {count} tensors")
    return [a % r if r else 0 for a, r in zip(axes, ranks, strict=True)]


@converts("Scan")
def _scan(n: OnnxNode) -> Sequence[Output]:
    body: onnx.GraphProto = n.attr("body")
    m = int(n.attr("num_scan_inputs"))
    states = [n.value(i) for i in range(len(n.inputs) - m)]
    scans = [n.value(i) for i in range(len(n.inputs) - m, len(n.inputs))]
    if not scans:
        raise Reject("Scan without scan inputs")
    in_axes = _axes(n, "scan_input_axes", m, [s.type.rank for s in scans])
    in_dirs = [int(d) for d in n.attr("scan_input_directions", [0] * m)]
    lengths = {s.shape[a] for s, a in zip(scans, in_axes, strict=True)}
    steps = lengths.pop() if len(lengths) == 1 else None
    if not isinstance(steps, int) or steps > _MAX_STEPS:
        raise Reject(f"Scan over a sequence length known only at runtime or > {_MAX_STEPS}")
    k = len(body.output) - len(states)
    outs: list[list[Value]] = [[] for _ in range(k)]
    for t in range(steps):
        g = _renamed(body, f"{n.loc}/it{t}/")
        n.importer.consumed.update(x for node in g.node for x in node.input if x)
        n.importer.consumed.update(o.name for o in g.output)
        for name, value in zip([v.name for v in g.input[: len(states)]], states, strict=True):
            n.importer.bind(name, value)
        for j, (x, axis) in enumerate(zip(scans, in_axes, strict=True)):
            at = steps - 1 - t if in_dirs[j] else t
            n.importer.bind(g.input[len(states) + j].name, _slice(n, x, axis, at, f"x{j}_{t}"))
        results = n.importer.inline(g, f"{n.loc}/it{t}/")
        values = [r if isinstance(r, Value) else n.constant(r, f"{n.loc}_it{t}_c{i}")
                  for i, r in enumerate(results)]  # fmt: skip
        states = values[: len(states)]
        for j in range(k):
            outs[j].append(values[len(states) + j])
    out_axes = _axes(n, "scan_output_axes", k, [o[0].type.rank + 1 for o in outs])
    out_dirs = [int(d) for d in n.attr("scan_output_directions", [0] * k)]
    stacked = [
        _stack(n, parts[::-1] if out_dirs[j] else parts, out_axes[j], j)
        for j, parts in enumerate(outs)
    ]
    return [*states, *stacked]


@converts("Loop")
def _loop(n: OnnxNode) -> Sequence[Output]:
    """Not unrolled yet: say why, rather than "no converter" (Range's function body is a
    Loop whose trip count is the range's runtime length)."""
    if n.known(0) is None or (n.has(1) and n.known(1) is None):
        raise Reject("Loop with a trip count or condition computed at runtime "
                     "(data-dependent control flow)")
    raise Reject("Loop is not unrolled yet (only Scan is)")
