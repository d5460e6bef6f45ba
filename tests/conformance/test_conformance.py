"""The ONNX backend node tests as a regression test against checked-in expectations.

``expected_reference.json`` holds every case's outcome on the reference target (pass, or
refused and why); ``expected_cpu.json`` the outcomes of the reference passes on the cpu
target. Both are written by ``scripts/conformance.py --write`` and this test fails on any
difference, so a lost pass, a new wrong result or a changed refusal reason shows in CI; an
improvement shows too, and is taken by regenerating the file (and reviewing its diff).

The reference target runs every case (about a minute); the cpu target runs a fixed sample
(every ``CPU_STRIDE``-th case it is expected to pass or refuse), since a TVM build takes
about a second a case; ``scripts/conformance.py --target cpu`` runs them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compiler.conformance import Outcome, node_cases, run_all, run_case, tally

HERE = Path(__file__).parent
CPU_STRIDE = 20
REGENERATE = "python scripts/conformance.py --target {target} --write {file}"


def _expected(target: str) -> tuple[Path, dict[str, Any]]:
    path = HERE / f"expected_{target}.json"
    return path, json.loads(path.read_text())


def _differences(outcomes: list[Outcome], expected: dict[str, Any], exact: bool) -> list[str]:
    """Cases whose status (or, for a refusal, reason) differs from the expectation file.
    Without ``exact`` (another onnx version made the cases) only a lost pass counts."""
    diffs: list[str] = []
    for outcome in outcomes:
        if outcome.name not in expected:
            if exact:
                diffs.append(f"{outcome.name}: not in the expectation file ({outcome.status})")
            continue
        status, detail = expected[outcome.name]
        changed = outcome.status != status or (
            status in ("unsupported", "error") and outcome.detail != detail
        )
        if changed and (exact or status == "pass"):
            diffs.append(
                f"{outcome.name}: expected {status} ({detail}), got {outcome.status} "
                f"({outcome.detail})"
            )
    return diffs


def _check(target: str, outcomes: list[Outcome], expected: dict[str, Any]) -> None:
    import onnx

    path, _ = _expected(target)
    exact = expected.get("__onnx__") == onnx.__version__
    raw = [f"{o.name}: {o.detail}" for o in outcomes if o.status == "raw"]
    assert not raw, "untyped exceptions (bugs):\n" + "\n".join(raw)
    diffs = _differences(outcomes, expected["cases"], exact)
    hint = REGENERATE.format(target=target, file=path.relative_to(HERE.parents[1]))
    assert not diffs, (
        f"{len(diffs)} case(s) changed (tally now {tally(outcomes)}); if intended, run "
        f"`{hint}` and review the diff:\n" + "\n".join(diffs[:50])
    )


def test_reference_target_matches_expectations() -> None:
    _, expected = _expected("reference")
    outcomes = run_all(node_cases(), lambda c: run_case(c, "reference"))
    _check("reference", outcomes, expected)


@pytest.mark.tvm
@pytest.mark.slow
def test_cpu_target_matches_expectations_on_a_sample() -> None:
    _, expected = _expected("cpu")
    sample = set(sorted(expected["cases"])[::CPU_STRIDE])
    cases = [c for c in node_cases() if c.name in sample]
    assert len(cases) >= len(sample) // 2  # the sample must not silently vanish
    outcomes = run_all(cases, lambda c: run_case(c, "cpu"))
    _check("cpu", outcomes, {**expected, "cases": {k: expected["cases"][k] for k in sample}})
