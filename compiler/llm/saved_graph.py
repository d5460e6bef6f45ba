"""A saved step graph that is parsed only when something looks inside it.

Generating text with a loaded LLM artifact needs of each step graph only its signature:
the input names and types (to check and lend the inputs) and the output types. The full
parse of a SmolLM2 step graph (about 1,400 nodes, every value and attribute a Python
object) kept about 18 MB alive per graph for nothing. ``SavedGraph`` reads the header and
the return line of the text at load and parses the rest on first use of ``nodes``,
``constants`` or anything else of a whole graph (the interpreter check of a loaded
artifact, ``print(art.decode.graph)``): from then on it is that graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from compiler.ir.graph import Graph, Value
from compiler.ir.parser import parse, parse_signature

_RETURN = re.compile(r"^\s*return\b(.*)$", re.MULTILINE)
_OPERAND = re.compile(r"%([A-Za-z0-9_.]+)")
#: What ``Graph.__init__`` sets besides the signature: reading any of them parses the text.
_DEFERRED = frozenset({"nodes", "constants", "_names"})


class SavedGraph(Graph):
    """The graph of IR ``text`` whose constants are in ``constants`` (read only when the
    graph is parsed: a weights file's views, nothing copied); ``inputs``, ``outputs`` and
    ``name`` are there without parsing (the outputs are signature values, no producers,
    until the parse replaces them)."""

    def __init__(self, text: str, constants: Mapping[str, np.ndarray]):
        head, results = parse_signature(text)
        returned = _RETURN.findall(text)
        names = _OPERAND.findall(returned[-1]) if returned else []
        self._text: str | None = text
        self._source: Mapping[str, np.ndarray] = constants
        self.name = head.name
        self.inputs = head.inputs
        if len(names) == len(results):
            # One value per name: a graph may return an input, or one value twice.
            given = {v.name: v for v in self.inputs}
            pairs = zip(names, results, strict=True)
            self.outputs = [given.setdefault(n, Value(n, t)) for n, t in pairs]
        else:  # a return line this reading does not understand: the parser says why
            self._parse()

    @property
    def parsed(self) -> bool:
        """Whether the text has been parsed into nodes (the first use of them does it)."""
        return self._text is None

    def _parse(self) -> None:
        assert self._text is not None
        full = parse(self._text, self._source)  # type: ignore[arg-type]  # any Mapping
        self._text = None
        # The signature values stay the graph's: a caller may hold them from before (the
        # interpreter takes the inputs, then walks the nodes, whose first use parses).
        signature = [*vars(self).get("inputs", []), *vars(self).get("outputs", [])]
        parsed = [*full.inputs, *full.outputs]
        if len(signature) == len(parsed):
            done: set[int] = set()
            for mine, theirs in zip(signature, parsed, strict=True):
                if id(mine) not in done and mine is not theirs:
                    done.add(id(mine))
                    _adopt(mine, theirs)
            full.inputs = list(signature[: len(full.inputs)])
            full.outputs = list(signature[len(full.inputs) :])
        vars(self).update(vars(full))

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set yet: those a parse sets.
        if name not in _DEFERRED or vars(self).get("_text") is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._parse()
        return vars(self)[name]


def _adopt(mine: Value, theirs: Value) -> None:
    """Put ``mine`` in the place of the parsed value ``theirs`` (same name): its producer,
    type and uses, and every node's reference to it."""
    mine.type, mine.producer, mine.uses = theirs.type, theirs.producer, theirs.uses
    if theirs.producer is not None:
        outs = theirs.producer.outputs
        outs[next(i for i, v in enumerate(outs) if v is theirs)] = mine
    for node, index in theirs.uses:
        node.inputs[index] = mine
