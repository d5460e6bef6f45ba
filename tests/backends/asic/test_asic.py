"""The ASIC flow: partition, generated C, gcc build, bit-exact runs and the NPU report."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from compiler import api
from compiler.errors import UnsupportedOpsError
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType
from compiler.ir.parser import parse
from compiler.target import load_target
from tests.backends.tvm.helpers import compiled, example_arrays, mismatches

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("make") is None, reason="needs gcc and make"
)

ASIC_CASES = ["jet_mlp", "digits_cnn", "residual_block"]


@pytest.mark.parametrize("name", ASIC_CASES)
def test_every_layer_is_offloaded(name: str) -> None:
    art = compiled(name, "asic", "int8")
    layers = [r for r in art.layers if r["op"] in ("nn.conv2d", "nn.dense")]
    assert layers and all(r["unit"] == "npu" for r in layers)
    assert art.summary["npu_mac_share"] == 1.0
    assert art.summary["npu_cycles_est"] == sum(r.get("npu_cycles", 0) for r in art.layers)


def test_cycle_estimate_follows_the_array() -> None:
    from backends.asic.partition import estimate

    # 16x16 array, a [64 x 144] x [144 x 32] layer: 9 x 2 tiles, each 64 + 16 + 16 cycles.
    assert estimate(64, 144, 32, 16, 16) == (18, 18 * 96)
    art = compiled("digits_cnn", "asic", "int8")
    conv2 = next(r for r in art.layers if r["loc"] == "conv2" and r["op"] == "nn.conv2d")
    assert conv2["npu_tiles"] == 18 and conv2["npu_cycles"] == 1728


def test_artifact_is_a_buildable_c_folder(tmp_path: Path) -> None:
    art = compiled("digits_cnn", "asic", "int8")
    assert art.path is not None
    folder = tmp_path / "copy"
    shutil.copytree(art.path, folder)
    for name in (
        "model.c",
        "weights.c",
        "npu_runtime.h",
        "npu_runtime.c",
        "host_ops.c",
        "Makefile",
    ):
        assert (folder / name).is_file(), name
    subprocess.run(["make", "-s", "-C", str(folder)], check=True, capture_output=True)
    assert (folder / "libmodel.so").is_file()
    saved = api.load(art.path)
    xs = example_arrays("digits_cnn")
    assert mismatches(saved.run(*xs), art.run(*xs)) == [0]


def test_identifiers_from_the_model_are_sanitized(tmp_path: Path) -> None:
    from backends.asic import AsicBackend
    from passes.quantize import quantize_graph

    g = Graph("evil")
    x = g.add_input("x", TensorType("f32", (1, 4)))
    w = g.add_const("int.main; system", np.eye(4, dtype=np.float32))
    g.outputs = [g.add_node("nn.dense", [x, w], names=["return"]).output]
    target = load_target("asic")
    quantize_graph(
        g, target, np.random.default_rng(0).standard_normal((8, 4)).astype("f4"), power_of_two=True
    )
    art = AsicBackend().compile(g, target, tmp_path, {})
    source = (tmp_path / "model.c").read_text() + (tmp_path / "weights.c").read_text()
    assert "system;" not in source and " return[" not in source
    xs = [np.ones((1, 4), np.float32)]
    assert mismatches(art.run(*xs), interpret(g, *xs)) == [0]


def test_float_graph_lists_every_unsupported_node() -> None:
    g = parse(
        """graph @float(%x: f32[1,2,4,4]) -> (f32[1,2,4,4]) {
  %w: f32[2,2,1,1] = const @w
  %c: f32[1,2,4,4] = nn.conv2d(%x, %w)
  %y: f32[1,2,4,4] = nn.sigmoid(%c)
  return %y
}""",
        {"w": np.ones((2, 2, 1, 1), np.float32)},
    )
    with pytest.raises(UnsupportedOpsError) as info:
        api.compile(g, "asic", pipeline=[])
    ops = sorted(item.op for item in info.value.items)
    assert ops == ["nn.conv2d", "nn.sigmoid"]


def test_the_npu_output_stage_is_read_from_the_target_file() -> None:
    """``[asic] fused_activations`` and ``accumulator_dtype`` decide what the NPU takes."""
    import dataclasses

    from backends.asic.partition import offload_reason

    g = parse(
        """graph @g(%x: i8[1,2,4,4]{scale=2^-4}) -> (i32[1,2,4,4]) {
  %w: i8[2,2,1,1]{scale=2^-7} = const @w
  %b: i32[2] = const @b
  %y: i32[1,2,4,4] = nn.conv2d(%x, %w, %b) {acc="i32", act="relu"}
  return %y
}""",
        {"w": np.ones((2, 2, 1, 1), np.int8), "b": np.zeros(2, np.int32)},
    )
    asic = load_target("npu-int8").asic
    assert asic is not None and "relu" in asic.fused_activations
    conv = next(n for n in g.nodes if n.op == "nn.conv2d")
    assert offload_reason(g, conv, asic) is None
    no_relu = dataclasses.replace(asic, fused_activations=("none",))
    assert "relu" in (offload_reason(g, conv, no_relu) or "")
    i16 = dataclasses.replace(asic, accumulator_dtype="i16")
    assert offload_reason(g, conv, i16) == "the NPU accumulates in i16"
