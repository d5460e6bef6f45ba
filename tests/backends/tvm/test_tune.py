"""MetaSchedule tuning: a tiny budget on a one-layer model, cached and resumed by workload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compiler import api
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType

pytestmark = pytest.mark.tvm


def _dense_graph() -> Graph:
    rng = np.random.default_rng(3)
    g = Graph("one_dense")
    x = g.add_input("x", TensorType("f32", (8, 64)))
    w = g.add_const("w", rng.standard_normal((48, 64)).astype(np.float32))
    b = g.add_const("b", rng.standard_normal(48).astype(np.float32))
    g.outputs = [g.add_node("nn.dense", [x, w, b], {"act": "relu"}).output]
    return g


def _compile(tmp_path: Path, trials: int) -> api.Artifact:
    return api.compile(
        _dense_graph(),
        "cpu",
        pipeline=[],
        tune=trials,
        cache_dir=str(tmp_path / "cache"),
        tune_progress=False,
    )


def test_tune_then_reuse_then_extend(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    first = _compile(tmp_path, 2)
    assert first.timings["tune_trials_this_run"] >= 2
    (want,) = interpret(first.graph, x)
    assert np.allclose(first.run(x)[0], want, rtol=1e-5, atol=1e-5)

    folder = first.tune_cache  # type: ignore[attr-defined]
    assert folder is not None and folder.name == first.summary["tune_workload"]
    records = (folder / "database_tuning_record.json").read_text().splitlines()
    assert len(records) >= 2  # our rule's schedule (the seed) and the measured trials

    again = _compile(tmp_path, 2)  # same workload, same budget: nothing to do
    assert again.timings["tune_trials_this_run"] == 0 and again.tune_cache == folder  # type: ignore[attr-defined]
    assert np.allclose(again.run(x)[0], want, rtol=1e-5, atol=1e-5)

    # A run interrupted after these trials continues from the state file: a bigger budget
    # measures only what is missing, keeping the earlier records.
    state = json.loads((folder / "state.json").read_text())
    more = _compile(tmp_path, state["trials"] + 2)
    assert 0 < more.timings["tune_trials_this_run"] <= 4
    after = (folder / "database_tuning_record.json").read_text().splitlines()
    assert after[: len(records)] == records
