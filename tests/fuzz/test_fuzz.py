"""The fuzz test in CI: a bounded, seeded sample of mutated models gives only typed errors.

Each case runs in a worker process (``tests.fuzz.runner``), so a crash or a hang is reported
as such instead of taking the test run down. ``scripts/fuzz.py`` runs the same cases at scale.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.runner import Result, Runner, generate, summarize
from tests.fuzz.seeds import node_test_models, zoo_models

#: (target, cases, seed): about two minutes together on the 2-core CI machine.
SAMPLES = [("reference", 120, 11), ("cpu", 25, 12)]
BUGS = ("raw", "crash", "hang")


@functools.cache
def _seeds() -> list[tuple[str, bytes]]:
    return node_test_models() + zoo_models(())


@pytest.mark.parametrize(("target", "count", "seed"), SAMPLES)
def test_mutated_models_give_only_typed_errors(
    target: str, count: int, seed: int, tmp_path: Path
) -> None:
    if target == "cpu":
        pytest.importorskip("tvm", reason="the cpu target needs apache-tvm")
    cases = generate(count, seed, _seeds(), tmp_path / "cases")
    runner = Runner(target, timeout=120, env={"TAPEOUT_CACHE": str(tmp_path / "cache")})
    try:
        results: list[Result] = [runner.run(case) for case in cases]
    finally:
        runner.close()
    bugs = [r for r in results if r.outcome in BUGS]
    assert not bugs, summarize(results)
    # The sample must exercise the compiler, not only its front door.
    assert sum(r.outcome == "ok" for r in results) + sum(r.outcome == "typed" for r in results) \
        >= count * 0.9


#: (target, seed, case index): cases the full runs of ``scripts/fuzz.py`` found raw, fixed since.
FOUND = [
    ("reference", 0, 7973),  # a body node left without its required data input: an assert
    ("fpga", 0, 2996),  # an engine matmul check read a symbolic dimension with int()
    ("cpu", 0, 3492),  # a zero-depth one-hot: TVM saved a zero-size constant it cannot load
    ("cpu", 0, 4230),  # an l1 reduction of bool values reached TVM's abs
    ("cpu", 0, 4780),  # an f8 selu: fused rounding kernels took LLVM past the 120 s limit
    ("cpu", 0, 7970),  # a TfIdf with max_n = 2^31-1: the lowering looped over every n
]


@pytest.mark.parametrize(("target", "seed", "index"), FOUND)
def test_cases_the_long_runs_found_are_typed(
    target: str, seed: int, index: int, tmp_path: Path
) -> None:
    if target == "cpu":
        pytest.importorskip("tvm", reason="the cpu target needs apache-tvm")
    (case,) = generate(1, seed, _seeds(), tmp_path / "cases", start=index)
    runner = Runner(target, timeout=120, env={"TAPEOUT_CACHE": str(tmp_path / "cache")})
    try:
        result = runner.run(case)
    finally:
        runner.close()
    assert result.outcome not in BUGS, summarize([result])


def test_fuzz_logs_are_summarized_once_per_case(tmp_path: Path) -> None:
    """``scripts/fuzz.py --summarize`` counts pieces of a long run together; a case logged
    by two pieces counts once, and a raw error makes the exit status 1."""
    def rec(index: int, outcome: str) -> str:
        return json.dumps({"index": index, "seed": 0, "target": "cpu", "seed_model": "m",
                           "mutations": ["x"], "outcome": outcome, "type": "", "message": "",
                           "where": []})

    (tmp_path / "a.jsonl").write_text("\n".join([rec(0, "ok"), rec(1, "typed")]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join([rec(1, "typed"), rec(2, "raw")]) + "\n")
    script = Path(__file__).parents[2] / "scripts" / "fuzz.py"
    done = subprocess.run([sys.executable, str(script), "--summarize", str(tmp_path / "a.jsonl"),
                           str(tmp_path / "b.jsonl")], capture_output=True, text=True,
                          timeout=120, check=False)
    counts = dict(line.split() for line in done.stdout.splitlines()[2:8])
    assert (counts["ok"], counts["typed"], counts["raw"]) == ("1", "1", "1")
    assert done.returncode == 1
