"""prune-magnitude: exact sparsity targets (global, per layer), what is kept, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler.context import PassContext
from compiler.errors import PassError, TapeoutError
from compiler.ir import Graph, parse, print_graph, verify
from compiler.pass_manager import run_pipeline
from passes._prune import weight_layers
from passes.prune_magnitude import magnitude_mask, prune_magnitude
from tests.passes.ir_cases import graph_from

MLP = """
graph @mlp(%x: f32[2,16]) -> (f32[2,5]) {
  %w1: f32[32,16] = const @fc1.weight
  %b1: f32[32] = const @fc1.bias
  %w2: f32[8,32] = const @fc2.weight
  %w3: f32[5,8] = const @fc3.weight
  %h1: f32[2,32] = nn.dense(%x, %w1, %b1) {act="relu"} loc("fc1")
  %h2: f32[2,8] = nn.dense(%h1, %w2) {act="relu"} loc("fc2")
  %y: f32[2,5] = nn.dense(%h2, %w3) loc("fc3")
  return %y
}
"""


def mlp(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    shapes = {
        "fc1.weight": (32, 16),
        "fc1.bias": (32,),
        "fc2.weight": (8, 32),
        "fc3.weight": (5, 8),
    }
    return graph_from(MLP, {k: rng.standard_normal(s) for k, s in shapes.items()})


def weights(g: Graph) -> dict[str, np.ndarray]:
    return {n.loc or "": g.const_value(n.inputs[1]) for n in weight_layers(g)}  # type: ignore[misc]


def test_global_sparsity_is_exact_and_keeps_the_largest() -> None:
    g = mlp()
    before = np.concatenate([w.reshape(-1) for w in weights(g).values()])
    report = prune_magnitude(g, sparsity=0.75)
    verify(g)
    after = np.concatenate([w.reshape(-1) for w in weights(g).values()])
    assert np.count_nonzero(after == 0) == round(0.75 * after.size)
    kept, pruned = np.abs(before[after != 0]), np.abs(before[after == 0])
    assert kept.min() >= pruned.max()
    np.testing.assert_array_equal(after[after != 0], before[after != 0])
    assert report.weight_sparsity == pytest.approx(0.75, abs=1 / after.size)
    assert (
        report.nonzero_after < report.nonzero_before and report.params_after == report.params_before
    )
    assert report.effective_macs_after < report.effective_macs_before


def test_per_layer_scope_hits_each_target() -> None:
    g = mlp()
    prune_magnitude(g, sparsity=0.5, scope="layer", layers={"fc3": 0.0, "fc2.weight": 0.25})
    w = weights(g)
    assert np.count_nonzero(w["fc1"] == 0) == 256
    assert np.count_nonzero(w["fc2"] == 0) == 64
    assert np.count_nonzero(w["fc3"] == 0) == 0


def test_exclude_and_cli_form_with_collected_report() -> None:
    g = mlp()
    ctx = PassContext()
    spec = "prune-magnitude{sparsity=0.9,layers=[fc2:0.5],exclude=[fc3]}"
    run_pipeline(g, spec, ctx, verify_each=True)
    (report,) = ctx.prune_reports
    by_name = {r.name: r for r in report.layers}
    assert by_name["fc3.weight"].sparsity == 0.0
    assert by_name["fc2.weight"].sparsity == 0.5
    assert by_name["fc1.weight"].sparsity == pytest.approx(0.9, abs=1 / 512)
    text = report.format()
    assert "fc1.weight" in text and "90.0%" in text and "effective MACs" in text
    data = json.loads(report.to_json())
    assert data["layers"][0]["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_biases_are_never_pruned_and_text_round_trips() -> None:
    g = mlp()
    bias = g.constants["fc1.bias"].copy()
    prune_magnitude(g, sparsity=0.99)
    np.testing.assert_array_equal(g.constants["fc1.bias"], bias)
    again = parse(print_graph(g), dict(g.constants))
    assert again == g


def test_constants_are_replaced_not_mutated() -> None:
    g = mlp()
    original = g.constants["fc1.weight"]
    snapshot = original.copy()
    copy = g.copy()
    prune_magnitude(copy, sparsity=0.5)
    np.testing.assert_array_equal(original, snapshot)


def test_bad_options_are_errors() -> None:
    with pytest.raises(TapeoutError, match=r"\[0, 1\]"):
        prune_magnitude(mlp(), sparsity=1.5)
    with pytest.raises(TapeoutError, match="scope"):
        prune_magnitude(mlp(), scope="model")
    with pytest.raises(PassError, match="prune-magnitude"):
        run_pipeline(mlp(), "prune-magnitude{layers=[fc1]}")


def test_symmetric_integer_weights_are_pruned_by_real_value() -> None:
    text = """
    graph @q(%x: i8[1,4]) -> (i32[1,2]) {
      %w: i8[2,4]{scale=[2^-1,2^-6], axis=0} = const @w
      %y: i32[1,2] = nn.dense(%x, %w) {acc="i32"}
      return %y
    }
    """
    g = graph_from(text, {"w": np.array([[1, -2, 3, 4], [100, 90, -80, 70]], dtype=np.int8)})
    prune_magnitude(g, sparsity=0.5)
    # Real values: row 0 is [0.5, -1, 1.5, 2], row 1 about [1.56, 1.41, -1.25, 1.09].
    np.testing.assert_array_equal(g.constants["w"], [[0, 0, 3, 4], [100, 90, 0, 0]])


@given(st.integers(1, 200), st.floats(0, 1))
def test_mask_zeroes_exactly_round_sparsity_times_n(n: int, sparsity: float) -> None:
    magnitude = np.abs(np.random.default_rng(n).standard_normal(n))
    keep = magnitude_mask(magnitude, sparsity)
    assert np.count_nonzero(~keep) == round(sparsity * n)
