"""CLI subcommands of the toolbox: check, doctor, verify, report, diff, view.

Each is a thin wrapper: parse the arguments, call the function in ``compiler/tools/``, print
its text form (or return its JSON for ``--json``) and choose the exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from compiler.cli import Handler, load_inputs, load_npz_or_npy
from compiler.errors import TapeoutError

#: Exit code of a gate that failed (diff over a threshold, verify under a minimum).
GATE_EXIT = 6


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
    report = check(args.model, names, load_inputs(args.input) or None)
    if not args.json:
        print(report.format())
    result = report.to_json()
    if not report.ok:
        raise CommandFailed("unsupported nodes for some target", 4, result)
    return result


def cmd_stage(args: argparse.Namespace) -> dict[str, Any]:
    """``tapeout compile ... --stop-after PASS -o DIR``: write a resumable stage."""
    from compiler.quant_config import quant_changes
    from compiler.tools.stage import compile_stage

    result = compile_stage(
        args.model,
        args.target,
        args.output,
        args.stop_after,
        calibration_data=load_npz_or_npy(args.calib) if args.calib else None,
        example_inputs=load_inputs(args.input) or None,
        pipeline=args.pipeline,
        quant=quant_changes(args),
    )
    if not args.json:
        print(
            f"wrote stage {result['stage']} after {args.stop_after} "
            f"(passes run: {', '.join(result['passes'])})"
        )
    return result


def cmd_doctor(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.tools.doctor import doctor, format_doctor

    rows = doctor()
    if not args.json:
        print(format_doctor(rows))
    return {"tools": rows}


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from compiler.tools.verify import format_verify, verify

    labels = np.asarray(load_npz_or_npy(args.labels)) if args.labels else None
    result = verify(args.artifact, load_npz_or_npy(args.data), labels, args.model)
    if not args.json:
        print(format_verify(result))
    low = [
        f"output {o['output']}: cosine {o['cosine']} < {args.min_cosine}"
        for o in result["outputs"]
        if args.min_cosine is not None and o["cosine"] < args.min_cosine
    ]
    if args.min_top1 is not None and result.get("top1_compiled", 1.0) < args.min_top1:
        low.append(f"top-1 {result['top1_compiled']} < {args.min_top1}")
    if low:
        raise CommandFailed("; ".join(low), GATE_EXIT, {**result, "failures": low})
    return result


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.report import format_report
    from compiler.tools.reports import load_report

    data = load_report(args.artifact)
    if not args.json:
        print(format_report(data), end="")
    return data


def _gates(items: list[str] | None) -> dict[str, float]:
    gates = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        try:
            gates[key] = float(value.rstrip("%"))
        except ValueError:
            eq = ""
        if not eq:
            raise TapeoutError(f"gate {item!r}: expected FIGURE=PERCENT, e.g. latency_cycles=5")
    return gates


def cmd_diff(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.tools.reports import diff, format_diff

    result = diff(args.a, args.b, _gates(args.max_increase), _gates(args.max_decrease))
    if not args.json:
        print(format_diff(result))
    if result["failures"]:
        raise CommandFailed("; ".join(result["failures"]), GATE_EXIT, result)
    return result


def cmd_view(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.tools.view import view

    result = view(args.artifact, args.output)
    if not args.json:
        print(f"wrote {result['output']} ({result['nodes']} nodes)")
    return result


def _args_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx file, an .ir file, a stage or an artifact folder")
    p.add_argument(
        "--target", "-t", action="append", help="target to check (repeatable; default: all)"
    )
    p.add_argument("--input", action="append", help="example input .npy/.npz (fixes shapes)")


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact")


def _args_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact")
    p.add_argument("--data", required=True, help=".npz: one array per input, samples first")
    p.add_argument("--labels", help=".npy of class labels (top-1 accuracy)")
    p.add_argument("--model", help="the float model (default: the one compiled from)")
    p.add_argument("--min-cosine", type=float, help="exit 6 when an output's cosine is below")
    p.add_argument("--min-top1", type=float, help="exit 6 when top-1 accuracy is below")


def _args_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="artifact A (the baseline)")
    p.add_argument("b", help="artifact B")
    p.add_argument("--max-increase", action="append", metavar="FIGURE=PCT",
                   help="exit 6 when B's summary figure is more than PCT %% above A's")
    p.add_argument("--max-decrease", action="append", metavar="FIGURE=PCT",
                   help="exit 6 when it is more than PCT %% below (e.g. verify.top1_compiled=1)")


def _args_view(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="an artifact or stage folder, an .ir file or a model")
    p.add_argument("-o", "--output", required=True, help="the .html file to write")


#: The toolbox's commands, in ``compiler.cli.COMMANDS``' shape: name -> (help, add its
#: arguments, handler); ``compiler.cli.build_parser`` adds them after the core ones.
TOOL_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "check": ("pre-flight: unsupported nodes and estimated costs per target, in seconds",
              _args_check, cmd_check),
    "doctor": ("which toolchains are present, and how to get the rest", lambda p: None,
               cmd_doctor),
    "verify": ("accuracy of a compiled artifact on your data", _args_verify, cmd_verify),
    "report": ("print an artifact's saved report", _args_report, cmd_report),
    "diff": ("compare two builds layer by layer; gate on thresholds", _args_diff, cmd_diff),
    "view": ("draw a lowered graph as one self-contained HTML page", _args_view, cmd_view),
}  # fmt: skip
