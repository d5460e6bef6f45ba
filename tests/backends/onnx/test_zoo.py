"""Every zoo model, lowered for a GPU target, exports to ONNX and matches the interpreter in
onnxruntime: float within 1e-5 relative; int8 (QDQ) within 1 LSB at every quantized tensor.

The int8 check feeds each interpreter node onnxruntime's own operands (``stepwise_lsb``):
a float conv and the exact integer accumulator round differently only on near-ties, and one
such flip upstream must not be counted again downstream. End to end the flips compound, so
the outputs are compared with a loose relative bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends.onnx import export_onnx, ort_session, run_onnx
from compiler.context import PassContext
from compiler.interpreter import interpret
from compiler.ir import Graph
from compiler.pass_manager import PassManager, build_pass, build_pipeline, fit_to_quantize
from compiler.target import load_target
from tests.backends.onnx.graphs import stepwise_lsb
from tests.cases import CASES

TARGET = "h100"


def _params() -> list:
    params = []
    for name, case in CASES.items():
        marks = [pytest.mark.slow] if case.slow else []
        if not case.available():
            marks.append(pytest.mark.skip(reason=f"needs {', '.join(case.missing())}"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _lowered(name: str, integer: bool = False) -> tuple[Graph, tuple[np.ndarray, ...]]:
    from compiler.frontends.torch_export import import_torch

    case = CASES[name]
    inputs = case.example_inputs()
    graph = import_torch(case.build(), inputs)
    target = load_target(TARGET)
    passes = build_pipeline(list(target.pipeline))
    if integer:  # the passes' form before an integer quantize (fuse only what it reads)
        passes = fit_to_quantize([*passes, build_pass("quantize")])[:-1]
    PassManager(passes, verify_each=True).run(
        graph, PassContext(target=target)
    )
    return graph, tuple(x.numpy() for x in inputs)


def _relative(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(want - got).max() / max(float(np.abs(want).max()), 1e-12))


@pytest.mark.parametrize("name", _params())
def test_float_zoo_matches_interpreter(name: str) -> None:
    graph, inputs = _lowered(name)
    model = export_onnx(graph)
    want = interpret(graph, *inputs)
    got = run_onnx(ort_session(model), graph, inputs)
    for value, w, o in zip(graph.outputs, want, got, strict=True):
        assert o.shape == w.shape, value.name
        assert _relative(w, o) <= 1e-5, value.name


@pytest.mark.parametrize("name", _params())
def test_int8_zoo_matches_interpreter(name: str) -> None:
    from passes.quantize import quantize_graph

    graph, inputs = _lowered(name, integer=True)
    rng = np.random.default_rng(0)
    calibration = [inputs] + [
        tuple(
            x + rng.standard_normal(x.shape).astype(x.dtype) * 0.1 if x.dtype.kind == "f" else x
            for x in inputs
        )
    ]
    quantize_graph(graph, load_target(TARGET), calibration, report_samples=1)
    model = export_onnx(graph)
    assert not {"ConvInteger", "MatMulInteger"} & {n.op_type for n in model.graph.node}
    steps = stepwise_lsb(graph, model, inputs)
    assert max(steps.values(), default=0) <= 1, {k: v for k, v in steps.items() if v > 1}
    want = interpret(graph, *inputs)
    got = run_onnx(ort_session(model), graph, inputs)
    for value, w, o in zip(graph.outputs, want, got, strict=True):
        assert _relative(w, o) <= 0.02, value.name
