"""The models the fuzzer mutates: ONNX's backend node tests and the light model zoo.

``node_test_models()`` builds the node tests' models with ``onnx.backend.test.case`` (a
small loader of our own, so the fuzzer does not depend on the conformance runner);
``zoo_models(names)`` exports zoo cases (``tests/cases.py``) to ONNX through torch.export
and tapeout's ONNX writer, plus the bundled ``digits_cnn.onnx``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

DATA = Path(__file__).parents[2] / "compiler" / "data"
#: Small zoo cases (each exports in about a second).
LIGHT_ZOO = ("jet_mlp", "residual_block", "mobilenet_block", "ops_conv", "ops_elementwise",
             "ops_shape")


def node_test_models(limit: int | None = None) -> list[tuple[str, bytes]]:
    """``(name, serialized model)`` of ONNX's node tests (the default domain only)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    models = [(c.name, c.model.SerializeToString()) for c in cases
              if all(o.domain in ("", "ai.onnx") for o in c.model.opset_import)]
    models.sort()
    return models[:limit] if limit is not None else models


def zoo_models(names: tuple[str, ...] = LIGHT_ZOO) -> list[tuple[str, bytes]]:
    """``(name, serialized model)`` of the bundled digits CNN and the zoo cases ``names``."""
    models = [("zoo_digits_cnn", (DATA / "digits_cnn.onnx").read_bytes())]
    if not names:
        return models
    from backends.onnx import export_onnx
    from compiler.api import import_model
    from tests.cases import get_case

    for name in names:
        case = get_case(name)
        graph = import_model(case.build(), case.example_inputs())
        models.append((f"zoo_{name}", export_onnx(graph).SerializeToString()))
    return models
