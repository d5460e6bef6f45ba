"""The ``tapeout`` command line (also ``python -m compiler``): compile, inspect, run, targets,
export, debug; one entry each in ``COMMANDS`` (the toolbox's commands, check, doctor, verify,
report, diff and view, are in ``compiler.cli_tools.TOOL_COMMANDS``).

Exit codes: 0 success; 2 bad usage; 3 the model could not be read; 4 unsupported ops;
5 backend or toolchain failure; 6 a gate failed (diff over a threshold, verify under a
minimum); 1 any other tapeout error. ``--json`` prints one JSON object
on stdout (errors included: ``{"error": {"type": ..., "message": ...}}``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compiler import errors
from compiler.backend import options_help
from compiler.cli_llm import LLM_COMMANDS
from compiler.hwsearch import cli as search_cli
from compiler.quant_config import cli_flags, quant_changes

EXIT_CODES: dict[type[BaseException], int] = {
    errors.UsageError: 2,
    errors.TargetError: 2,
    errors.FrontendError: 3,
    errors.ParseError: 3,
    errors.UnsupportedOpsError: 4,
    errors.BackendError: 5,
    errors.TapeoutError: 1,
}


def _exit_code(e: BaseException) -> int:
    for cls in type(e).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def load_npz_or_npy(path: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise errors.InputError(f"input file {path} does not exist")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise errors.InputError(f"cannot read {path} as .npy/.npz: {e}") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        return {k: data[k] for k in data.files}


def load_inputs(paths: Sequence[str] | None) -> list[np.ndarray]:
    arrays: list[np.ndarray] = []
    for path in paths or []:
        data = load_npz_or_npy(path)
        arrays.extend(data.values() if isinstance(data, dict) else [data])
    return arrays


def _named_inputs(graph: Any, paths: Sequence[str] | None) -> list[np.ndarray]:
    """The arrays of ``--input`` files in the graph's input order: named arrays of an .npz
    go to the input of that name, in the model's own spelling (``gpu_0/data_0``) or the
    IR's (``gpu_0_data_0``); unnamed ones (``.npy``, ``arr_0``) fill the rest in order."""
    from compiler.ir.graph import clean_name

    names = [v.name for v in graph.inputs]
    named: dict[str, np.ndarray] = {}
    positional: list[np.ndarray] = []
    for path in paths or []:
        data = load_npz_or_npy(path)
        for key, array in (data.items() if isinstance(data, dict) else [("", data)]):
            name = key if key in names else clean_name(key.strip("/") or key) if key else ""
            if name in names:
                named[name] = array
            elif key and not key.startswith("arr_"):
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise errors.InputError(f"{path}: array {key!r} matches no input of graph "
                                        f"@{graph.name} ({', '.join(names)}){hint}")
            else:
                positional.append(array)
    rest = iter(positional)
    out = [named[n] if n in named else next(rest, None) for n in names]
    extra = list(rest)
    return [a for a in out if a is not None] + extra  # Artifact.run reports a wrong count


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if args.json or args.quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)
    status = console.status("starting")
    status.start()

    def say(stage: str) -> None:
        if stage == "done":
            status.stop()
        else:
            status.update(f"tapeout: {stage}")

    return say


def _print_after(args: argparse.Namespace) -> set[str] | str | None:
    if getattr(args, "print_after_all", False):
        return "all"
    return set(args.print_after) if getattr(args, "print_after", None) else None


def _printer(args: argparse.Namespace) -> Callable[[str], None]:
    # IR dumps go to stderr under --json so that stdout stays one JSON object.
    return (lambda s: print(s, file=sys.stderr)) if args.json else print


