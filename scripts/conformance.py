"""Run the ONNX backend node tests on a tapeout target and print the conformance table.

    python scripts/conformance.py --target reference            # ~1 minute; onnxruntime's row too
    python scripts/conformance.py --target cpu                  # cpu (TVM) on the reference passes
    python scripts/conformance.py -k 'test_(cumsum|topk)' -v    # a subset, one line per case
    python scripts/conformance.py --write tests/conformance/expected_reference.json

The table counts every case as pass / not supported (a typed ``UnsupportedOpsError``) /
other typed error / wrong result / raw error (an untyped exception: a bug), for tapeout and
for onnxruntime measured in the same run. For ``--target cpu`` (or any target but reference)
the cases run are those the reference target passes, so its row reads "of the reference
passes". ``--write`` saves the outcomes as the expectation file the CI test checks against.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from compiler.conformance import (  # noqa: E402
    STATUSES,
    Outcome,
    node_cases,
    run_all,
    run_case,
    run_onnxruntime,
    tally,
)

HEADERS = {
    "pass": "pass",
    "unsupported": "not supported",
    "error": "other typed error",
    "wrong": "wrong result",
    "raw": "raw error",
}


def _row(engine: str, outcomes: list[Outcome]) -> str:
    counts = tally(outcomes)
    total = max(len(outcomes), 1)
    cells = [f"{counts['pass']} ({100 * counts['pass'] / total:.0f}%)"]
    cells += [str(counts[s]) for s in STATUSES[1:]]
    return f"| {engine} | " + " | ".join(cells) + " |"


def _table(rows: list[tuple[str, list[Outcome]]]) -> str:
    head = "| engine | " + " | ".join(HEADERS[s] for s in STATUSES) + " |"
    rule = "|---" * (len(STATUSES) + 1) + "|"
    return "\n".join([head, rule, *(_row(name, outs) for name, outs in rows)])


def _blockers(outcomes: list[Outcome], top: int) -> str:
    """The most frequent reasons a case did not pass (op and reason, numbers dropped)."""
    reasons = Counter(
        f"{o.status}: {o.detail.split(': at ')[0][:110]}" for o in outcomes if o.status != "pass"
    )
    return "\n".join(f"  {n:4d}  {why}" for why, n in reasons.most_common(top))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target", default="reference", help="a tapeout target (reference, cpu, ...)"
    )
    parser.add_argument("-k", "--pattern", help="only cases whose name matches this regex")
    parser.add_argument("--no-ort", action="store_true", help="skip onnxruntime's row")
    parser.add_argument("--write", type=Path, help="save the outcomes as an expectation file")
    parser.add_argument("--top", type=int, default=25, help="how many blockers to list")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    args = parser.parse_args(argv)

    cases = node_cases(args.pattern)
    show = (
        (lambda o: print(f"{o.status:12s} {o.name}  {o.detail}", flush=True))
        if args.verbose
        else None
    )
    start = time.perf_counter()
    rows: list[tuple[str, list[Outcome]]] = []
    if args.target != "reference":
        ref = run_all(cases, lambda c: run_case(c, "reference"))
        passed = {o.name for o in ref if o.status == "pass"}
        rows.append(("tapeout reference", ref))
        cases = [c for c in cases if c.name in passed]
    ours = run_all(cases, lambda c: run_case(c, args.target), show)
    label = f"tapeout {args.target}" + (
        f", on the {len(cases)} reference passes" if args.target != "reference" else ""
    )
    rows.append((label, ours))
    seconds = time.perf_counter() - start
    if not args.no_ort:
        rows.append(("onnxruntime CPU", run_all(cases, run_onnxruntime)))
    print(
        f"ONNX backend node tests: {len(cases)} cases; tapeout {args.target} took {seconds:.0f} s\n"
    )
    print(_table(rows))
    print(f"\nwhy tapeout {args.target} did not pass (most frequent):")
    print(_blockers(ours, args.top))
    if args.write:
        import onnx

        expected = {o.name: [o.status, o.detail] for o in ours}
        data = {"__onnx__": onnx.__version__, "cases": expected}
        args.write.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        print(f"\nwrote {len(expected)} outcomes to {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
