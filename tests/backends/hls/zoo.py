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


#: The zoo's CNNs on the weight-streaming engine: case -> input size (None: the case's own;
#: ResNet-18 at 32x32 keeps CI fast, its layers are the same).
ENGINE_ZOO: dict[str, int | None] = {
    "digits_cnn": None, "residual_block": None, "mobilenet_block": None, "resnet18": 32,
}


def engine_shape(name: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in get_case(name).example_inputs()[0].shape)
    size = ENGINE_ZOO[name]
    return (1, shape[1], size, size) if size else shape


@functools.cache
def compiled_engine(name: str) -> Artifact:
    """Zoo case ``name`` compiled for zcu104 as a B1024 engine (temporary folder until exit)."""
    import torch

    case = get_case(name)
    shape = engine_shape(name)
    x0 = torch.randn(*shape) if ENGINE_ZOO[name] else case.example_inputs()[0]
    calib = (case.dataset()[0][:64] if case.dataset is not None else
             np.random.default_rng(0).normal(size=(16, *shape[1:])).astype(np.float32))
    return compiler.compile(case.build(), target="zcu104", example_inputs=(x0,),
                            calibration_data=calib, fpga_arch="engine", engine="B1024",
                            tb_samples=2)


def engine_inputs(name: str) -> np.ndarray:
    """Six random samples, wider than the data."""
    shape = engine_shape(name)
    return (np.random.default_rng(1).normal(size=(6, *shape[1:])) * 1.5).astype(np.float32)
