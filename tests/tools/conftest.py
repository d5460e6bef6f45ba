"""Shared fixtures of the toolbox tests: the bundled digits CNN, its data, one int8 build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import compiler
from tests.tools.common import DATA, DIGITS_ONNX, PIPELINE


@pytest.fixture(scope="session")
def digits_calib() -> dict[str, np.ndarray]:
    with np.load(DATA / "digits_calib.npz") as npz:
        return {"x": npz["x"]}


@pytest.fixture(scope="session")
def digits_int8(tmp_path_factory: pytest.TempPathFactory, digits_calib: dict) -> Path:
    """The digits CNN compiled to int8 for the reference target (no toolchain needed)."""
    out = tmp_path_factory.mktemp("int8") / "digits-int8"
    compiler.compile(DIGITS_ONNX, "reference", precision="int8", pipeline=PIPELINE,
                     calibration_data=digits_calib, output_dir=out)  # fmt: skip
    return out
