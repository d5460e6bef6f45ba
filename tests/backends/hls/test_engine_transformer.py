"""Transformer ops on the engine: integer softmax / layer norm / activation matmul.

The integer definitions (``compiler.numerics``) are checked against float math, the
``integer_ops`` quantize plan against the float encoder, the engine's units on a hand-built
graph with the awkward cases (an NHWC operand gathered into row order, non-zero zero points,
a row of equal values, a row spanning -128..127, a constant row for the layer norm) under
ASan/UBSan, and the zoo's BERT-style encoder end to end: C simulation equal to the
interpreter on every element for several inputs, and the roofline's cycles per layer.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

import compiler
from compiler import numerics
from compiler.interpreter import interpret
from compiler.ir.graph import Graph
from compiler.ir.types import QuantParams, TensorType
from tests.cases import get_case

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C simulation)")


def test_integer_sqrt_is_exact() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            np.arange(0, 300),
            rng.integers(0, 2**52, 2000),
            np.array([k * k + d for k in (2**20, 2**26 - 1, 2**31 - 1) for d in (-1, 0, 1)]),
        ]
    ).astype(np.int64)
    got = numerics.isqrt(values)
    assert [int(g) for g in got] == [math.isqrt(int(v)) for v in values]


def test_integer_softmax_and_layernorm_track_float() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (64, 40)).astype(np.int8)
    x[0] = 7  # all equal: uniform probabilities
    x[1, :20], x[1, 20:] = -128, 127  # the widest difference the table holds
    scale, zp = 0.05, 3
    real = (x.astype(np.float64) - zp) * scale
    p = numerics.int_softmax(x, zp, scale) / 2.0**numerics.SOFTMAX_BITS
    e = np.exp(real - real.max(axis=-1, keepdims=True))
    assert np.abs(p - e / e.sum(axis=-1, keepdims=True)).max() < 2e-4
    eps = 1e-5
    eps_int = round(40 * 40 * eps / scale**2)
    z = numerics.int_layernorm_z(x, zp, eps_int) / 2.0**numerics.LAYERNORM_BITS
    mean, var = real.mean(axis=-1, keepdims=True), real.var(axis=-1, keepdims=True)
    want = (real - mean) / np.sqrt(var + eps)
    assert np.abs(z - want).max() < 0.02 and np.all(z[0] == 0)


def _qp(scale: float, zp: int = 0) -> QuantParams:
    return QuantParams.per_tensor(scale, zp)


def units_graph() -> Graph:
    """NHWC input -> q.softmax (gathered to row order) -> matmul with its transpose ->
    requantize with clips -> q.layernorm; non-zero zero points throughout."""
    rng = np.random.default_rng(2)
    g = Graph("xf_units")
    x = g.add_input("x", TensorType("i8", (1, 4, 6, 6), _qp(0.1, 3)))
    m, s = numerics.quantize_multiplier(2.0**-15 / 0.004)
    sm_t = TensorType("i8", (1, 4, 6, 6), _qp(0.004, -100))
    sm = g.add_node(
        "q.softmax", [x], {"dtype": "i8", "multiplier": m, "shift": s}, out_types=[sm_t]
    ).output
    xt = g.add_node(
        "tensor.transpose", [x], {"perm": [0, 1, 3, 2]},
        out_types=[TensorType("i8", (1, 4, 6, 6), _qp(0.1, 3))],
    ).output  # fmt: skip
    acc = g.add_node("nn.matmul", [sm, xt], {"acc": "i32"}).output
    m2, s2 = numerics.quantize_multiplier(0.004 * 0.1 / 0.01)
    mm = g.add_node(
        "q.requantize", [acc],
        {"dtype": "i8", "multiplier": [m2], "shift": [s2], "clip_min": -90, "clip_max": 100},
        out_types=[TensorType("i8", (1, 4, 6, 6), _qp(0.01, 2))],
    ).output  # fmt: skip
    gamma = g.add_const("gamma", rng.integers(-(2**18), 2**18, 6).astype(np.int32))
    beta = g.add_const("beta", rng.integers(-(2**21), 2**21, 6).astype(np.int32))
    ln = g.add_node(
        "q.layernorm", [mm, gamma, beta], {"dtype": "i8", "eps_int": 3},
        out_types=[TensorType("i8", (1, 4, 6, 6), _qp(0.05, -5))],
    ).output  # fmt: skip
    g.outputs = [ln, sm]
    return g


@needs_gxx
def test_transformer_units_match_the_interpreter_under_sanitizers(tmp_path) -> None:
    art = compiler.compile(
        units_graph(), target="zcu104", output_dir=tmp_path / "units", pipeline=[],
        fpga_arch="engine", tb_samples=2,
    )  # fmt: skip
    assert {"gather", "softmax", "matmul", "layernorm"} <= {row["op"] for row in art.layers}
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (5, 4, 6, 6)).astype(np.int8)
    x[1] = 5  # equal rows: uniform softmax, a constant layer-norm row
    x[2, :, :, :3], x[2, :, :, 3:] = -128, 127
    got = art.run(x)
    for i in range(len(x)):
        want = interpret(art.graph, x[i : i + 1])
        for j, (gv, wv) in enumerate(zip(got, want, strict=True)):
            assert gv[i : i + 1].tobytes() == np.asarray(wv).tobytes(), f"sample {i}, out {j}"
    assert len(np.unique(got[0])) > 30  # not clipped flat
    result = art.run_testbench(sanitize=True)
    assert result.returncode == 0 and "0 mismatching" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    import torch

    case = get_case("encoder")
    model = case.build()
    x0 = case.example_inputs()[0]
    calib = np.random.default_rng(0).normal(size=(8, *x0.shape[1:])).astype(np.float32)
    art = compiler.compile(
        model, target="zcu104", example_inputs=(x0,), calibration_data=calib,
        output_dir=tmp_path_factory.mktemp("encoder") / "engine", fpga_arch="engine",
        quant={"integer_ops": True}, tb_samples=2,
    )  # fmt: skip
    return model, art, torch


def test_integer_ops_leave_the_encoder_integer_but_for_gelu_tables(encoder) -> None:
    model, art, torch = encoder
    ops = [n.op for n in art.graph.nodes]
    assert ops.count("q.softmax") == 2 and ops.count("q.layernorm") == 4
    for node in art.graph.nodes:
        if node.op == "nn.matmul":
            assert all(v.dtype == "i8" for v in node.inputs)
        floats = [v for v in node.outputs if v.dtype.startswith("f")]
        if floats and node.op not in ("const", "q.dequantize"):
            assert node.op == "nn.gelu", node.op  # an i8 -> i8 table on the engine
    x = np.random.default_rng(5).normal(size=(1, 16, 64)).astype(np.float32)
    (got,) = interpret(art.graph, x)
    want = model(torch.from_numpy(x)).detach().numpy()
    cosine = float((got * want).sum() / np.linalg.norm(got) / np.linalg.norm(want))
    assert cosine > 0.99, cosine


@needs_gxx
def test_encoder_csim_equals_interpreter_on_every_element(encoder) -> None:
    _, art, _ = encoder
    x = np.random.default_rng(6).normal(size=(4, 16, 64)).astype(np.float32)
    x[3] *= 8  # saturating inputs
    got = art.run(x)[0]
    want = np.concatenate([interpret(art.graph, x[i : i + 1])[0] for i in range(len(x))])
    assert got.tobytes() == want.tobytes()
    result = art.run_testbench()
    assert result.returncode == 0 and "0 mismatching" in result.stdout, result.stdout


def test_encoder_cycles_per_layer(encoder) -> None:
    """The roofline's rows for the attention units, against hand-computed counts."""
    _, art, _ = encoder
    pp, icp, ocp = (art.summary[k] for k in ("pp", "icp", "ocp"))
    rows = {r["op"]: r for r in art.layers}
    # q @ k^T: 4 heads of 16x16 over K = 16; each head pays the 16-cycle pipeline fill.
    per_head = math.ceil(16 / pp) * math.ceil(16 / ocp) * math.ceil(16 / icp) + 16
    assert rows["matmul"]["compute_cycles"] == 4 * per_head
    assert rows["softmax"]["compute_cycles"] == 64 * 3 * math.ceil(16 / icp)
    assert rows["layernorm"]["compute_cycles"] == 16 * 3 * math.ceil(64 / icp)
    assert rows["gather"]["compute_cycles"] == 16 * 64
    per_layer = art.summary["cycles_per_block"]
    assert set(per_layer) == {"0", "1"} and all(c > 0 for c in per_layer.values())
    assert sum(per_layer.values()) <= art.summary["cycles"]



def test_float_softmax_on_the_engine_says_to_use_integer_ops(tmp_path) -> None:
    import torch

    from compiler.errors import UnsupportedOpsError

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Softmax(-1)).eval()
    x0 = torch.randn(1, 4, 8)
    calib = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)
    args = {"target": "zcu104", "example_inputs": (x0,), "calibration_data": calib}
    with pytest.raises(UnsupportedOpsError, match=r"nn.softmax.*integer_ops"):
        compiler.compile(model, output_dir=tmp_path / "no", fpga_arch="engine", **args)
    assert not (tmp_path / "no").exists()
    art = compiler.compile(
        model, output_dir=tmp_path / "yes", fpga_arch="engine", quant={"integer_ops": True},
        tb_samples=0, **args,
    )  # fmt: skip
    assert [row["op"] for row in art.layers] == ["dense", "softmax"]
