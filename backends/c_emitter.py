"""The one C/C++ emitter of the HLS and ASIC backends: lines, indented blocks, exact literals.

Generated code is built only through this module, so indentation, array literals, the
spelling of float and integer literals and the escaping of names that come from a model file
(``backends.c_names``: identifiers and comments) are done in one place for every backend that
writes C. Literals read back to exactly the value written (a float32 to the same bits, the
most negative integers as expressions), with no header needed (no ``NAN`` or ``INT64_C``):
``__builtin_nanf``/``__builtin_inff`` are understood by gcc, clang and Vitis HLS alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from backends.c_names import Namer, comment

#: C type of each IR dtype (i4/u4 are stored unpacked, one per byte, as the interpreter does;
#: bool as one byte).
CTYPES: dict[str, str] = {
    "i4": "int8_t",
    "u4": "uint8_t",
    "i8": "int8_t",
    "u8": "uint8_t",
    "i16": "int16_t",
    "i32": "int32_t",
    "i64": "int64_t",
    "f32": "float",
    "bool": "uint8_t",
}

#: Values per line in an array literal (keeps weight headers diff-able and fast to parse).
PER_LINE = 16


def ctype(dtype: str) -> str:
    """The C type of IR dtype ``dtype``."""
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


def c_array(values: Iterable[Any], c_type: str, per_line: int = PER_LINE) -> list[str]:
    """The body lines of an array initializer of C type ``c_type``."""
    to_text = c_float if c_type == "float" else c_int
    items = [to_text(v) for v in values]
    return [", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)]


class CEmitter:
    """Accumulates lines of C/C++ with indentation; ``ident`` names model values safely."""

    def __init__(self, indent: str = "    ") -> None:
        self._lines: list[str] = []
        self._indent = indent
        self._depth = 0
        self._namer = Namer()
        self._idents: dict[str, str] = {}

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
        """``head {`` ... ``}`` with the body indented (a bare ``{`` when ``head`` is empty)."""
        self.line(f"{head} {{" if head else "{")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.line(tail)

    def array(self, decl: str, values: np.ndarray, fmt: str = "int") -> None:
        """``decl = { v0, v1, ... };`` wrapped at a fixed number of values per line."""
        flat = np.asarray(values).reshape(-1).tolist()
        self.line(decl + " = {")
        self._depth += 1
        self.lines(c_array(flat, "float" if fmt == "float" else "int"))
        self._depth -= 1
        self.line("};")

    def ident(self, name: str, prefix: str = "v_") -> str:
        """A C identifier for model name ``name``: sanitized, unique, and the same one each
        time it is asked for."""
        key = prefix + name
        if key not in self._idents:
            self._idents[key] = self._namer.ident(prefix + name, fallback=prefix.rstrip("_"))
        return self._idents[key]

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
