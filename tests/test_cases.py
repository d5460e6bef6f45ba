"""The model zoo itself: every case builds, runs, exports, and the shipped weights are good."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.cases import CASES, CASES_FOR_FPGA, CONV_ZOO, DATA_DIR, Case, export_case, get_case
from tests.datasets import JET_CLASSES, digits_split, jet_split

OUTPUT_SHAPES: dict[str, list[tuple[int, ...]]] = {
    "jet_mlp": [(1, 5)],
    "digits_cnn": [(1, 10)],
    "residual_block": [(1, 8, 8, 8)],
    "mobilenet_block": [(1, 16, 16, 16)],
    "resnet18": [(1, 1000)],
    "resnet50": [(1, 1000)],
    "mobilenet_v2": [(1, 1000)],
    "encoder": [(1, 16, 64)],
    "tiny_gpt": [(1, 128, 512)],
    "tiny_gpt_sdpa": [(1, 128, 512)],
    "ops_conv": [(1, 12, 16, 16), (1, 8, 32)],
    "ops_elementwise": [(1, 8, 6, 6), (1, 8), (1, 6, 6)],
    "ops_shape": [(1, 3, 6, 6), (1, 60), (1, 1, 6)],
    "bert_encoder": [(1, 32, 128)],
}


def _params() -> list[Any]:
    """One pytest param per case: skipped when a requirement is missing, `slow` when marked."""
    params = []
    for name, case in CASES.items():
        marks = [pytest.mark.slow] if case.slow else []
        if not case.available():
            marks.append(pytest.mark.skip(reason=f"needs {', '.join(case.missing())}"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@functools.cache
def _built(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build each case once per test session (building resnet18 costs about a second)."""
    case = get_case(name)
    return case.build(), case.example_inputs()


def _as_tuple(output: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return output if isinstance(output, tuple) else (output,)


@pytest.mark.parametrize("name", _params())
def test_case_runs_with_finite_outputs_of_expected_shape(name: str) -> None:
    model, inputs = _built(name)
    assert not model.training
    with torch.no_grad():
        outputs = _as_tuple(model(*inputs))
    assert [tuple(output.shape) for output in outputs] == OUTPUT_SHAPES[name]
    assert all(torch.isfinite(output).all() for output in outputs)


@pytest.mark.parametrize("name", _params())
def test_case_is_deterministic(name: str) -> None:
    case = get_case(name)
    for first, second in zip(case.example_inputs(), case.example_inputs(), strict=True):
        assert torch.equal(first, second)
    if case.slow:
        return
    model, inputs = _built(name)
    fresh = case.build()
    for (key, value), other in zip(
        model.state_dict().items(), fresh.state_dict().values(), strict=True
    ):
        assert torch.equal(value, other), key


@pytest.mark.parametrize("name", _params())
def test_case_torch_exports_and_matches(name: str) -> None:
    model, inputs = _built(name)
    exported = torch.export.export(model, inputs)
    with torch.no_grad():
        expected = _as_tuple(model(*inputs))
        got = _as_tuple(exported.module()(*inputs))
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e)


def test_tiny_gpt_exports_with_dynamic_sequence_length() -> None:
    case = get_case("tiny_gpt")
    exported = export_case(case, dynamic=True)
    assert [(r.lower, r.upper) for r in exported.range_constraints.values()] == [(2, 128)]
    model = case.build()
    for length in (2, 17, 128):
        tokens = torch.randint(0, 512, (1, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(tokens), model(tokens))


def _accuracy(model: nn.Module, x_test: np.ndarray, y_test: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    return float((predicted == y_test).mean())


def test_digits_cnn_shipped_weights_are_accurate() -> None:
    _, _, x_test, y_test = digits_split()
    assert _accuracy(get_case("digits_cnn").build(), x_test, y_test) >= 0.95


def test_jet_mlp_shipped_weights_are_accurate() -> None:
    _, _, x_test, y_test = jet_split()
    assert _accuracy(get_case("jet_mlp").build(), x_test, y_test) >= 0.70


def test_digits_split_is_fixed_and_stratified() -> None:
    x_train, y_train, x_test, y_test = digits_split()
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert np.bincount(y_test).min() >= 44  # every digit keeps about a quarter of its ~180
    assert np.array_equal(digits_split()[3], y_test)


def test_jet_split_is_deterministic_and_standardized() -> None:
    x_train, y_train, x_test, y_test = jet_split()
    assert x_train.shape == (20000, 16) and x_test.shape == (5000, 16)
    assert x_train.dtype == np.float32 and y_test.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(len(JET_CLASSES)))
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x_train.std(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(jet_split()[2], x_test)


def test_bundled_digits_onnx_matches_torch() -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(DATA_DIR / "digits_cnn.onnx"))
    assert [i.name for i in session.get_inputs()] == ["x"]
    x = get_case("digits_cnn").example_inputs()[0]
    (logits,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, get_case("digits_cnn").build()(x).numpy(), atol=1e-4)


def test_registry_names() -> None:
    assert set(CASES_FOR_FPGA) <= set(CASES) and set(CONV_ZOO) <= set(CASES)
    assert all(isinstance(case, Case) and case.name == name for name, case in CASES.items())
    with pytest.raises(KeyError, match="known"):
        get_case("no_such_model")
