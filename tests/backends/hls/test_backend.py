"""The HLS backend without the zoo: unsupported ops, names, reuse factors, the artifact folder.

Most tests here only lower and print (no g++); the ONNX test with hostile node names builds
and runs the generated C++.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import compiler
from backends.c_names import Namer, c_identifier, comment_text
from backends.hls import HlsBackend
from compiler.errors import BackendError
from compiler.interpreter import interpret
from compiler.ir import Graph, QuantParams, TensorType, f32, verify
from compiler.ir.parser import parse
from compiler.target import load_target
from tests.passes.ir_cases import graph_from

HOSTILE = 'x"); system("rm -rf /"); //'


def qmlp(sizes: tuple[int, ...] = (16, 64, 32, 32, 5), zeros: float = 0.0, seed: int = 0) -> Graph:
    """A quantized MLP in the quantize pass's power-of-two form."""
    rng = np.random.default_rng(seed)
    g = Graph("mlp")
    x = g.add_input("x", f32(1, sizes[0]))
    h = g.add_node(
        "q.quantize",
        [x],
        {"dtype": "i8"},
        out_types=[TensorType("i8", (1, sizes[0]), QuantParams.per_tensor(2**-4))],
    ).outputs[0]
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        w = rng.integers(-128, 128, (n, k))
        w[rng.random((n, k)) < zeros] = 0
        wq = g.add_const(
            f"fc{i}.w",
            w.astype(np.int8),
            TensorType("i8", (n, k), QuantParams.per_channel(np.full(n, 2.0**-7), 0)),
        )
        b = g.add_const(f"fc{i}.b", rng.integers(-5000, 5000, n).astype(np.int32))
        acc = g.add_node(
            "nn.dense", [h, wq, b], {"act": "relu", "acc": "i32"}, loc=f"fc{i}"
        ).outputs[0]
        h = g.add_node(
            "q.requantize",
            [acc],
            {"dtype": "i8", "multiplier": [1] * n, "shift": [10] * n, "axis": 1},
            out_types=[TensorType("i8", (1, n), QuantParams.per_tensor(2**-3))],
            loc=f"fc{i}",
        ).outputs[0]
    g.outputs = [g.add_node("q.dequantize", [h], {}).outputs[0]]
    verify(g)
    return g


def lower(graph: Graph, target: str, tmp: Path, **options):
    return HlsBackend().compile(graph, load_target(target), tmp, {"tb_samples": 4, **options})


# ---- names ------------------------------------------------------------------------------------
def test_identifiers_are_safe_and_unique() -> None:
    namer = Namer()
    names = [namer.ident(h) for h in (HOSTILE, HOSTILE, "int", "3x3", "", "a.b/c", "__x")]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.replace("_", "a").isalnum() and not name[0].isdigit()
    assert names[0] == "x_system_rm_rf" and names[1] == "x_system_rm_rf_1"
    assert c_identifier("int") != "int" and c_identifier("tapeout") != "tapeout"


def test_comments_cannot_be_broken_out_of() -> None:
    text = comment_text("a */ b\nint evil; \\\r?" + "?/ c")
    assert "\n" not in text and "\r" not in text and "*/" not in text
    assert "\\" not in text and "??" not in text


