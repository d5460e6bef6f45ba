"""The one way a name from a model becomes C++ text: identifiers and comments.

Model files are untrusted input: an ONNX node name, a torch module path (``loc``) or a graph
name can hold anything, e.g. ``x"); system("rm -rf /"); //``. Nothing from a model reaches the
generated code except through ``Namer.ident`` (an identifier made of ``[A-Za-z0-9_]`` that is
not a keyword, not reserved, and unique in its namespace) or ``comment`` (one line of
printable ASCII that cannot end the comment: no newline, no backslash that would continue a
``//`` comment onto the next line, no ``??/`` trigraph, no ``*/``).
"""

from __future__ import annotations

import re

#: C and C++ keywords and names the generated code or the kernel library already uses.
_RESERVED = frozenset(
    """
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t
    char32_t class compl const constexpr const_cast continue decltype default delete do double
    dynamic_cast else enum explicit export extern false float for friend goto if inline int long
    mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    register reinterpret_cast return short signed sizeof static static_assert static_cast struct
    switch template this thread_local throw true try typedef typeid typename union unsigned using
    virtual void volatile wchar_t while xor xor_eq restrict main tapeout std hls int8_t int16_t
    int32_t int64_t uint8_t uint16_t uint32_t uint64_t size_t NULL assert
    """.split()
)
_MAX_LEN = 48
_BAD = re.compile(r"[^A-Za-z0-9_]+")


def c_identifier(text: str, fallback: str = "v") -> str:
    """``text`` reduced to a valid, non-reserved C identifier (not yet unique)."""
    name = _BAD.sub("_", text).strip("_")
    name = re.sub(r"_+", "_", name)[:_MAX_LEN].rstrip("_")
    if not name:
        name = fallback
    if name[0].isdigit():
        name = f"{fallback}_{name}"
    if name in _RESERVED or name.lower().startswith("tapeout"):
        name = f"{fallback}_{name}"
    return name


class Namer:
    """Unique identifiers in one namespace (a generated file or the whole design)."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self._taken: set[str] = set(taken or ())

    def ident(self, hint: str, fallback: str = "v", suffixes: tuple[str, ...] = ()) -> str:
        """A fresh identifier derived from ``hint`` (sanitized, then numbered if taken).

        ``suffixes``: names ``ident + suffix`` the caller will also define; all of them must
        be free too, and are reserved with it.
        """
        base = c_identifier(hint, fallback)
        name, i = base, 1
        while any(name + s in self._taken for s in ("", *suffixes)):
            name = f"{base}_{i}"
            i += 1
        self._taken.update(name + s for s in ("", *suffixes))
        return name


def comment_text(text: str, limit: int = 100) -> str:
    """``text`` made safe to sit inside a ``//`` comment (or a Tcl/Makefile ``#`` comment)."""
    out = []
    for ch in text:
        if ch in "\r\n\t\f\v":
            out.append(" ")
        elif ch == "\\":
            out.append("/")  # a trailing backslash would continue the comment on the next line
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    safe = "".join(out).replace("??", "?_").replace("*/", "* /").replace("/*", "/ *")
    if len(safe) > limit:
        safe = safe[: limit - 3] + "..."
    return safe


def comment(text: str) -> str:
    """A whole ``// ...`` line holding ``text`` safely."""
    return "// " + comment_text(text)
