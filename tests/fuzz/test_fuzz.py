"""The fuzz test in CI: a bounded, seeded sample of mutated models gives only typed errors.

Each case runs in a worker process (``tests.fuzz.runner``), so a crash or a hang is reported
as such instead of taking the test run down. ``scripts/fuzz.py`` runs the same cases at scale.
"""

from __future__ import annotations

import functools
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
