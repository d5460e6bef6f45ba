"""CLI subcommands beyond the core four: ``export`` and ``debug``."""

from __future__ import annotations

import argparse
from typing import Any

from compiler.cli import _EXTRA_COMMANDS, _add_common, _inputs


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.cli import _load_npz_or_npy
    from compiler.tools.export import export

    result = export(
        args.model,
        args.output,
        args.target,
        pipeline=args.pipeline,
        calibration_data=_load_npz_or_npy(args.calib) if args.calib else None,
        fmt=args.format,
    )
    if not args.json:
        print(f"wrote {args.output}" + (" (QDQ)" if result["qdq"] else " (float)"))
    return result


def cmd_debug(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.cli import _load_npz_or_npy
    from compiler.tools.debug import debug

    report = debug(
        args.artifact,
        args.model,
        _inputs(args.input),
        threshold_db=args.threshold_db,
        fix=args.fix,
        calibration_data=_load_npz_or_npy(args.calib) if args.calib else None,
        fix_output=args.fix_output,
    )
    if not args.json:
        print(report.format())
    return report.to_json()


def _register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a model's lowered graph (ONNX, QDQ if quantized)")
    p.add_argument("model", help="an artifact or stage folder, or a model")
    p.add_argument("--calib", help="calibration data, when the target's pipeline quantizes")
    p.add_argument("--target", "-t", default="onnx")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("-p", "--pipeline")
    p.add_argument("-o", "--output", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("debug", help="find the layer where a compiled model diverges from float")
    p.add_argument("artifact", help="compiled artifact folder")
    p.add_argument("model", help="the float model (.onnx)")
    p.add_argument("--fix", action="store_true", help="apply the proposed fix and recompile")
    p.add_argument("--calib", help="calibration data for --fix (default: the inputs)")
    p.add_argument("--fix-output", help="folder of the fixed artifact (default: ARTIFACT-fixed)")
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
