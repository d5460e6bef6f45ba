"""A small C emitter: lines, indented blocks, sanitized identifiers, exact literals.

Names from a model file (torch module paths, ONNX node names) reach the generated C only
through ``CEmitter.ident``, which maps them onto ``[A-Za-z_][A-Za-z0-9_]*``, avoids C
keywords and keeps every identifier unique.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_BAD = re.compile(r"[^A-Za-z0-9_]")
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto "
    "if inline int long register restrict return short signed sizeof static struct switch "
    "typedef union unsigned void volatile while _Bool _Complex _Imaginary".split()
)

C_TYPES: dict[str, str] = {
    "i8": "int8_t",
    "u8": "uint8_t",
    "i16": "int16_t",
    "i32": "int32_t",
    "i64": "int64_t",
    "f32": "float",
    "bool": "uint8_t",
}


class CEmitter:
    """Accumulates C source; ``block`` indents, ``ident`` sanitizes and uniquifies."""

    def __init__(self, indent: str = "  "):
        self.lines: list[str] = []
        self.depth = 0
        self.indent = indent
        self.names: dict[str, str] = {}
        self.taken: set[str] = set()

    def line(self, text: str = "") -> None:
        self.lines.append(self.indent * self.depth + text if text else "")

    @contextmanager
    def block(self, head: str, tail: str = "}") -> Iterator[None]:
        self.line(f"{head} {{" if head else "{")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line(tail)

    def ident(self, name: str, prefix: str = "v_") -> str:
        """A C identifier for ``name`` (the same one each time it is asked for)."""
        key = prefix + name
        if key in self.names:
            return self.names[key]
        base = prefix + _BAD.sub("_", name)
        if base[0].isdigit() or base in C_KEYWORDS:
            base = "_" + base
        ident, i = base, 1
        while ident in self.taken:
            i += 1
            ident = f"{base}_{i}"
        self.taken.add(ident)
        self.names[key] = ident
        return ident

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def c_float(value: float) -> str:
    """A float32 literal that reads back to exactly the same float32."""
    v = float(np.float32(value))
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return f"{v:.9g}f" if ("." in f"{v:.9g}" or "e" in f"{v:.9g}") else f"{v:.9g}.0f"


def c_int(value: int, ctype: str = "int32_t") -> str:
    """An integer literal; the most negative values are written as expressions."""
    v = int(value)
    if ctype == "int64_t":
        return f"INT64_C({v})" if v != -(2**63) else "INT64_MIN"
    if v == -(2**31):
        return "INT32_MIN"
    return str(v)


def c_array(values: Iterable[Any], ctype: str, per_line: int = 16) -> list[str]:
    """The body lines of an array initializer."""
    if ctype == "float":
        items = [c_float(float(v)) for v in values]
    else:
        items = [c_int(int(v), ctype) for v in values]
    return [", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)]
