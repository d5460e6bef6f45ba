"""Partitioning across devices and pipeline stages (compiler.partition, compiler.multi)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compiler import api
from compiler.errors import DeviceMemoryError, TapeoutError, UnsupportedOpsError
from compiler.frontends import load_model
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType
from compiler.partition import check_fits, cut_stages, lift, node_cost, stage_bytes
from compiler.target import load_target
from tests.cases import get_case


class WithSoftmax(torch.nn.Module):
    """A zoo model with a softmax head: the FPGA backend has no softmax, the CPU has."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), -1)


def _digits_with_softmax() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], list[np.ndarray]]:
    case = get_case("digits_cnn")
    rng = np.random.default_rng(0)
    calib = [rng.random((1, 1, 8, 8), dtype=np.float32) for _ in range(16)]
    return WithSoftmax(case.build()).eval(), case.example_inputs(), calib


def _run_parts(graph, parts, *inputs):  # type: ignore[no-untyped-def]
    env = dict(zip((v.name for v in graph.inputs), inputs, strict=True))
    for part in parts:
        sub = lift(graph, part)
        outs = interpret(sub, *(env[v.name] for v in sub.inputs))
        env.update(zip((v.name for v in sub.outputs), outs, strict=True))
    return [env[v.name] for v in graph.outputs]


@pytest.mark.parametrize("name", ["residual_block", "mobilenet_block", "tiny_gpt_sdpa"])
@pytest.mark.parametrize("stages", [2, 3])
def test_stages_run_in_order_equal_the_whole_graph(name: str, stages: int) -> None:
    case = get_case(name)
    graph = load_model(case.build(), example_inputs=case.example_inputs())
    parts = cut_stages(graph, stages)
    assert len(parts) == stages
    assert sum(len(p.nodes) for p in parts) == len(graph.compute_nodes())
    inputs = [x.numpy() for x in case.example_inputs()]
    for got, want in zip(_run_parts(graph, parts, *inputs), interpret(graph, *inputs), strict=True):
        np.testing.assert_array_equal(got, want)


def test_stages_are_balanced_by_cost() -> None:
    case = get_case("resnet18")
    graph = load_model(case.build(), example_inputs=case.example_inputs())
    parts = cut_stages(graph, 2)
    total = sum(node_cost(n) for n in graph.compute_nodes())
    # Within a tenth of a stage's share, plus the one node a cut cannot split.
    biggest = max(node_cost(n) for n in graph.compute_nodes())
    assert abs(parts[0].cost - total / 2) <= total / 20 + biggest


def test_too_many_stages_is_a_typed_error() -> None:
    graph = load_model(
        get_case("jet_mlp").build(), example_inputs=get_case("jet_mlp").example_inputs()
    )
    with pytest.raises(TapeoutError, match="pipeline_stages"):
        cut_stages(graph, 10_000)
    with pytest.raises(TapeoutError, match="pipeline_stages"):
        cut_stages(graph, 0)


def test_fpga_takes_what_it_can_and_the_next_device_the_rest(tmp_path: Path) -> None:
    model, example, calib = _digits_with_softmax()
    art = api.compile(
        model,
        ["zcu104", "reference"],
        example_inputs=example,
        calibration_data=calib,
        output_dir=tmp_path / "multi",
    )
    devices = {row["op"]: row["device"] for row in art.layers}
    assert devices["nn.softmax"] == "reference" and devices["nn.conv2d"] == "zcu104"
    assert len(art.parts) == 2  # type: ignore[attr-defined]
    # the boundary is the dequantized logits: 10 floats
    crossing = [b for b in art.summary["boundaries"] if b["from"] != "input"]
    assert [b["bytes"] for b in crossing] == [40]
    report = art.report()  # placement per node and the bytes per boundary are printed
    assert "device" in report and "transfer_bytes: 40" in report
    for x in calib[:3]:
        np.testing.assert_array_equal(art.run(x)[0], interpret(art.graph, x)[0])
    again = api.load(tmp_path / "multi")
    np.testing.assert_array_equal(again.run(calib[0])[0], art.run(calib[0])[0])


def test_a_node_no_device_takes_is_listed() -> None:
    model, example, calib = _digits_with_softmax()
    with pytest.raises(UnsupportedOpsError, match="nn.softmax"):
        api.compile(model, ["zcu104", "kv260"], example_inputs=example, calibration_data=calib)


def test_combined_target_by_name() -> None:
    target = load_target("zcu104+cpu")
    assert target.backend == "multi" and target.devices == ("zcu104", "cpu")
    assert target.pipeline == load_target("zcu104").pipeline
    with pytest.raises(TapeoutError):
        load_target("zcu104+nonesuch")


