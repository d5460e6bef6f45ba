"""The zoo's full-size CNNs through the engine at small inputs: MobileNet-v2 (depthwise
convs, ReLU6 clamps, inverted residuals) and ResNet-50, C simulation equal to the interpreter
on every element. bench/fpga_bench.py runs both at 224x224."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import compiler
from compiler.backend import Artifact
from compiler.interpreter import interpret
from tests.cases import get_case

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C simulation)")


def _compile(name: str, size: int, tmp_path) -> Artifact:
    import torch

    case = get_case(name)
    x0 = torch.randn(1, 3, size, size)
    calib = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    return compiler.compile(
        case.build(), target="zcu104", example_inputs=(x0,), calibration_data=calib,
        output_dir=tmp_path / name, fpga_arch="engine", engine="B1024", tb_samples=0,
        quant={"report_samples": 1},
    )  # fmt: skip


def _assert_bit_exact(art, samples: int, size: int) -> None:
    x = (np.random.default_rng(7).normal(size=(samples, 3, size, size)) * 1.5).astype(np.float32)
    got = art.run(x)[0]
    want = np.concatenate([interpret(art.graph, x[i : i + 1])[0] for i in range(len(x))])
    assert got.tobytes() == want.tobytes()


@needs_gxx
def test_mobilenet_v2_csim_equals_interpreter(tmp_path) -> None:
    art = _compile("mobilenet_v2", 32, tmp_path)
    kinds = {row["op"] for row in art.layers}
    assert {"depthwise", "conv", "global_avg_pool", "dense"} <= kinds
    # the 10 inverted residuals' adds, each fused into its projection's epilogue
    assert sum(1 for n in art.graph.nodes if n.op == "q.add") == 10 and "add" not in kinds
    assert any(row["op"] == "depthwise" and "features.2" in row["loc"] for row in art.layers)
    _assert_bit_exact(art, 3, 32)


@needs_gxx
def test_resnet50_csim_equals_interpreter(tmp_path) -> None:
    """Bounded for CI: 32x32 input and 2 calibration images (about 15 s of CPU here)."""
    art = _compile("resnet50", 32, tmp_path)
    assert sum(1 for row in art.layers if row["op"] == "conv") == 53
    _assert_bit_exact(art, 2, 32)
