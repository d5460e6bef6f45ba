"""Shared helpers of the TVM and ASIC backend tests: compile zoo cases once per session.

Compiling is the slow part (TVM builds a model in 1-10 s on the 2-core CI machine), so each
(case, target, precision) is compiled once and shared by every test that needs it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from compiler import api
from compiler.backend import Artifact
from compiler.pass_manager import build_pass, split_pipeline
from compiler.target import load_target
from tests.cases import get_case


def int8_pipeline(target_name: str, **quantize: Any) -> list[Any]:
    """The target's pipeline with its quantize pass (appended when the target has none),
    built from the pass class so that it works whether or not PASSES registers it yet."""
    from passes.quantize import Quantize

    target = load_target(target_name)
    passes: list[Any] = []
    found = False
    for name, options in split_pipeline(",".join(target.pipeline)):
        if name == "quantize":
            passes.append(Quantize.from_options(**{**options, **quantize}))
            found = True
        else:
            passes.append(build_pass(name, options))
    if not found:
        passes.append(Quantize.from_options(**quantize))
    return passes


def calibration(name: str, samples: int = 4) -> Any:
    """The case's training data, or seeded random inputs shaped like its examples."""
    case = get_case(name)
    if case.dataset is not None:
        return case.dataset()[0][:64]
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(samples):
        batch = []
        for x in case.example_inputs():
            if x.dtype == torch.int64:
                batch.append(torch.randint(0, int(x.max()) + 1, x.shape, generator=generator))
            else:
                batch.append(torch.randn(x.shape, generator=generator))
        batches.append(tuple(batch))
    return batches


def example_arrays(name: str) -> list[np.ndarray]:
    case = get_case(name)
    if case.dataset is not None:  # a real test sample, not the one calibration saw
        return [case.dataset()[2][1:2]]
    return [x.numpy() for x in case.example_inputs()]


@functools.cache
def compiled(
    name: str, target: str, precision: str = "fp32", island_dtype: str | None = None
) -> Artifact:
    """Compile zoo case ``name`` for ``target`` (cached for the session); ``island_dtype``
    overrides the target's for the float ops between int8 layers."""
    case = get_case(name)
    model, inputs = case.build(), case.example_inputs()
    if precision == "fp32":
        return api.compile(model, target, example_inputs=inputs)
    return api.compile(
        model,
        target,
        example_inputs=inputs,
        pipeline=int8_pipeline(target, island_dtype=island_dtype),
        calibration_data=calibration(name),
    )


def mismatches(got: list[np.ndarray], want: list[np.ndarray]) -> list[int]:
    return [int(np.sum(a != b)) for a, b in zip(got, want, strict=True)]


def relative_errors(got: list[np.ndarray], want: list[np.ndarray]) -> list[float]:
    """max |got - want| / max |want| per output (absolute when want is all zeros)."""
    errs = []
    for a, b in zip(got, want, strict=True):
        scale = float(np.max(np.abs(b))) if b.size else 1.0
        diff = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
        errs.append(diff / scale if scale > 0 else diff)
    return errs
