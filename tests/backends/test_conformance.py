"""One conformance test: every backend x zoo case against the reference interpreter on the same
post-pass graph, held to ONE tolerance table (bit for bit wherever the result is integer).

It replaces the per-backend zoo copies (tests/backends/{tvm,onnx,asic}/ and the C-sim
equality of the HLS dataflow design and of the weight-streaming engine). Each backend
contributes a row of ``BACKENDS``: how to compile a zoo case at a precision into (graph, run,
inputs); the comparison is the same code for all of them.

CI runs a bounded sample (``SAMPLE``: the cases each backend ran before, so CI time is
unchanged); ``TAPEOUT_FULL=1 pytest tests/backends/test_conformance.py`` runs every case on
every backend and precision (cases a backend refuses then skip with its reason).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from compiler.errors import UnsupportedOpsError
from compiler.interpreter import interpret
from compiler.ir import Graph
from tests.cases import CASES, CASES_FOR_FPGA, get_case

FULL = os.environ.get("TAPEOUT_FULL", "") not in ("", "0")


@dataclass(frozen=True)
class Tolerance:
    """How far a backend's outputs may be from the interpreter's on the same graph.

    ``exact``: every element equal (integer arithmetic, or float islands in float64);
    ``rel``: max |got - want| / max |want| per output; ``step_lsb``: for a QDQ export, each
    quantized tensor within this many LSBs when fed the backend's own operands (one rounding
    flip upstream is not counted again downstream).
    """

    exact: bool = False
    rel: float | None = None
    step_lsb: int | None = None


#: THE tolerance table: (backend, precision) -> Tolerance.
TOLERANCE: dict[tuple[str, str], Tolerance] = {
    ("tvm", "fp32"): Tolerance(rel=1e-5),
    # f64 islands between integer layers: TVM matches the interpreter element for element.
    ("tvm", "int8"): Tolerance(exact=True),
    ("onnx", "fp32"): Tolerance(rel=1e-5),
    # onnxruntime computes a QDQ conv in float: near-ties round differently (1 LSB), and the
    # flips compound end to end.
    ("onnx", "int8"): Tolerance(rel=0.02, step_lsb=1),
    ("hls", "int8"): Tolerance(exact=True),
    ("hls-engine", "int8"): Tolerance(exact=True),
    ("asic", "int8"): Tolerance(exact=True),
}


@dataclass(frozen=True)
class Compiled:
    graph: Graph
    run: Callable[..., list[np.ndarray]]
    inputs: list[np.ndarray]
    extra: Callable[[], None] | None = None  # a backend's own check on the same build


# ---- how each backend compiles a case -----------------------------------------------------
def _tvm(name: str, precision: str) -> Compiled:
    pytest.importorskip("tvm")
    from tests.backends.tvm.helpers import compiled, example_arrays

    art = compiled(name, "cpu", precision)

    def f64_islands() -> None:  # float ops between integer layers run in float64 on the CPU
        assert any(n.op == "q.quantize" for n in art.graph.nodes)
        widened = [n for n in art.graph.nodes if n.attrs.get("dtype") == "f64"]
        if name in TVM_INTEGER_ONLY:
            assert not any(v.dtype == "f64" for v in art.graph.values())
        else:
            assert any(n.op == "q.dequantize" for n in widened)

    return Compiled(art.graph, art.run, example_arrays(name),
                    f64_islands if precision == "int8" else None)


#: Integer from the input quantize to the output dequantize on the CPU (no float islands).
TVM_INTEGER_ONLY = ("jet_mlp", "digits_cnn", "resnet18")


def _asic(name: str, precision: str) -> Compiled:
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("needs gcc and make")
    from tests.backends.tvm.helpers import compiled, example_arrays

    art = compiled(name, "asic", precision)

    def calls_match() -> None:  # every NPU layer was called once
        assert art.last_stats["calls"] == len(art.summary["npu_layers"])  # type: ignore[attr-defined]

    return Compiled(art.graph, art.run, example_arrays(name), calls_match)


def _hls(name: str, precision: str) -> Compiled:
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (C simulation)")
    from tests.backends.hls.zoo import compiled_fpga, csim_inputs

    art = compiled_fpga(name)
    return Compiled(art.graph, art.run, [csim_inputs(name)])


def _hls_engine(name: str, precision: str) -> Compiled:
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (C simulation)")
    from tests.backends.hls.zoo import ENGINE_ZOO, compiled_engine, engine_inputs

    if name not in ENGINE_ZOO:
        pytest.skip(f"{name} is not one of the engine's CNNs")
    art = compiled_engine(name)

    def is_engine() -> None:
        assert art.summary["fpga_arch"] == "engine" and art.summary["engine"] == "B1024"

    return Compiled(art.graph, art.run, [engine_inputs(name)], is_engine)


def _onnx(name: str, precision: str) -> Compiled:
    from backends.onnx import export_onnx, ort_session, run_onnx
    from tests.backends.onnx.graphs import stepwise_lsb

    graph, inputs = _onnx_graph(name, precision)
    model = export_onnx(graph)
    session = ort_session(model)

    def lsb_steps() -> None:
        assert not {"ConvInteger", "MatMulInteger"} & {n.op_type for n in model.graph.node}
        steps = stepwise_lsb(graph, model, tuple(inputs))
        limit = TOLERANCE[("onnx", precision)].step_lsb or 0
        assert max(steps.values(), default=0) <= limit, {k: v for k, v in steps.items()
                                                          if v > limit}

    return Compiled(graph, lambda *xs: run_onnx(session, graph, xs), inputs,
                    lsb_steps if precision == "int8" else None)


#: The ONNX rows export the graph lowered for a GPU target (QDQ, as TensorRT reads it).
ONNX_TARGET = "h100"


def _onnx_graph(name: str, precision: str) -> tuple[Graph, list[np.ndarray]]:
    from compiler.context import PassContext
    from compiler.frontends.torch_export import import_torch
    from compiler.pass_manager import PassManager, build_pass, build_pipeline, fit_to_quantize
    from compiler.target import load_target

    case = get_case(name)
    example = case.example_inputs()
    graph = import_torch(case.build(), example)
    target = load_target(ONNX_TARGET)
    passes = build_pipeline(list(target.pipeline))
    if precision == "int8":  # the passes' form before an integer quantize (fuse what it reads)
        passes = fit_to_quantize([*passes, build_pass("quantize")])[:-1]
    PassManager(passes, verify_each=True).run(graph, PassContext(target=target))
    inputs = [x.numpy() for x in example]
    if precision == "int8":
        from passes.quantize import quantize_graph

        rng = np.random.default_rng(0)
        noisy = tuple(x + rng.standard_normal(x.shape).astype(x.dtype) * 0.1
                      if x.dtype.kind == "f" else x for x in inputs)
        quantize_graph(graph, target, [tuple(inputs), noisy], report_samples=1)
    return graph, inputs


BACKENDS: dict[str, Callable[[str, str], Compiled]] = {
    "tvm": _tvm, "onnx": _onnx, "hls": _hls, "hls-engine": _hls_engine, "asic": _asic,
}

_FAST = [n for n, c in CASES.items() if not c.slow]
#: What CI runs: (backend, precision) -> cases. The rest run with TAPEOUT_FULL=1.
SAMPLE: dict[tuple[str, str], list[str]] = {
    ("tvm", "fp32"): _FAST,
    ("tvm", "int8"): ["jet_mlp", "digits_cnn", "resnet18", "residual_block", "mobilenet_block",
                      "tiny_gpt", "tiny_gpt_sdpa", "ops_conv", "bert_encoder"],
    ("onnx", "fp32"): list(CASES),
    ("onnx", "int8"): list(CASES),
    ("hls", "int8"): list(CASES_FOR_FPGA),
    ("hls-engine", "int8"): ["digits_cnn", "residual_block", "mobilenet_block", "resnet18"],
    ("asic", "int8"): ["jet_mlp", "digits_cnn", "residual_block"],
}


def _params() -> list[Any]:
    params = []
    for (backend, precision) in TOLERANCE:
        names = list(CASES) if FULL else SAMPLE[(backend, precision)]
        for name in names:
            case = CASES[name]
            marks: list[Any] = [pytest.mark.slow] if case.slow else []
            if backend == "tvm":
                marks.append(pytest.mark.tvm)
            if not case.available():
                marks.append(pytest.mark.skip(reason=f"needs {', '.join(case.missing())}"))
            params.append(pytest.param(backend, precision, name, marks=marks,
                                       id=f"{backend}-{precision}-{name}"))
    return params


def check_outputs(got: list[np.ndarray], want: list[np.ndarray], tol: Tolerance) -> None:
    """``got`` against ``want`` under ``tol`` (the one comparison of every backend)."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        if tol.exact:
            differ = int(np.count_nonzero(g != w))
            assert differ == 0, f"output {i}: {differ} of {w.size} elements differ"
        if tol.rel is not None and w.size:
            scale = max(float(np.abs(w).max()), 1e-12)
            rel = float(np.abs(g.astype(np.float64) - w).max()) / scale
            assert rel <= tol.rel, f"output {i}: relative error {rel:.3g} > {tol.rel}"


def _interpret_batched(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The interpreter on inputs that may stack several samples (the HLS C-sim's)."""
    from passes.quant.batching import respecialize

    batch = int(inputs[0].shape[0])
    if graph.inputs[0].type.shape[0] == batch:
        return interpret(graph, *inputs)
    return interpret(respecialize(graph, batch), *inputs)


@pytest.mark.parametrize(("backend", "precision", "name"), _params())
def test_backend_matches_interpreter(backend: str, precision: str, name: str) -> None:
    try:
        built = BACKENDS[backend](name, precision)
    except UnsupportedOpsError as err:
        if not FULL and name in SAMPLE[(backend, precision)] and backend != "hls":
            raise
        pytest.skip(f"{backend} refuses {name} at {precision}: {err}")
    got = built.run(*built.inputs)
    want = _interpret_batched(built.graph, built.inputs)
    check_outputs(got, want, TOLERANCE[(backend, precision)])
    if built.extra is not None:
        built.extra()
