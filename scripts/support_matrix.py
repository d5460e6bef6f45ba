"""Regenerate the README's op support matrix and backend option table (``--check`` to verify).

Columns are the tables themselves: the interpreter's IMPLS, each backend's rule table. A
mark means the backend has a rule for the op; a rule may still decline a particular node
(for example the FPGA backend takes integer convolutions only) and says why when it does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
BEGIN, END = "<!-- support-matrix -->", "<!-- /support-matrix -->"
OPTIONS_BEGIN, OPTIONS_END = "<!-- backend-options -->", "<!-- /backend-options -->"


def _tables() -> dict[str, Callable[[], set[str]]]:
    def interpreter() -> set[str]:
        from compiler.interpreter import IMPLS

        return set(IMPLS)

    def onnx_export() -> set[str]:
        from backends.onnx.rules import NOT_EXPORTED, RULES

        return set(RULES) - NOT_EXPORTED  # those rules only refuse

    def tvm_cpu() -> set[str]:
        from backends.tvm.lower import merged_rules

        return set(merged_rules())

    def hls_fpga() -> set[str]:
        from backends.hls.engine.rules import RULES as ENGINE_RULES
        from backends.hls.rules import RULES

        return set(RULES) | set(ENGINE_RULES)  # the dataflow design's or the engine's

    def asic_host() -> set[str]:
        from backends.asic.codegen import HOST_RULES

        return set(HOST_RULES)

    def asic_npu() -> set[str]:
        from compiler.target import load_target

        asic = load_target("asic").asic
        return set(asic.supported_ops) if asic else set()

    return {"interpreter": interpreter, "ONNX export": onnx_export, "CPU (TVM)": tvm_cpu,
            "FPGA (HLS)": hls_fpga, "ASIC host C": asic_host, "ASIC NPU": asic_npu}


def matrix() -> str:
    from compiler.ir.ops import OPS

    tables = {name: fn() for name, fn in _tables().items()}
    ops = sorted(op for op in OPS if op != "const")
    lines = ["| op | " + " | ".join(tables) + " |", "|---" * (len(tables) + 1) + "|"]
    for op in ops:
        marks = ["x" if op in supported else "" for supported in tables.values()]
        lines.append(f"| `{op}` | " + " | ".join(marks) + " |")
    totals = [str(len(set(ops) & s)) for s in tables.values()]
    lines.append(f"| **{len(ops)} ops** | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def options_table() -> str:
    """Every backend option from ``compiler.backend.BACKEND_OPTIONS``, the one declaration."""
    from compiler.backend import BACKEND_OPTIONS, MULTI_OPTIONS

    lines = ["| backend | option | what it does |", "|---|---|---|"]
    for backend, options in [*BACKEND_OPTIONS.items(), ("every target", MULTI_OPTIONS)]:
        for name, doc in options.items():
            lines.append(f"| {backend} | `{name}` | {doc.replace('|', '/')} |")
    return "\n".join(lines)


def _replace(readme: str, begin: str, end: str, body: str) -> str:
    if begin not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the {begin} ... {end} markers")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def render(readme: str) -> str:
    readme = _replace(readme, BEGIN, END, matrix())
    return _replace(readme, OPTIONS_BEGIN, OPTIONS_END, options_table())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text()
    updated = render(current)
    if args.check:
        if updated != current:
            print("README.md support matrix or option table is stale: "
                  "run python scripts/support_matrix.py")
            return 1
        return 0
    path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
