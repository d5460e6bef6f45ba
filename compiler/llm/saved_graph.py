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
from compiler.ir.parser import _Line, _parse_header, parse

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
        lines = [
            (number, raw)
            for number, raw in enumerate(text.splitlines(), 1)
            if raw.strip() and not raw.strip().startswith("//")
        ]
        if not lines:
            parse(text)  # the parser's error for empty text
        head, results = _parse_header(_Line(lines[0][1], lines[0][0]))
        returned = _RETURN.findall(text)
        names = _OPERAND.findall(returned[-1]) if returned else []
        self._text: str | None = text
        self._source: Mapping[str, np.ndarray] = constants
        self.name = head.name
        self.inputs = head.inputs
        if len(names) == len(results):
            self.outputs = [Value(n, t) for n, t in zip(names, results, strict=True)]
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
        vars(self).update(vars(full))

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set yet: those a parse sets.
        if name not in _DEFERRED or vars(self).get("_text") is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._parse()
        return vars(self)[name]
