"""The registries' shape: each table lives in a leaf module, its parts import that leaf (never
the loader, never a private name), and one loader imports every part at the top of its file.

Static checks on the source (no imports), so they are cheap and catch a new part that the
loader forgets before any test happens to read its table.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Registry:
    leaf: str  # the module holding the table and its registration decorator
    loader: str  # the one module that imports every part
    parts: str  # glob of the part files, relative to ROOT
    extra_parts: tuple[str, ...] = ()  # parts whose file name the glob misses


REGISTRIES = {
    "ir ops": Registry("compiler.ir.ops", "compiler.ir", "compiler/ir/ops_*.py"),
    "interpreter": Registry(
        "compiler.interpreter_context", "compiler.interpreter", "compiler/interpreter_*.py"
    ),
    "onnx converters": Registry(
        "compiler.frontends.onnx_table",
        "compiler.frontends.onnx_ops",
        "compiler/frontends/onnx_ops_*.py",
        ("compiler/frontends/onnx_fold.py", "compiler/frontends/onnx_scan.py"),
    ),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _module_file(name: str) -> Path:
    base = ROOT.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _parts(reg: Registry) -> list[Path]:
    files = {*ROOT.glob(reg.parts), *(ROOT / p for p in reg.extra_parts)}
    return sorted(p for p in files if _module_name(p) not in (reg.leaf, reg.loader))


def _imported(tree: ast.Module) -> list[tuple[ast.ImportFrom | ast.Import, str]]:
    """(statement, module) for each module-level import, ``from pkg import mod`` included."""
    out: list[tuple[ast.ImportFrom | ast.Import, str]] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            out += [(node, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node, node.module))
            out += [(node, f"{node.module}.{a.name}") for a in node.names]
    return out


@pytest.mark.parametrize("name", REGISTRIES)
def test_loader_imports_every_part_at_the_top(name: str) -> None:
    reg = REGISTRIES[name]
    tree = ast.parse(_module_file(reg.loader).read_text())
    loaded = {module for _, module in _imported(tree)}
    missing = [_module_name(p) for p in _parts(reg) if _module_name(p) not in loaded]
    assert not missing, f"{reg.loader} does not load {missing}"
    _assert_imports_on_top(_module_file(reg.loader), tree)


@pytest.mark.parametrize("name", REGISTRIES)
def test_parts_import_the_leaf_not_the_loader(name: str) -> None:
    reg = REGISTRIES[name]
    for path in [*_parts(reg), _module_file(reg.leaf)]:
        tree = ast.parse(path.read_text())
        _assert_imports_on_top(path, tree)
        for node, module in _imported(tree):
            # ``from compiler.ir import Value`` in an op module would import the loader
            # from a part it is loading: the table would be half full when that runs.
            assert module != reg.loader, f"{path}:{node.lineno} imports the loader {reg.loader}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compiler"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path}:{node.lineno} imports private {private}"


def _assert_imports_on_top(path: Path, tree: ast.Module) -> None:
    """No module-level import after the first statement that is not an import (a docstring,
    ``__future__`` and ``if TYPE_CHECKING:`` blocks are part of the top)."""
    seen_code = False
    for node in tree.body:
        is_import = isinstance(node, ast.Import | ast.ImportFrom)
        if is_import and seen_code:
            raise AssertionError(f"{path}:{node.lineno} imports below the code")
        top = (
            is_import
            or isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            or isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        )
        seen_code = seen_code or not top


def test_no_library_module_imports_a_private_name_from_another() -> None:
    """Across compiler/, passes/ and backends/, no module imports a ``_private`` name from
    another of ours, at any depth (a helper two files share is public, in a leaf module)."""
    found = []
    ours = ("compiler", "passes", "backends")
    for path in sorted(p for d in ours for p in (ROOT / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ours:
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module} {private}")
    assert not found, "\n".join(found)