# ---- unsupported --------------------------------------------------------------------------------
def test_unsupported_lists_every_float_node_before_any_work(tmp_path: Path) -> None:
    g = parse(
        """graph @float(%x: f32[1,8]) -> (f32[1,4]) {
  %w: f32[4,8] = const @w
  %y: f32[1,4] = nn.dense(%x, %w) loc("fc")
  %z: f32[1,4] = nn.softmax(%y) {axis=-1} loc("sm")
  return %z
}""",
        {"w": np.ones((4, 8), np.float32)},
    )
    items = HlsBackend().unsupported(g, load_target("zcu104"))
    ops = sorted(i.op for i in items)
    assert ops == ["input", "nn.dense", "nn.softmax", "output"]
    assert all("quantize" in i.reason for i in items)
    with pytest.raises(compiler.errors.UnsupportedOpsError) as err:
        lower(g, "zcu104", tmp_path)
    assert "nn.softmax" in str(err.value) and "nn.dense" in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_integer_types_without_a_c_type_are_refused_by_name() -> None:
    """u64 (found by the fuzzer: a mutated uint8 max pool) has no C type in the kernels: both
    architectures refuse it with that reason instead of failing inside the code generator."""
    g = graph_from("""
    graph @g(%x: u64[1,1,4,4]) -> (u64[1,1,2,2]) {
      %p: u64[1,1,2,2] = nn.max_pool2d(%x) {kernel=[2, 2]}
      return %p
    }
    """)
    calib = [(np.arange(16, dtype=np.uint64).reshape(1, 1, 4, 4),)]
    for arch in ("dataflow", "engine"):
        with pytest.raises(compiler.errors.UnsupportedOpsError, match="u64 tensors have no C type"):
            compiler.compile(g, "zcu104", fpga_arch=arch, calibration_data=calib)


# ---- the artifact folder ------------------------------------------------------------------------
def test_folder_layout_interface_and_project_files(tmp_path: Path) -> None:
    art = lower(qmlp(), "zcu104", tmp_path)
    top = art.summary["top"]
    for rel in (
        f"firmware/{top}.cpp",
        f"firmware/{top}.h",
        "firmware/parameters.h",
        "firmware/weights/fc0.h",
        "firmware/tapeout/dense.h",
        "firmware/tapeout/io.h",
        f"tb/tb_{top}.cpp",
        "tb/host.cpp",
        "tb/data/input_0.bin",
        "tb/data/output_0.bin",
        "run_hls.tcl",
        "Makefile",
        "README.md",
    ):
        assert (tmp_path / rel).is_file(), rel
    src = (tmp_path / f"firmware/{top}.cpp").read_text()
    assert "#pragma HLS INTERFACE axis port=" in src and "#pragma HLS DATAFLOW" in src
    assert "ARRAY_PARTITION" in src
    params = (tmp_path / "firmware/parameters.h").read_text()
    assert "static const int rf = " in params and "requant_pow2 = true" in params
    tcl = (tmp_path / "run_hls.tcl").read_text()
    for word in (
        "open_project",
        f"set_top {top}",
        "add_files",
        "open_solution",
        "set_part {xczu7ev-ffvc1156-2-e}",
        "create_clock -period 5 ",
        "csim_design",
        "csynth_design",
        "cosim_design",
        "export_design -format ip_catalog",
    ):
        assert word in tcl, word
    make = (tmp_path / "Makefile").read_text()
    assert "\ncsim:" in make and "\nhls:" in make and "vitis_hls -f run_hls.tcl" in make
    readme = (tmp_path / "README.md").read_text()
    assert "make csim" in readme and "latency" in readme and "DSP" in readme


def test_m_axi_interface_from_the_target(tmp_path: Path) -> None:
    art = lower(qmlp(), "u250", tmp_path)
    src = (tmp_path / f"firmware/{art.summary['top']}.cpp").read_text()
    assert "#pragma HLS INTERFACE m_axi port=" in src
    assert "#pragma HLS INTERFACE s_axilite port=return" in src
    assert "create_clock -period 3.333" in (tmp_path / "run_hls.tcl").read_text()


def test_compiling_twice_gives_identical_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    lower(qmlp(), "zcu104", a)
    lower(qmlp(), "zcu104", b)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


# ---- resources and reuse factors ----------------------------------------------------------------
def test_report_rows_and_totals(tmp_path: Path) -> None:
    art = lower(qmlp(), "zcu104", tmp_path)
    rows = [r for r in art.layers if r["op"].startswith("nn.dense")]
    assert len(rows) == 4
    for row in rows:
        for key in ("shape", "bits", "rf", "dsp", "bram18k", "lut", "ii", "latency"):
            assert key in row
        assert row["ii"] == row["rf"]
    s = art.summary
    assert s["dsp"] <= s["dsp_budget"] == 1728 and s["bram18k"] <= s["bram18k_budget"]
    assert s["dsp"] == sum(r["dsp"] for r in art.layers)
    assert s["latency_cycles"] == sum(r["latency"] for r in art.layers)
    assert s["latency_ns"] == pytest.approx(s["latency_cycles"] * 5.0)
    assert s["interval_cycles"] == max(r["latency"] for r in art.layers)


