"""A small C++ text emitter: lines, indented blocks, constant arrays, safe comments.

Generated code is built only through this class, so indentation, array literals and the
escaping of model names (``backends.hls.names``) are done in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from backends.hls.names import comment

#: C++ type of each IR integer dtype (i4/u4 are stored unpacked, as the interpreter does).
CTYPES: dict[str, str] = {
    "i4": "int8_t",
    "u4": "uint8_t",
    "i8": "int8_t",
    "u8": "uint8_t",
    "i16": "int16_t",
    "i32": "int32_t",
    "i64": "int64_t",
    "f32": "float",
}

#: Values per line in an array literal (keeps weight headers diff-able and fast to parse).
_PER_LINE = 16


def ctype(dtype: str) -> str:
    """The C++ type of IR dtype ``dtype``."""
    return CTYPES[dtype]


def c_int(value: int) -> str:
    """An integer literal valid for any int64 (INT64_MIN has no literal of its own)."""
    v = int(value)
    if v == -(2**63):
        return "(-9223372036854775807LL - 1)"
    if v == -(2**31):
        return "(-2147483647 - 1)"
    if abs(v) >= 2**31:
        return f"{v}LL"
    return str(v)


def c_float(value: float) -> str:
    """A float32 literal that reads back to exactly the same bits."""
    f = float(np.float32(value))
    if np.isnan(f):
        return '__builtin_nanf("")'
    if np.isinf(f):
        return "__builtin_inff()" if f > 0 else "-__builtin_inff()"
    # The shortest decimal that reads back as the same float32 (C++14 has no hex floats).
    return np.format_float_scientific(np.float32(f), unique=True, trim="0") + "f"


class CEmitter:
    """Accumulates lines of C++ with indentation."""

    def __init__(self, indent: str = "    ") -> None:
        self._lines: list[str] = []
        self._indent = indent
        self._depth = 0

    def line(self, text: str = "") -> None:
        self._lines.append(self._indent * self._depth + text if text else "")

    def lines(self, texts: Sequence[str]) -> None:
        for t in texts:
            self.line(t)

    def comment(self, text: str) -> None:
        """A ``//`` comment line; ``text`` may come from a model file (it is escaped)."""
        self.line(comment(text))

    @contextmanager
    def block(self, head: str, tail: str = "}") -> Iterator[None]:
        """``head {`` ... ``}`` with the body indented."""
        self.line(head + " {")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.line(tail)

    def array(self, decl: str, values: np.ndarray, fmt: str = "int") -> None:
        """``decl = { v0, v1, ... };`` wrapped at a fixed number of values per line."""
        flat = np.asarray(values).reshape(-1)
        to_text = c_float if fmt == "float" else c_int
        items = [to_text(v) for v in flat.tolist()]
        self.line(decl + " = {")
        self._depth += 1
        for i in range(0, len(items), _PER_LINE):
            self.line(", ".join(items[i : i + _PER_LINE]) + ",")
        self._depth -= 1
        self.line("};")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
