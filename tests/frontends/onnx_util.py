"""Helpers for the ONNX frontend tests: export zoo cases to ONNX (cached), build one-node
models with ``onnx.helper``, and run a model through onnxruntime.

The exporter: torch 2.13 has two. ``dynamo=False`` (the TorchScript exporter) is the default
here: it is fast (0.1 to 0.7 s a model against 2 to 3 s), honours ``opset_version`` from 9 to
20, and writes the raw Shape/Gather/Concat chains the frontend must fold. ``dynamo=True``
(torch.export + onnxscript) writes cleaner graphs but only really targets opset 18: asked
for less it silently keeps 18, or down-converts into an invalid model (opset 17 with
Split's opset-18 ``num_outputs``), so the tests use it at 18 only.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from compiler.interpreter import interpret
from compiler.ir import Graph, parse, verify

TOLERANCE = 1e-4
"""Relative error allowed against onnxruntime (float32 sums in another order)."""

#: ONNX element type of each NumPy dtype the one-node models use.
ELEM_TYPES = {
    np.dtype(np.float32): 1,
    np.dtype(np.uint8): 2,
    np.dtype(np.int8): 3,
    np.dtype(np.int32): 6,
    np.dtype(np.int64): 7,
    np.dtype(np.bool_): 9,
}


def export_torch(
    model: Any,
    inputs: tuple[Any, ...],
    path: Path,
    opset: int = 17,
    dynamo: bool = False,
    dynamic_batch: bool = False,
) -> Path:
    """``torch.onnx.export`` with inputs named x0, x1, ... (batch dim named if asked)."""
    import torch

    names = [f"x{i}" for i in range(len(inputs))]
    kwargs: dict[str, Any] = {"input_names": names, "opset_version": opset, "dynamo": dynamo}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(model, inputs, str(path), **kwargs)
    return path


class ZooExports:
    """Zoo cases exported into ``root`` once per (case, opset, exporter, batch) and reused."""

    def __init__(self, root: Path):
        self.root = root
        self.paths: dict[tuple[str, int, bool, bool], Path] = {}

    def get(
        self, name: str, opset: int = 17, dynamo: bool = False, dynamic_batch: bool = False
    ) -> Path:
        from tests.cases import get_case

        key = (name, opset, dynamo, dynamic_batch)
        if key not in self.paths:
            case = get_case(name)
            tag = f"{name}_op{opset}{'_dynamo' if dynamo else ''}{'_dyn' if dynamic_batch else ''}"
            path = self.root / f"{tag}.onnx"
            export_torch(case.build(), case.example_inputs(), path, opset, dynamo, dynamic_batch)
            self.paths[key] = path
        return self.paths[key]


def onnx_model(
    nodes: list[Any],
    inputs: dict[str, tuple[Any, list[Any]]],
    outputs: list[str],
    opset: int = 17,
    initializers: dict[str, np.ndarray] | None = None,
    name: str = "test",
) -> Any:
    """A model from ``onnx.helper`` nodes; output types come from shape inference (float
    where inference cannot tell, as in the models that test shape errors)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info(k, ELEM_TYPES[np.dtype(dtype)], shape)
            for k, (dtype, shape) in inputs.items()
        ],
        [helper.make_tensor_value_info(o, 0, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 10
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # an invalid model on purpose: keep the float placeholders
        pass
    for output in model.graph.output:
        tensor = output.type.tensor_type
        if not tensor.elem_type:
            tensor.elem_type = 1
        if not tensor.HasField("shape"):
            tensor.shape.SetInParent()  # the checker wants a shape; rank 0 stands in for unknown
    return model


def run_onnxruntime(
    model: Any, feeds: dict[str, np.ndarray], optimize: bool = True
) -> list[np.ndarray]:
    """Outputs of ``model`` (a ModelProto or path) on ``feeds``, from onnxruntime's CPU EP."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:  # run Q/DQ nodes one by one instead of fused integer kernels
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, str | Path) else model.SerializeToString()
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Max abs difference relative to the reference's magnitude (exact for ints/bools)."""
    if want.dtype == np.bool_ or np.issubdtype(want.dtype, np.integer):
        return 0.0 if np.array_equal(got, want) else 1.0
    if not want.size:
        return 0.0
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))


def assert_matches_onnxruntime(
    graph: Graph, model: Any, feeds: dict[str, np.ndarray], tolerance: float = TOLERANCE
) -> None:
    got = interpret(graph, *feeds.values())
    want = run_onnxruntime(model, feeds)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"output {i}: shape {g.shape} != onnxruntime {w.shape}"
        err = relative_error(g, w)
        assert err <= tolerance, f"output {i}: relative error {err:.2e}"


def assert_round_trips(graph: Graph) -> None:
    verify(graph)
    assert parse(str(graph), constants=graph.constants) == graph