def cmd_compile(args: argparse.Namespace) -> dict[str, Any]:
    import compiler

    if args.stop_after:
        from compiler.cli_tools import cmd_stage

        return cmd_stage(args)

    options: dict[str, Any] = {}
    if args.tune is not None:
        options["tune"] = args.tune
    if args.tune_minutes is not None:
        options["tune_minutes"] = args.tune_minutes
    if args.no_engine:
        options["engine"] = False
    for flag in ("rpc_tracker", "rpc_key", "stages", "stage_devices"):
        if getattr(args, flag, None) is not None:
            options["pipeline_stages" if flag == "stages" else flag] = getattr(args, flag)
    for item in args.option or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise errors.UsageError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
        except ValueError:
            options[key] = value
    _check_print_after(args)
    calib = load_npz_or_npy(args.calib) if args.calib else None
    if calib is not None:
        _check_calibrated(args)
    example = load_inputs(args.input) or None
    art = compiler.compile(
        args.model,
        target=args.target,
        example_inputs=example,
        calibration_data=calib,
        output_dir=args.output,
        pipeline=args.pipeline,
        quant=quant_changes(args),
        verify_each=args.verify_each,
        print_after=_print_after(args),
        printer=_printer(args),
        progress=_progress(args),
        **options,
    )
    if not args.json:
        print(art.report())
        if args.explain:
            print(_explain(art))
    return art.report_json()


#: Passes that read calibration data: ``--calib`` with none of them is a mistake.
CALIBRATED_PASSES = frozenset({"quantize", "calibrate", "mixed-precision", "bias-correct"})


def _check_calibrated(args: argparse.Namespace) -> None:
    from compiler.api import plan_pipeline, resolve_quant
    from compiler.hwsearch.config import is_config, load_config
    from compiler.target import load_target

    name = args.target or (load_config(args.model).target if is_config(args.model) else None)
    target = load_target(name or "reference")
    whole, changes = resolve_quant(target, quant_changes(args))
    names = [p.name for p in plan_pipeline(target, args.pipeline, whole, changes)]
    if not CALIBRATED_PASSES.intersection(names):
        raise errors.UsageError(
            f"--calib {args.calib} is given but nothing quantizes (the pipeline is "
            f"{', '.join(names) or 'empty'}); add --precision int8 or drop --calib")


