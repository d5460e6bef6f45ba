"""Parse the IR text that ``compiler.ir.printer`` writes back into a ``Graph``.

Weights are not in the text (only their names and shapes): pass the data as ``constants``
(``parse(text, graph.constants)``); a ``const @name`` with no data is a ParseError unless
``allow_missing_constants`` is set, for structure-only tests.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from compiler.errors import ParseError
from compiler.ir.graph import Graph, Value
from compiler.ir.types import DIM_NAME, QuantParams, TensorType, parse_scale

_NAME = re.compile(r"[A-Za-z0-9_.]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"-?(?:inf|nan|2\^-?\d+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class _Line:
    """A cursor over one line of IR text."""

    def __init__(self, text: str, lineno: int):
        self.text = text
        self.pos = 0
        self.lineno = lineno

    def error(self, msg: str) -> ParseError:
        return ParseError(f"{msg}\n  {self.text.strip()}", self.lineno, self.pos + 1)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, s: str) -> bool:
        self.skip()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.peek(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str) -> None:
        if not self.accept(s):
            raise self.error(f"expected {s!r}")

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip()
        m = pattern.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def at_end(self) -> bool:
        self.skip()
        return self.pos >= len(self.text)


def _parse_type(line: _Line) -> TensorType:
    dtype = line.match(_IDENT, "a dtype")
    line.expect("[")
    dims: list[int | str] = []
    if not line.accept("]"):
        while True:
            d = line.match(DIM_NAME, "a dimension")
            dims.append(int(d) if d.isdigit() else d)
            if line.accept("]"):
                break
            line.expect(",")
    quant = None
    if line.text.startswith("{", line.pos):
        quant = _parse_quant(line)
    try:
        return TensorType(dtype, tuple(dims), quant)
    except ValueError as e:
        raise line.error(str(e)) from None


#: The keys a type's quantization parameters may hold (``QuantParams``' fields as printed).
QUANT_KEYS = ("scale", "zp", "axis", "group")


def _parse_quant(line: _Line) -> QuantParams:
    fields = _parse_attr_dict(line, quant=True)
    unknown = sorted(set(fields) - set(QUANT_KEYS))
    if unknown:
        raise line.error(
            f"unknown quantization key(s) {unknown}{_did_you_mean(unknown, QUANT_KEYS)}; "
            f"a type's quantization takes {list(QUANT_KEYS)}"
        )
    try:
        axis = fields.get("axis")
        scale = fields["scale"]
        zp = fields.get("zp", [0] * len(scale) if isinstance(scale, list) else 0)
        if axis is None:
            return QuantParams.per_tensor(scale, zp)
        qp = QuantParams.per_channel(scale, axis, zp)
        group = fields.get("group")
        return qp if group is None else dataclasses.replace(qp, group_size=int(group))
    except (KeyError, ValueError, TypeError) as e:
        raise line.error(f"bad quantization parameters: {e}") from None


def _parse_value(line: _Line, quant: bool = False) -> Any:
    line.skip()
    if line.accept("["):
        items: list[Any] = []
        if line.accept("]"):
            return items
        while True:
            items.append(_parse_value(line, quant))
            if line.accept("]"):
                return items
            line.expect(",")
    if line.peek('"'):
        return json.loads(line.match(_STRING, "a string"))
    for word, val in (("true", True), ("false", False), ("none", None)):
        if re.match(word + r"\b", line.text[line.pos :]):
            line.pos += len(word)
            return val
    tok = line.match(_NUMBER, "a value")
    if "^" in tok:
        return parse_scale(tok)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    return float(tok)


def _parse_attr_dict(line: _Line, quant: bool = False) -> dict[str, Any]:
    line.expect("{")
    attrs: dict[str, Any] = {}
    if line.accept("}"):
        return attrs
    while True:
        key = line.match(_IDENT, "an attribute name")
        line.expect("=")
        attrs[key] = _parse_value(line, quant)
        if line.accept("}"):
            return attrs
        line.expect(",")


def _parse_typed_name(line: _Line) -> tuple[str, TensorType]:
    line.expect("%")
    name = line.match(_NAME, "a value name")
    line.expect(":")
    return name, _parse_type(line)


def parse(
    text: str, constants: dict[str, np.ndarray] | None = None, allow_missing_constants: bool = False
) -> Graph:
    """Parse IR text into a verified-free ``Graph`` (call the verifier to check it)."""
    constants = constants or {}
    lines = [
        (i + 1, raw)
        for i, raw in enumerate(text.splitlines())
        if raw.strip() and not raw.strip().startswith("//")
    ]
    if not lines:
        raise ParseError("empty IR text")
    header = _Line(lines[0][1], lines[0][0])
    graph, results = _parse_header(header)
    env: dict[str, Value] = {v.name: v for v in graph.inputs}
    returned = False
    for lineno, raw in lines[1:]:
        line = _Line(raw, lineno)
        if line.accept("}"):
            if not returned:
                raise line.error("graph has no return line")
            return graph
        if returned:
            raise line.error("nothing may follow the return line but '}'")
        if line.accept("return"):
            # a bare `return` is how the printer shows a graph without outputs; the verifier
            # names that error, the parser only reads the text back
            graph.outputs = [] if line.at_end() else _parse_operands(line, env, end=None)
            _check_results(header, results, graph.outputs)
            returned = True
            continue
        _parse_node(line, graph, env, constants, allow_missing_constants)
    raise ParseError("graph is missing its closing '}'", lines[-1][0])


def parse_signature(text: str) -> tuple[Graph, list[TensorType]]:
    """The header of IR ``text`` alone: the graph with its inputs (no nodes yet) and the
    result types the header states; the body is not read."""
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip() and not raw.strip().startswith("//"):
            return _parse_header(_Line(raw, number))
    raise ParseError("empty IR text")


def _parse_header(line: _Line) -> tuple[Graph, list[TensorType]]:
    """The graph with its inputs, and the result types the header states."""
    line.expect("graph")
    line.expect("@")
    graph = Graph(line.match(_NAME, "a graph name"))
    line.expect("(")
    if not line.accept(")"):
        while True:
            name, t = _parse_typed_name(line)
            graph.add_input(name, t, exact=True)
            if line.accept(")"):
                break
            line.expect(",")
    line.expect("->")
    line.expect("(")
    results: list[TensorType] = []
    if not line.accept(")"):
        while True:
            results.append(_parse_type(line))
            if line.accept(")"):
                break
            line.expect(",")
    line.expect("{")
    return graph, results


def _check_results(header: _Line, results: list[TensorType], outputs: list[Value]) -> None:
    """The header's result types are those of the returned values: text a person wrote
    must not say one thing in the signature and return another. A header type without
    quantization parameters leaves them to the value's line."""
    returned = [v.type for v in outputs]
    if len(results) != len(returned) or any(
        r != t if r.quant is not None else r != t.with_quant(None)
        for r, t in zip(results, returned, strict=False)
    ):
        header.pos = len(header.text)
        raise header.error(
            f"the header returns ({', '.join(map(str, results))}) but the return line gives "
            f"({', '.join(map(str, returned))})"
        )


