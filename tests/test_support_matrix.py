"""Every table knows every op it claims, and the README's support matrix is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from compiler.ir.ops import OPS

ROOT = Path(__file__).resolve().parents[1]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("support_matrix",
                                                  ROOT / "scripts" / "support_matrix.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tables_claim_only_real_ops() -> None:
    for name, table in _script()._tables().items():
        unknown = table() - set(OPS)
        assert not unknown, f"{name} has rules for ops the op table lacks: {sorted(unknown)}"


def test_readme_matrix_is_current() -> None:
    script = _script()
    readme = (ROOT / "README.md").read_text()
    assert script.render(readme) == readme, "run: python scripts/support_matrix.py"