def _check_print_after(args: argparse.Namespace) -> None:
    from passes import PASSES

    for name in getattr(args, "print_after", None) or []:
        if name not in PASSES:
            close = difflib.get_close_matches(name, sorted(PASSES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise errors.UsageError(f"--print-after {name!r} is not a pass{hint}")


def _explain(art: Any) -> str:
    fired = art.summary.get("rewrites", {})
    return "rewrites:\n" + "\n".join(f"  {k}: {v}x" for k, v in sorted(fired.items()))


def cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.api import import_model, plan_pipeline
    from compiler.context import PassContext
    from compiler.ir.verifier import verify
    from compiler.pass_manager import PassManager
    from compiler.target import load_target
    from compiler.tools.stage import is_saved_graph, load_saved_graph, write_graph

    _check_print_after(args)
    saved = is_saved_graph(args.model)
    graph = (
        load_saved_graph(args.model, weights_optional=True) if saved else import_model(args.model)
    )
    if not saved or all(n.attrs["ref"] in graph.constants for n in graph.nodes if n.op == "const"):
        verify(graph)  # IR text without its weights can be printed, not verified
    result = None
    if args.pipeline is not None or args.print_after_all or args.print_after or args.explain:
        target = load_target(args.target)
        manager = PassManager(
            plan_pipeline(target, args.pipeline),
            verify_each=True,
            print_after=_print_after(args),
            printer=_printer(args),
        )
        result = manager.run(graph, PassContext(target=target))
    text = str(graph)
    if args.output:
        write_graph(graph, args.output)
    if not args.json:
        if not (args.print_after_all or args.print_after):
            print(text, end="")
        if result is not None:
            print(result.format(), file=sys.stderr)
            if args.explain:
                print(result.stats.format())
    return {
        "graph": text,
        "ops": graph.op_counts(),
        "explain": None
        if result is None
        else {
            "fired": dict(result.stats.fired),
            "rejected": {k: dict(v) for k, v in result.stats.rejected.items()},
        },
    }


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    import compiler

    art = compiler.load(args.artifact)
    outputs = art.run(*_named_inputs(art.graph, args.input))
    if args.output:
        np.savez(args.output, *outputs)
    if not args.json:
        for i, out in enumerate(outputs):
            print(f"output {i}: {out.dtype}{list(out.shape)}")
            print(np.array2string(out, threshold=40, precision=5))
    return {
        "outputs": [
            {"shape": list(o.shape), "dtype": str(o.dtype), "values": o.reshape(-1)[:64].tolist()}
            for o in outputs
        ]
    }


def cmd_targets(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.target import list_targets

    infos = list_targets()
    if not args.json:
        width = max(len(t.name) for t in infos)
        for t in infos:
            alias = f" (alias of {t.alias_of})" if t.alias_of else ""
            print(f"{t.name:<{width}}  {t.backend:<9} {t.description}{alias}")
    return {
        "targets": [
            {
                "name": t.name,
                "backend": t.backend,
                "description": t.description,
                "alias_of": t.alias_of,
            }
            for t in infos
        ]
    }


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")


def _add_pipeline_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pipeline", help='passes, e.g. "fold-batchnorm,quantize{bits=8}"')
    p.add_argument(
        "--print-after",
        action="append",
        metavar="PASS",
        help="print the IR after this pass (repeatable)",
    )
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument(
        "--explain",
        action="store_true",
        help="count how often each rewrite fired and why it declined",
    )


def cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.tools.export import export

    result = export(
        args.model,
        args.output,
        args.target,
        pipeline=args.pipeline,
        calibration_data=load_npz_or_npy(args.calib) if args.calib else None,
        fmt=args.format,
    )
    if not args.json:
        print(f"wrote {args.output}" + (" (QDQ)" if result["qdq"] else " (float)"))
    return result


def cmd_debug(args: argparse.Namespace) -> dict[str, Any]:
    from compiler.tools.debug import debug

    report = debug(
        args.artifact,
        args.model,
        load_inputs(args.input),
        threshold_db=args.threshold_db,
        fix=args.fix,
        calibration_data=load_npz_or_npy(args.calib) if args.calib else None,
        fix_output=args.fix_output,
    )
    if not args.json:
        print(report.format())
    return report.to_json()


# ---- the parser: one entry per command in COMMANDS -----------------------------------------
def _args_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx file (or .ir text, or a config.json from search)")
    p.add_argument("--target", "-t",
                   help="a target name or file; a+b partitions across devices (default: a "
                   "search config's target, else reference)")
    p.add_argument("-o", "--output", required=True, help="artifact folder to write")
    p.add_argument("--calib", help="calibration data (.npz: one array per input, samples first)")
    p.add_argument("--input", action="append", help="example input .npy/.npz (fixes shapes)")
    p.add_argument("--tune", type=int, help="TVM: MetaSchedule trials")
    p.add_argument("--tune-minutes", type=float, help="TVM: tuning time budget")
    p.add_argument("--no-engine", action="store_true", help="GPU: write the bundle, no engine")
    p.add_argument("--rpc-tracker", metavar="HOST:PORT", help="TVM: tune on this RPC tracker")
    p.add_argument("--rpc-key", help="TVM: the RPC servers' key on the tracker")
    p.add_argument("--stages", type=int, help="cut into N pipeline stages (compiler.multi)")
    p.add_argument("--stage-devices", metavar="D0,D1,...",
                   help="where each stage runs: local, rpc://HOST:PORT or rpc://HOST:PORT/KEY")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help=f"backend option ({options_help()})")
    p.add_argument("--verify-each", action="store_true", help="verify the IR after every pass")
    p.add_argument("--stop-after", metavar="PASS",
                   help="run the pipeline up to this pass and write a stage (IR + weights) to -o")
    _add_pipeline_flags(p)
    # Generated from the QuantConfig fields: a new quantization option is a new flag.
    quant = p.add_argument_group("quantization (compiler.quant_config.QuantConfig)")
    for flag, kwargs in cli_flags():
        quant.add_argument(flag, **kwargs)


def _args_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--target", "-t", default="reference",
                   help="a target name or file; a+b partitions across devices")
    p.add_argument("-o", "--output", help="also write the IR to this .ir file, weights beside it")
    _add_pipeline_flags(p)


def _args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="artifact folder")
    p.add_argument("--input", "-i", action="append", required=True, help=".npy or .npz inputs")
    p.add_argument("-o", "--output", help="write the outputs to this .npz")


