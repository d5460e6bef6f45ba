"""QuantConfig: one config for the pipeline form, compile(), the CLI flags; the bugs it fixed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler.api import plan_pipeline, resolve_quant
from compiler.cli import build_parser, main
from compiler.errors import TapeoutError
from compiler.ir import Graph, TensorType
from compiler.pass_manager import build_pass, pass_options
from compiler.quant_config import QuantConfig, cli_flags, quant_changes
from compiler.target import load_target

DATA = Path(compiler.__file__).parent / "data"
DIGITS_ONNX = str(DATA / "digits_cnn.onnx")
DIGITS_CALIB = str(DATA / "digits_calib.npz")


def mlp(features: int = 64) -> Graph:
    g = Graph("mlp")
    rng = np.random.default_rng(0)
    x = g.add_input("x", TensorType("f32", (2, features)))
    w = g.add_const("fc.weight", rng.standard_normal((16, features)).astype(np.float32))
    b = g.add_const("fc.bias", rng.standard_normal(16).astype(np.float32))
    g.outputs = [g.add_node("nn.dense", [x, w, b], {"act": "relu"}, loc="fc").output]
    return g


def quantize_pass_config(passes: list) -> QuantConfig:
    (config,) = [p.config for p in passes if p.name == "quantize"]
    return config


# ---- one config, three spellings -------------------------------------------------------------
def test_pipeline_form_builds_the_config_and_prints_it_back() -> None:
    p = build_pass("quantize", {"bits": 16, "per_channel": False, "exclude": ["fc"]})
    assert p.config == QuantConfig(precision="int16", per_channel=False, exclude=("fc",))
    assert pass_options(p) == "{precision=int16,per_channel=false,exclude=('fc',)}"
    with pytest.raises(TapeoutError, match="no option"):
        build_pass("quantize", {"bitz": 8})
    with pytest.raises(TapeoutError, match="bits=3"):
        build_pass("quantize", {"bits": 3})
    with pytest.raises(TapeoutError, match="unknown calibrator"):
        QuantConfig(calibrator="magic")


def test_every_cli_field_is_a_flag_and_parses_into_the_config() -> None:
    flags = {flag for flag, _ in cli_flags()}
    for f in dataclasses.fields(QuantConfig):
        assert (f"--{f.name.replace('_', '-')}" in flags) == f.metadata["cli"], f.name
    args = build_parser().parse_args(
        ["compile", "m.onnx", "-o", "out", "--precision", "mixed", "--budget", "40",
         "--no-per-channel", "--exclude", "fc", "--exclude", "conv*"]
    )  # fmt: skip
    changes = quant_changes(args)
    assert changes == {"precision": "mixed", "budget": 40.0, "per_channel": False,
                       "exclude": ["fc", "conv*"]}  # fmt: skip
    assert QuantConfig(**changes).exclude == ("fc", "conv*")


def test_compile_options_apply_over_the_target_pipeline() -> None:
    fpga = load_target("zcu104")  # its pipeline says quantize{bits=8,...,power_of_two=true}
    whole, changes = resolve_quant(fpga, {"calibrator": "mse"}, precision="int16")
    config = quantize_pass_config(plan_pipeline(fpga, None, whole, changes))
    assert (config.precision, config.calibrator, config.power_of_two) == ("int16", "mse", True)
    whole, changes = resolve_quant(fpga, QuantConfig(precision="int8", per_channel=False))
    config = quantize_pass_config(plan_pipeline(fpga, None, whole, changes))
    assert config == QuantConfig(per_channel=False)  # a whole config replaces the pipeline's
    with pytest.raises(TapeoutError, match="does not allow precision 'fp16'"):
        resolve_quant(fpga, None, precision="fp16")


# ---- the bugs ------------------------------------------------------------------------------
def test_fpga_int8_compiles_from_python_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # precision used to reach the HLS backend as an option it rejects
    calib = np.load(DIGITS_CALIB)["x"][:16]
    art = compiler.compile(
        DIGITS_ONNX, target="zcu104", calibration_data=calib, precision="int8",
        output_dir=tmp_path / "py",
    )  # fmt: skip
    assert art.graph.nodes_of("q.requantize") and (tmp_path / "py" / "firmware").is_dir()
    code = main(["compile", DIGITS_ONNX, "--target", "fpga", "--precision", "int8",
                 "--calib", DIGITS_CALIB, "-o", str(tmp_path / "cli"), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["ok"]


def test_mixed_precision_takes_its_budget_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["compile", DIGITS_ONNX, "--target", "reference", "--precision", "mixed",
            "--calib", DIGITS_CALIB, "--report-samples", "2", "--json"]  # fmt: skip
    code = main([*base, "-o", str(tmp_path / "none")])
    assert code == 1 and "--budget" in json.loads(capsys.readouterr().out)["error"]["message"]
    integer = {}
    for budget in ("1", "200"):  # met by int8 as it is; met by no candidate: all float
        code = main([*base, "--budget", budget, "-o", str(tmp_path / budget)])
        assert code == 0, capsys.readouterr().err
        graph = compiler.load(tmp_path / budget).graph
        integer[budget] = [n.inputs[0].dtype for n in graph.nodes_of("nn.conv2d", "nn.dense")]
    assert set(integer["1"]) == {"i8"} and set(integer["200"]) == {"f32"}


@pytest.mark.parametrize("precision", ["fp16", "int4w"])
def test_weight_only_precisions_need_no_calibration_data(precision: str) -> None:
    art = compiler.compile(mlp(), "reference", precision=precision)
    weight = art.graph.nodes_of("nn.dense")[0].inputs[1]
    assert weight.dtype == {"fp16": "f16", "int4w": "f32"}[precision]
    x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
    want, got = compiler.interpret(mlp(), x)[0].ravel(), art.run(x)[0].ravel()
    assert float(want @ got) / float(np.linalg.norm(want) * np.linalg.norm(got)) > 0.98


def test_int4w_is_accepted_on_cpu_and_runs_on_onnx() -> None:
    for name in ("cpu", "znver3", "aarch64", "onnx"):
        whole, changes = resolve_quant(load_target(name), None, precision="int4w")
        passes = plan_pipeline(load_target(name), None, whole, changes)
        assert quantize_pass_config(passes).precision == "int4w", name
    pytest.importorskip("onnxruntime")
    art = compiler.compile(mlp(), "onnx", precision="int4w")
    assert art.graph.nodes_of("q.dequantize")[0].inputs[0].dtype == "i4"
    x = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    np.testing.assert_allclose(
        art.run(x)[0], compiler.interpret(art.graph, x)[0], rtol=1e-5, atol=1e-5
    )


def test_mixed_precision_budget_can_bound_the_cosine() -> None:
    from passes.quantize import quantize_graph

    calib = np.load(DIGITS_CALIB)["x"][:32]
    graph = compiler.import_model(DIGITS_ONNX)
    plain = quantize_graph(graph.copy(), None, calib, report_samples=4)
    assert plain.output_cosine is not None and plain.output_cosine < 1.0
    goal = 1.0 - (1.0 - plain.output_cosine) / 4  # a quarter of int8's cosine error
    report = quantize_graph(
        graph, None, calib, precision="mixed", budget=goal, budget_metric="cosine",
        report_samples=4,
    )  # fmt: skip
    assert report.budget == f">= {goal} output cosine"
    assert report.budget_met and report.output_cosine >= goal and report.kept_wider


def test_quantize_stages_are_passes_print_after_shows() -> None:
    from compiler.ir import parse
    from tests.passes.test_quantize import cnn, data

    graph = cnn()
    printed: list[str] = []
    art = compiler.compile(
        graph, "reference", calibration_data=data(8), pipeline="quantize",
        print_after="all", printer=printed.append,
    )  # fmt: skip
    stages = ["calibrate", "quantize-rewrite", "bias-correct", "mixed-precision", "quant-report"]
    assert [r["name"] for r in art.passes] == stages
    after = {text.split()[4].split("{")[0]: text.split("\n", 1)[1] for text in printed}
    assert set(after) == set(stages)
    # calibrate leaves the graph as it found it: what it shows is what the rewrite reads
    assert parse(after["calibrate"], graph.constants) == graph
    rewritten = parse(after["quantize-rewrite"], art.graph.constants)
    assert rewritten == art.graph  # no later stage changed it (no bias correction, not mixed)
