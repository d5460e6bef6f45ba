"""MetaSchedule tuning: a tiny budget on a one-layer model, cached and resumed by workload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compiler import api
from compiler.interpreter import interpret
from compiler.ir import Graph
from tests.backends.ir_text import graph_from_text

pytestmark = pytest.mark.tvm


def _dense_graph() -> Graph:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((48, 64)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    return graph_from_text(
        """
        graph @one_dense(%x: f32[8,64]) -> (f32[8,48]) {
          %w: f32[48,64] = const @w
          %b: f32[48] = const @b
          %dense: f32[8,48] = nn.dense(%x, %w, %b) {act="relu"}
          return %dense
        }
        """,
        {"w": w, "b": b},
    )


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


def test_kernels_whose_weights_stream_from_memory_are_not_tuned() -> None:
    """MetaSchedule times a kernel alone with its weights in cache; a conv whose 9 MB of
    weights stream from memory in the model is left to our rules."""
    from backends.tvm import build
    from backends.tvm.lower import lower_graph
    from backends.tvm.schedules import cpu_params
    from backends.tvm.tune import STREAMED_OPERAND_BYTES, heavy_functions
    from compiler.target import load_target

    rng = np.random.default_rng(0)
    small = rng.standard_normal((64, 512, 1, 1)).astype(np.float32)
    big = rng.standard_normal((512, 512, 3, 3)).astype(np.float32)
    assert big.nbytes > STREAMED_OPERAND_BYTES
    g = graph_from_text(
        """
        graph @two_convs(%x: f32[1,512,7,7]) -> (f32[1,64,7,7], f32[1,512,7,7]) {
          %small: f32[64,512,1,1] = const @small
          %big: f32[512,512,3,3] = const @big
          %conv2d: f32[1,64,7,7] = nn.conv2d(%x, %small)
          %conv2d_1: f32[1,512,7,7] = nn.conv2d(%x, %big) {pads=[1, 1, 1, 1]}
          return %conv2d, %conv2d_1
        }
        """,
        {"small": small, "big": big},
    )
    target = load_target("x86-64-avx512")
    mod, _ = lower_graph(g, cpu_params(target))
    mod = build.fuse(mod, build.tvm_target(target))
    convs = [gv.name_hint for gv, _ in mod.functions_items() if "conv2d" in gv.name_hint]
    assert len(convs) == 2
    assert len(heavy_functions(mod)) == 1