def _parse_operands(line: _Line, env: dict[str, Value], end: str | None) -> list[Value]:
    values: list[Value] = []
    if end is not None and line.accept(end):
        return values
    while True:
        line.expect("%")
        name = line.match(_NAME, "a value name")
        if name not in env:
            raise line.error(f"%{name} is used before it is defined")
        values.append(env[name])
        if end is None and line.at_end():
            return values
        if end is not None and line.accept(end):
            return values
        line.expect(",")


def _parse_node(
    line: _Line,
    graph: Graph,
    env: dict[str, Value],
    constants: dict[str, np.ndarray],
    allow_missing: bool,
) -> None:
    outs = [_parse_typed_name(line)]
    while line.accept(","):
        outs.append(_parse_typed_name(line))
    line.expect("=")
    op = line.match(_IDENT, "an op name")
    inputs: list[Value] = []
    attrs: dict[str, Any] = {}
    if op == "const":
        line.expect("@")
        ref = line.match(_NAME, "a constant name")
        attrs["ref"] = ref
        if ref in constants:
            graph.constants[ref] = constants[ref]
        elif not allow_missing:
            raise line.error(f"no data for constant @{ref}")
    else:
        line.expect("(")
        inputs = _parse_operands(line, env, end=")")
        if line.peek("{"):
            attrs = _parse_attr_dict(line)
        _check_attrs(line, op, attrs)
    loc = None
    if line.accept("loc("):
        loc = json.loads(line.match(_STRING, "a location string"))
        line.expect(")")
    fused: list[str] = []
    if line.accept("fused("):
        fused.append(json.loads(line.match(_STRING, "a location string")))
        while line.accept(","):
            fused.append(json.loads(line.match(_STRING, "a location string")))
        line.expect(")")
    if not line.at_end():
        raise line.error("unexpected text at end of line")
    for name, _ in outs:
        if name in env:
            raise line.error(f"%{name} is defined twice")
    node = graph.create_node(
        op, inputs, attrs, [t for _, t in outs], [n for n, _ in outs], loc, exact_names=True
    )
    node.fused = tuple(fused)
    graph.nodes.append(node)
    for v in node.outputs:
        env[v.name] = v


def _check_attrs(line: _Line, op: str, attrs: dict[str, Any]) -> None:
    """An unknown op or attribute key is an error at its line: a typo such as ``{scael=...}``
    would otherwise be dropped silently and the op would run with its default."""
    from compiler.ir.ops import OPS

    opdef = OPS.get(op)
    if opdef is None:
        return  # an unknown op is the verifier's to report, with the node's name
    unknown = sorted(set(attrs) - set(opdef.attrs))
    if unknown:
        raise line.error(
            f"unknown attribute(s) {unknown} for {op}{_did_you_mean(unknown, list(opdef.attrs))}"
            f"; it takes {sorted(opdef.attrs) or 'none'}"
        )


def _did_you_mean(wrong: list[str], known: Sequence[str]) -> str:
    close = [c for w in wrong for c in difflib.get_close_matches(w, known, n=1)]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
