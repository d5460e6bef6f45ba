"""The FPGA zoo compiled once per test session (shared by the conformance test and the HLS
zoo tests): ``compiler.compile(model, target="fpga")`` through the real pipeline."""

from __future__ import annotations

import functools

import numpy as np

import compiler
from compiler.backend import Artifact
from tests.cases import get_case


def calibration(name: str) -> np.ndarray:
    """The case's training data, or seeded random inputs shaped like its examples."""
    case = get_case(name)
    if case.dataset is not None:
        return case.dataset()[0][:400]
    shape = tuple(case.example_inputs()[0].shape)
    return np.random.default_rng(0).normal(size=(64, *shape[1:])).astype(np.float32)


@functools.cache
def compiled_fpga(name: str) -> Artifact:
    """Zoo case ``name`` compiled for ``fpga`` (kept in a temporary folder until exit)."""
    case = get_case(name)
    return compiler.compile(case.build(), target="fpga", example_inputs=case.example_inputs(),
                            calibration_data=calibration(name))


def csim_inputs(name: str) -> np.ndarray:
    """100 random samples (wider than the data), then the case's whole test set if it has one."""
    case = get_case(name)
    shape = tuple(case.example_inputs()[0].shape)
    rand = (np.random.default_rng(1).normal(size=(100, *shape[1:])) * 1.5).astype(np.float32)
    if case.dataset is None:
        return rand
    return np.concatenate([rand, case.dataset()[2]]).astype(np.float32)