def _args_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an artifact or stage folder, or a model")
    p.add_argument("--target", "-t", default="onnx")
    p.add_argument("--calib", help="calibration data, when the target's pipeline quantizes")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("-p", "--pipeline")
    p.add_argument("-o", "--output", required=True)


def _args_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="compiled artifact folder")
    p.add_argument("model", help="the float model (.onnx)")
    p.add_argument("--input", "-i", action="append", required=True)
    p.add_argument("--fix", action="store_true", help="apply the proposed fix and recompile")
    p.add_argument("--calib", help="calibration data for --fix (default: the inputs)")
    p.add_argument("--fix-output", help="folder of the fixed artifact (default: ARTIFACT-fixed)")
    p.add_argument(
        "--threshold-db",
        type=float,
        default=20.0,
        help="SQNR below which a layer counts as diverged",
    )


Handler = Callable[[argparse.Namespace], dict[str, Any]]

#: Command name -> (help, add its arguments, handler). ``build_parser`` adds each in order.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "compile": ("compile a model for a target into a folder", _args_compile, cmd_compile),
    "inspect": ("print a model's IR (after import, or after passes)", _args_inspect, cmd_inspect),
    "run": ("run a compiled artifact on inputs", _args_run, cmd_run),
    "targets": ("list the hardware targets", lambda p: None, cmd_targets),
    "export": ("export a lowered graph (ONNX, QDQ if quantized)", _args_export, cmd_export),
    "debug": ("find the layer where a compiled model diverges from float", _args_debug, cmd_debug),
    "search": ("fit a model to an FPGA budget (pruning, bits, reuse)", *search_cli.COMMAND),
    **LLM_COMMANDS,
}


class _Parser(argparse.ArgumentParser):
    """Usage errors as ``UsageError`` (exit 2), so that ``--json`` can report them as JSON."""

    def error(self, message: str) -> Any:
        raise errors.UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tapeout", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from compiler.cli_tools import TOOL_COMMANDS  # it imports this module's helpers

    for name, (help_text, add_arguments, handler) in {**COMMANDS, **TOOL_COMMANDS}.items():
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        _add_common(p)
        p.set_defaults(func=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from compiler.outdir import Terminated, terminate_on_sigterm

    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except errors.UsageError as e:
        if not as_json:
            parser.print_usage(sys.stderr)
        return _fail(e, as_json, "")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:  # SIGTERM unwinds like Ctrl-C: staging folders are removed
        with terminate_on_sigterm(), _stdout_to_stderr(args.json):
            result = args.func(args)
    except errors.TapeoutError as e:
        if hasattr(e, "result"):  # a verdict, not a failure: the result is the output
            if args.json:
                print(json.dumps({"ok": False, **e.result}, default=str))
            return int(getattr(e, "exit_code", 1))
        return _fail(e, args.json, args.command)
    except KeyboardInterrupt:
        return _fail(KeyboardInterrupt("interrupted"), args.json, args.command, 130)
    except Terminated as e:
        return _fail(e, args.json, args.command, 143)
    if args.json:
        print(json.dumps({"ok": True, **result}, default=str))
    return 0


def _fail(e: BaseException, as_json: bool, command: str, code: int | None = None) -> int:
    """One line on stderr, or the one JSON object on stdout; the exit code."""
    if as_json:
        print(json.dumps({"ok": False, "error": {"type": type(e).__name__, "message": str(e)}}))
    else:
        print(f"tapeout {command}: error: {type(e).__name__}: {e}".replace("  ", " "),
              file=sys.stderr)
    return _exit_code(e) if code is None else code


@contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Under ``--json`` stdout holds only the JSON object: whatever else is printed meanwhile
    (TVM's ``[INFO]`` lines from C++, a toolchain's chatter) goes to stderr, at the file
    descriptor level so native code is redirected too."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved_fd, saved_stream = os.dup(1), sys.stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        sys.stdout = saved_stream


if __name__ == "__main__":
    sys.exit(main())
