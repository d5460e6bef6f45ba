"""Calibration: statistics, calibrators, data forms, batched runs, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from compiler.errors import CalibrationError
from compiler.ir import Graph, TensorType, verify
from compiler.ir.types import f32
from passes.quant.batching import BatchedRunner, normalize_samples, respecialize
from passes.quant.stats import TensorStats, choose_quant, collect_stats, expected_sq_error


def _mlp(batch: int | str = 1) -> Graph:
    g = Graph("mlp")
    x = g.add_input("x", f32(batch, 4))
    w = g.add_const("fc.weight", np.arange(12, dtype=np.float32).reshape(3, 4) / 10)
    h = g.add_node("nn.dense", [x, w], names=["h"], loc="fc").output
    flat = g.add_node("tensor.reshape", [h], {"shape": [1, 3]}, names=["r"]).output
    g.outputs = [g.add_node("nn.relu", [flat], names=["y"]).output]
    verify(g)
    return g


# ---- statistics -----------------------------------------------------------------------------
def test_histogram_does_not_depend_on_order_or_batching(rng: np.random.Generator) -> None:
    data = [rng.standard_normal(1000).astype(np.float32) * s for s in (0.1, 3.0, 0.5, 40.0)]
    forward, backward, whole = TensorStats("a"), TensorStats("b"), TensorStats("c")
    for x in data:
        forward.add(x)
    for x in reversed(data):
        backward.add(x)
    whole.add(np.concatenate(data))
    for s in (backward, whole):
        assert s.exp == forward.exp
        np.testing.assert_array_equal(s.counts, forward.counts)
    assert forward.count == 4000 and forward.max == max(float(x.max()) for x in data)


def test_merged_statistics_equal_joint_statistics(rng: np.random.Generator) -> None:
    a, b = rng.standard_normal(500).astype(np.float32), 9 * rng.standard_normal(300)
    sa, sb, joint = TensorStats("a"), TensorStats("b"), TensorStats("ab")
    sa.add(a)
    sb.add(b)
    joint.add(np.concatenate([a, b.astype(np.float32)]))
    merged = sa.merged(sb)
    np.testing.assert_array_equal(merged.counts, joint.counts)
    assert (merged.min, merged.max, merged.count) == (joint.min, joint.max, joint.count)


def test_nan_in_an_activation_is_an_error() -> None:
    with pytest.raises(CalibrationError, match="NaN or Inf"):
        TensorStats("h").add(np.array([1.0, np.nan], dtype=np.float32))


# ---- calibrators ----------------------------------------------------------------------------
def _stats(x: np.ndarray) -> TensorStats:
    s = TensorStats("x")
    s.add(x.astype(np.float32))
    return s


def test_minmax_covers_the_range_exactly(rng: np.random.Generator) -> None:
    x = rng.standard_normal(10000)
    choice = choose_quant(_stats(x), "i8", "minmax")
    peak = np.abs(x).max()
    assert peak <= choice.quant.scale[0] * 127 <= peak * (1 + 2**-11)  # up to a bin edge
    assert choice.clipped == 0.0


@pytest.mark.parametrize("calibrator", ["percentile", "entropy"])
def test_outlier_aware_calibrators_clip_a_few_outliers(
    rng: np.random.Generator, calibrator: str
) -> None:
    x = np.concatenate([rng.standard_normal(200_000), [60.0, -80.0]])
    choice = choose_quant(_stats(x), "i8", calibrator, percentile=99.9)
    threshold = choice.quant.scale[0] * 127
    assert 2.0 < threshold < 16.0, threshold
    assert 0 < choice.clipped < 1e-2


def test_mse_minimizes_the_expected_error(rng: np.random.Generator) -> None:
    stats = _stats(rng.laplace(size=200_000))
    threshold = choose_quant(stats, "i8", "mse").quant.scale[0] * 127
    assert threshold < 0.9 * stats.absmax
    candidates = np.array([threshold, stats.absmax, 0.8 * threshold, 1.2 * threshold])
    errors = expected_sq_error(stats.magnitude(), stats.width, candidates, 127)
    assert errors[0] == errors.min()


def test_entropy_ignores_the_relu_zero_spike(rng: np.random.Generator) -> None:
    x = np.maximum(rng.standard_normal(500_000), 0)  # half the values are exactly 0
    threshold = choose_quant(_stats(x), "i8", "entropy").quant.scale[0] * 127
    assert 3.0 < threshold <= x.max()


def test_power_of_two_scale_covers_the_range_or_lowers_the_error(
    rng: np.random.Generator,
) -> None:
    x = rng.standard_normal(50_000)
    stats = _stats(x)
    minmax = choose_quant(stats, "i8", "minmax", power_of_two=True).quant.scale[0]
    assert minmax == 2.0 ** np.ceil(np.log2(np.abs(x).max() / 127))
    mse = choose_quant(stats, "i8", "mse", power_of_two=True).quant.scale[0]
    assert mse in (minmax, minmax / 2)
    errors = expected_sq_error(stats.magnitude(), stats.width, np.array([minmax, mse]) * 127, 127)
    assert errors[1] <= errors[0]


def test_asymmetric_u8_maps_the_range_onto_0_255(rng: np.random.Generator) -> None:
    x = rng.uniform(-1.0, 3.0, 10000)
    qp = choose_quant(_stats(x), "u8", "minmax", symmetric=False).quant
    assert qp.zero_point[0] == round(x.min() / -qp.scale[0])
    assert qp.scale[0] == pytest.approx((x.max() - x.min()) / 255, rel=1e-3)


def test_constant_zero_tensor_falls_back_to_scale_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        choice = choose_quant(_stats(np.zeros(10)), "i8", "entropy")
    assert choice.quant.scale[0] == 1.0
    assert "0 on all calibration data" in caplog.text


# ---- data forms -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "form",
    ["stacked", "stacked_new_axis", "dict", "list_of_arrays", "list_of_tuples", "iterator"],
)
def test_calibration_data_forms(form: str, rng: np.random.Generator) -> None:
    graph = _mlp()
    data = rng.standard_normal((6, 4)).astype(np.float32)
    given = {
        "stacked": data,
        "stacked_new_axis": data[:, None, :],
        "dict": {"x": data},
        "list_of_arrays": [row[None] for row in data],
        "list_of_tuples": [(row[None],) for row in data],
        "iterator": iter([data[:3], data[3:]]),
    }[form]
    samples = normalize_samples(graph, given)
    assert len(samples) == 6
    np.testing.assert_array_equal(np.concatenate([s[0] for s in samples]), data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "no calibration data"),
        ([], "empty"),
        (np.zeros((3, 5), np.float32), "shape"),
        (np.zeros((3, 4), np.int64), "dtype"),
        (np.full((2, 4), np.inf, np.float32), "NaN or Inf"),
        ({"y": np.zeros((2, 4), np.float32)}, "no array for input"),
        ([(np.zeros((1, 4), np.float32), np.zeros(1))], "2 array"),
    ],
)
def test_bad_calibration_data_is_a_clear_error(data: object, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        normalize_samples(_mlp(), data)


def test_few_samples_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        normalize_samples(_mlp(), np.ones((2, 4), np.float32))
    assert "2 sample(s) only" in caplog.text


# ---- batched runs ---------------------------------------------------------------------------
def test_respecialize_fixes_batch_one_reshape_targets() -> None:
    batched = respecialize(_mlp(), 5)
    assert batched.inputs[0].type == TensorType("f32", (5, 4))
    assert batched.find("r").producer.attrs["shape"] == [5, 3]  # type: ignore[union-attr]


def test_statistics_do_not_depend_on_batching(rng: np.random.Generator) -> None:
    graph = _mlp()
    samples = normalize_samples(graph, rng.standard_normal((40, 4)).astype(np.float32))
    batched = BatchedRunner(graph, samples)
    single = BatchedRunner(graph, samples)
    single.batch = 1
    assert batched.batch > 1
    a, b = collect_stats(batched, ["x", "h", "y"]), collect_stats(single, ["x", "h", "y"])
    for name in a:
        np.testing.assert_array_equal(a[name].counts, b[name].counts)
        assert a[name].max == pytest.approx(b[name].max, rel=1e-6)


def test_a_graph_that_mixes_samples_runs_one_at_a_time(rng: np.random.Generator) -> None:
    g = Graph("mix")
    x = g.add_input("x", f32(1, 4))
    flat = g.add_node("tensor.reshape", [x], {"shape": [4]}).output  # batch folded away
    total = g.add_node("math.reduce_sum", [flat], {"axes": [0], "keepdims": True}).output
    g.outputs = [total]
    samples = normalize_samples(g, rng.standard_normal((10, 4)).astype(np.float32))
    assert BatchedRunner(g, samples).batch == 1
