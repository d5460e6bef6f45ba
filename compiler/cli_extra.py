"""CLI subcommands beyond the core four: ``export`` and ``debug``."""

from __future__ import annotations

import argparse
from typing import Any

from compiler.cli import _EXTRA_COMMANDS, _add_common, _inputs


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from backends.onnx import export_onnx
    from compiler.api import import_model, plan_pipeline
    from compiler.context import PassContext
    from compiler.pass_manager import PassManager
    from compiler.target import load_target

    if args.format != "onnx":
        raise SystemExit(f"unknown export format {args.format!r}")
    target = load_target(args.target)
    graph = import_model(args.model)
    PassManager(plan_pipeline(target, args.pipeline, changes={"precision": "fp32"})).run(
        graph, PassContext(target=target)
    )
    # onnxruntime-exact tie breaking is for checking against the interpreter; TensorRT gets
    # the plain Q/DQ form it expects.
    export_onnx(graph, args.output, exact=target.backend != "tensorrt")
    if not args.json:
        print(f"wrote {args.output}")
    return {"output": args.output}


def cmd_debug(args: argparse.Namespace) -> dict[str, Any]:
    import compiler
    from compiler.debug import find_divergence

    art = compiler.load(args.artifact)
    reference = compiler.import_model(args.model)
    report = find_divergence(
        reference, art.graph, _inputs(args.input), threshold_db=args.threshold_db
    )
    if not args.json:
        print(report.format())
    return report.to_json()


def _register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model's lowered graph (ONNX)")
    p.add_argument("model")
    p.add_argument("--target", "-t", default="onnx")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("-p", "--pipeline")
    p.add_argument("-o", "--output", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("debug", help="find the layer where a compiled model diverges from float")
    p.add_argument("artifact", help="compiled artifact folder")
    p.add_argument("model", help="the float model (.onnx)")
    p.add_argument("--input", "-i", action="append", required=True)
    p.add_argument(
        "--threshold-db",
        type=float,
        default=20.0,
        help="SQNR below which a layer counts as diverged",
    )
    _add_common(p)
    p.set_defaults(func=cmd_debug)


_EXTRA_COMMANDS.append(_register)