def test_auto_reuse_fits_the_jet_mlp_under_100ns(tmp_path: Path) -> None:
    s = lower(qmlp(), "zcu104", tmp_path).summary
    assert s["latency_ns"] <= 100 and s["dsp"] <= 1728


def test_fixed_reuse_factors(tmp_path: Path) -> None:
    art = lower(qmlp(), "zcu104", tmp_path / "int", reuse_factor=4)
    assert set(art.summary["reuse_factors"].values()) == {4}
    art = lower(qmlp(), "zcu104", tmp_path / "dict", reuse_factor={"fc1": 8})
    assert art.summary["reuse_factors"]["fc1"] == 8
    with pytest.raises(BackendError, match="unknown layer 'nope'"):
        lower(qmlp(), "zcu104", tmp_path / "bad", reuse_factor={"nope": 2})
    with pytest.raises(BackendError, match="unknown option"):
        lower(qmlp(), "zcu104", tmp_path / "opt", reuse=2)


def test_a_design_that_cannot_fit_says_what_is_short(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"DSP short by \d+ \(needs \d+, the part has 220\)"):
        lower(qmlp(), "pynq-z2", tmp_path / "rf1", reuse_factor=1)
    big = qmlp((512, 2048, 2048, 10))
    with pytest.raises(BackendError, match="even at the largest reuse factors: .*short by"):
        lower(big, "pynq-z2", tmp_path / "big", fpga_arch="dataflow")
    # left to choose, the backend takes the weight-streaming engine instead and says why
    art = lower(big, "pynq-z2", tmp_path / "auto", tb_samples=0)
    assert art.summary["fpga_arch"] == "engine" and "exceed" in art.summary["arch_reason"]


def test_pruned_weights_cost_no_dsp(tmp_path: Path) -> None:
    dense = lower(qmlp(), "zcu104", tmp_path / "d", reuse_factor=4).summary["dsp"]
    pruned = lower(qmlp(zeros=0.5), "zcu104", tmp_path / "p", reuse_factor=4).summary["dsp"]
    assert pruned < 0.6 * dense


def test_packing_option_changes_the_estimate(tmp_path: Path) -> None:
    two = lower(qmlp(), "zcu104", tmp_path / "2", reuse_factor=4).summary["dsp"]
    one = lower(qmlp(), "zcu104", tmp_path / "1", reuse_factor=4, dsp_packing=1).summary["dsp"]
    assert one == pytest.approx(2 * two, rel=0.01)


# ---- end to end through the API with an ONNX model whose names are hostile ---------------------
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C simulation)")
def test_hostile_onnx_names_compile_run_and_stay_in_comments(tmp_path: Path) -> None:
    """Hostile node and graph names, and a symbolic batch (the design takes one sample)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 6)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(3, 8)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], name=HOSTILE, transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="*/ int bad;\n#define X \\"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="??/\nlast", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "evil graph */",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    calib = rng.normal(size=(64, 1, 6)).astype(np.float32)
    art = compiler.compile(
        model, target="fpga", calibration_data=calib, output_dir=tmp_path / "out"
    )
    x = rng.normal(size=(20, 6)).astype(np.float32)
    got = art.run(x)[0]
    want = np.concatenate([interpret(art.graph, x[i : i + 1])[0] for i in range(20)])
    assert got.tobytes() == want.tobytes()
    for path in (tmp_path / "out").rglob("*"):
        if path.suffix in (".cpp", ".h") and path.parent.name != "tapeout":
            for line in path.read_text().splitlines():
                code = line.split("//")[0]
                assert 'system("' not in code and "int bad" not in code, line
                assert "#define X" not in line and "*/" not in line, line
