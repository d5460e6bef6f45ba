"""CLI subcommands of the toolbox: check, doctor, verify, report, diff, view.

Each is a thin wrapper: parse the arguments, call the function in ``compiler/tools/``, print
its text form (or return its JSON for ``--json``) and choose the exit code.
"""

from __future__ import annotations

import argparse
from typing import Any

from compiler.cli import _EXTRA_COMMANDS, _add_common, _inputs
from compiler.errors import TapeoutError


class CommandFailed(TapeoutError):
    """A toolbox command ran but its verdict is negative (a threshold crossed, a check
    failed); ``exit_code`` is what the CLI returns. The JSON result is still printed."""

    def __init__(self, message: str, exit_code: int, result: dict[str, Any]):
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result


def cmd_check(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.target import list_targets
    from compiler.tools.check import check

    names = args.target or [t.name for t in list_targets() if t.alias_of is None]
    report = check(args.model, names, _inputs(args.input) or None)
    if not args.json:
        print(report.format())
    result = report.to_json()
    if not report.ok:
        raise CommandFailed("unsupported nodes for some target", 4, result)
    return result


def cmd_stage(args: argparse.Namespace) -> dict[str, Any]:
    """``tapeout compile ... --stop-after PASS -o DIR``: write a resumable stage."""
    from compiler.cli import _load_npz_or_npy
    from compiler.tools.stage import compile_stage

    result = compile_stage(
        args.model,
        args.target,
        args.output,
        args.stop_after,
        calibration_data=_load_npz_or_npy(args.calib) if args.calib else None,
        example_inputs=_inputs(args.input) or None,
        pipeline=args.pipeline,
        precision=args.precision,
        calibrator=args.calibrator,
    )
    if not args.json:
        print(f"wrote stage {result['stage']} after {args.stop_after} "
              f"(passes run: {', '.join(result['passes'])})")
    return result


def _register(sub: Any) -> None:
    p = sub.add_parser(
        "check", help="pre-flight: unsupported nodes and estimated costs per target, in seconds"
    )
    p.add_argument("model", help="an .onnx file, an .ir file, a stage or an artifact folder")
    p.add_argument(
        "--target", "-t", action="append", help="target to check (repeatable; default: all)"
    )
    p.add_argument("--input", action="append", help="example input .npy/.npz (fixes shapes)")
    _add_common(p)
    p.set_defaults(func=cmd_check)


_EXTRA_COMMANDS.append(_register)