@pytest.mark.tvm
@pytest.mark.slow
def test_fpga_and_cpu_int8_bit_exact(tmp_path: Path) -> None:
    model, example, calib = _digits_with_softmax()
    art = api.compile(
        model,
        "zcu104+cpu",
        example_inputs=example,
        calibration_data=calib,
        output_dir=tmp_path / "fc",
    )
    assert {p["target"] for p in art.parts} == {"zcu104", "cpu"}  # type: ignore[attr-defined]
    x = calib[1]
    np.testing.assert_allclose(art.run(x)[0], interpret(art.graph, x)[0], rtol=1e-6, atol=1e-7)


@pytest.mark.tvm
@pytest.mark.slow
def test_pipelined_stages_equal_the_single_device_artifact(tmp_path: Path) -> None:
    case = get_case("digits_cnn")
    model, example = case.build(), case.example_inputs()
    single = api.compile(model, "cpu", example_inputs=example, output_dir=tmp_path / "one")
    staged = api.compile(
        model, "cpu", example_inputs=example, output_dir=tmp_path / "two", pipeline_stages=2
    )
    rng = np.random.default_rng(3)
    batches = [(rng.random((1, 1, 8, 8), dtype=np.float32),) for _ in range(6)]
    outs = staged.run_pipelined(batches, stage_cores=[[0], [0]])  # type: ignore[attr-defined]
    stats = staged.summary["pipeline"]
    assert stats["batches"] == 6 and stats["latency_ms"]["median"] > 0
    # per stage: its time per batch and the rate it sustains, in the printed report too
    assert len(stats["stage_ms_per_batch"]) == len(stats["stage_batches_per_s"]) == 2
    assert all(ms > 0 for ms in stats["stage_ms_per_batch"])
    assert "stage 1 (" in staged.report() and "batches/s" in staged.report()
    for (x,), got in zip(batches, outs, strict=True):
        np.testing.assert_array_equal(got[0], staged.run(x)[0])
        np.testing.assert_allclose(got[0], single.run(x)[0], rtol=1e-5, atol=1e-5)


def _dense_chain(layers: int, width: int) -> Graph:
    """``layers`` dense layers of ``width`` x ``width`` f32 weights (4 MiB each at 1024)."""
    rng = np.random.default_rng(0)
    g = Graph("dense_chain")
    x = g.add_input("x", TensorType("f32", (1, width)))
    for i in range(layers):
        w = g.add_const(f"w{i}", rng.standard_normal((width, width)).astype(np.float32) / 32)
        x = g.add_node("nn.dense", [x, w], {"act": "relu"}).output
    g.outputs = [x]
    return g


def test_a_cut_moves_to_fit_a_stage_in_its_device_memory() -> None:
    graph = _dense_chain(4, 256)  # 256 KiB of weights per layer
    free = cut_stages(graph, 2)
    assert [len(p.nodes) for p in free] == [2, 2]
    # The first device holds only one layer's weights: the cut moves up, the last stage
    # takes three layers, and each stage fits.
    caps = [stage_bytes(graph, free[0].nodes[:1]) + 1024, None]
    parts = cut_stages(graph, 2, memory=caps)
    assert [len(p.nodes) for p in parts] == [1, 3]
    assert stage_bytes(graph, parts[0].nodes) <= caps[0]
    x = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    np.testing.assert_array_equal(_run_parts(graph, parts, x)[0], interpret(graph, x)[0])


def test_a_model_too_big_for_the_devices_is_refused_before_work(tmp_path: Path) -> None:
    source = Path(load_target("x86-64-avx2").source_file).read_text()
    small = tmp_path / "small.toml"
    # A CPU with 6 MiB: two 4 MiB layers cannot share one, so three need three stages.
    small.write_text(source.replace('name = "x86-64-avx2"', 'name = "small"') + "memory_mb = 6\n")
    with pytest.raises(DeviceMemoryError, match=r"stage \d on small #\d needs at least 8\.\d MiB"):
        api.compile(_dense_chain(3, 1024), small, pipeline_stages=2, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(DeviceMemoryError, match="stage 0 on small #0"):
        cut_stages(_dense_chain(1, 2048), 1, memory=[6 << 20], devices=["small #0"])


def test_parts_placed_on_a_device_must_fit_its_memory() -> None:
    from dataclasses import replace

    pi = load_target("aarch64")  # the 4 GB board of its target file
    assert pi.memory_bytes() == 4096 << 20
    graph = _dense_chain(2, 1024)
    parts = cut_stages(graph, 2)  # both parts on device 0
    check_fits(graph, parts, [pi])
    assert pi.cpu is not None
    small = replace(pi, name="pi-6mb", cpu=replace(pi.cpu, memory_mb=6))
    with pytest.raises(DeviceMemoryError, match=r"on pi-6mb need 8\.\d MiB .* gives 6\.0 MiB"):
        check_fits(graph, parts, [small])


def test_only_tvm_stages_go_to_an_rpc_server(tmp_path: Path) -> None:
    from compiler.errors import BackendError

    with pytest.raises(BackendError, match="only TVM stages run on an RPC server"):
        api.compile(
            _dense_chain(2, 8),
            "reference",
            pipeline_stages=2,
            stage_devices=["local", "rpc://127.0.0.1:9190/k"],
            output_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()
