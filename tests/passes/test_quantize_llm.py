"""Block-quantized LLM weights: numerics, the interpreter and the quantize-llm pass."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from compiler import numerics
from compiler.context import PassContext
from compiler.errors import TapeoutError
from compiler.interpreter import interpret
from compiler.ir import Graph
from compiler.ir.parser import parse
from compiler.ir.printer import print_graph
from compiler.ir.types import TensorType
from compiler.ir.verifier import verify
from passes.quant.llm_weights import quantize_blocks
from passes.quantize_llm import QuantizeLLM


def _round_f32(value: Fraction) -> float:
    """The float32 nearest to an exact rational (ties to even), by integer arithmetic."""
    if value == 0:
        return 0.0
    mag = abs(value)
    exp = mag.numerator.bit_length() - mag.denominator.bit_length()
    exp += 1 if Fraction(2) ** (exp + 1) <= mag else 0
    exp -= 1 if Fraction(2) ** exp > mag else 0
    quantum = Fraction(2) ** (max(exp, -126) - 23)  # 24 significant bits; subnormals fixed
    whole, rest = divmod(mag / quantum, 1)
    up = rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1)
    out = float((whole + up) * quantum)
    return out if value > 0 else -out


def _fma(a: float, b: float, c: float) -> float:
    return _round_f32(Fraction(a) * Fraction(b) + Fraction(c))


def _reference(
    x: np.ndarray, q: np.ndarray, d: np.ndarray, m: np.ndarray | None, levels: int = 127
) -> np.ndarray:
    """block_dense written out with Python integers, exact rationals and one loop per sum;
    ``levels``: the largest activation code (127, or 32512 for 16-bit codes)."""
    n, k = q.shape
    g = k // d.shape[1]
    out = np.zeros((x.shape[0], n), np.float32)
    for r in range(x.shape[0]):
        for i in range(n):
            acc = 0.0
            for b in range(k // g):
                xb = x[r, b * g : (b + 1) * g].astype(np.float32)
                dx = np.float32(np.abs(xb).max() / np.float32(levels))
                qx = [int(np.rint(v / dx)) if dx > 0 else 0 for v in xb]
                isum = sum(int(q[i, b * g + j]) * qx[j] for j in range(g))
                ds = np.float32(np.float32(d[i, b]) * dx)
                acc = _fma(float(ds), float(np.float32(isum)), acc)  # isum >= 2^24: rounds
                if m is not None:
                    c = np.float32(dx * np.float32(sum(qx)))
                    acc = _fma(float(np.float32(m[i, b])), float(c), acc)
            out[r, i] = np.float32(acc)
    return out


def test_fma32_rounds_once() -> None:
    """Random sums, and ones that rounding to float64 and then to float32 rounds twice:
    (1 + 2^-12) * (2^24 - 2^12 + 1) * 2^-48 = 2^-24 + 2^-60, plus 1, is just above a float32
    tie that float64 cannot see."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal(4000).astype(np.float32)
    b = rng.integers(-(2**21), 2**21, 4000).astype(np.float32)
    c = (rng.standard_normal(4000) * 1e5).astype(np.float32)
    a[:2] = np.float32((1 + 2.0**-12) * 2.0**-24) * np.float32([1, -1])
    b[:2] = np.float32((2**24 - 2**12 + 1) * 2.0**-24)
    c[:2] = np.float32([1, -1])
    got = numerics.fma32(a, b, c)
    want = np.float32([_fma(float(x), float(y), float(z)) for x, y, z in zip(a, b, c, strict=True)])
    np.testing.assert_array_equal(got, want)
    twice = (a.astype(np.float64) * b + c).astype(np.float32)
    assert (twice[:2] != want[:2]).all()  # the hard cases are hard


@pytest.mark.parametrize("fmt", ["int8", "int8a", "int4", "int4a"])
def test_block_dense_matches_a_scalar_reference(rng: np.random.Generator, fmt: str) -> None:
    w = rng.standard_normal((6, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32) * 3
    x[1, :32] = 0  # an all-zero activation block has scale 0: its products are 0
    bw = quantize_blocks(w, fmt, 32)
    got = numerics.block_dense(x, bw.q, bw.d, bw.m)
    m = None if bw.m is None else bw.m.astype(np.float32)
    want = _reference(x, bw.q, bw.d.astype(np.float32), m)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt", ["int8", "int8a", "int4a"])
def test_16bit_activations_match_a_scalar_reference(rng: np.random.Generator, fmt: str) -> None:
    w = rng.standard_normal((6, 256)).astype(np.float32)
    x = rng.standard_normal((2, 256)).astype(np.float32) * 3
    x[0, :128] = 0
    bw = quantize_blocks(w, fmt, 128)  # the largest block: the int32 sums' widest range
    got = numerics.block_dense(x, bw.q, bw.d, bw.m, act_bits=16)
    m = None if bw.m is None else bw.m.astype(np.float32)
    want = _reference(x, bw.q, bw.d.astype(np.float32), m, levels=127 * 256)
    np.testing.assert_array_equal(got, want)


def test_16bit_codes_split_into_two_int8_planes() -> None:
    codes = np.arange(-127 * 256, 127 * 256 + 1)
    hi, lo = numerics.split_act_planes(codes)
    assert hi.dtype == lo.dtype == np.int8
    np.testing.assert_array_equal(256 * hi.astype(np.int64) + lo, codes)


def test_16bit_activations_cut_the_error_of_an_outlier_block(rng: np.random.Generator) -> None:
    """One large activation in a block (what LLM residual streams have) costs the other 31
    their precision at 8 bits; 16-bit codes keep the product within float rounding."""
    w = rng.standard_normal((32, 64)).astype(np.float32)
    bw = quantize_blocks(w, "int8a", 32)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    x[:, 3] = 60.0
    ref = x @ bw.dequantize().T
    err8 = np.abs(numerics.block_dense(x, bw.q, bw.d, bw.m) - ref).max()
    err16 = np.abs(numerics.block_dense(x, bw.q, bw.d, bw.m, act_bits=16) - ref).max()
    assert err16 < err8 / 50


def test_act_bits_other_than_8_or_16_are_refused() -> None:
    with pytest.raises(TapeoutError, match="act_bits"):
        QuantizeLLM(weights="int8", act_bits=4)


@pytest.mark.parametrize(("fmt", "tol"), [("int8", 0.02), ("int8a", 0.02), ("int4", 0.15)])
def test_block_formats_approximate_the_float_weight(
    rng: np.random.Generator, fmt: str, tol: float
) -> None:
    w = rng.standard_normal((16, 128)).astype(np.float32)
    bw = quantize_blocks(w, fmt, 32)
    err = np.abs(bw.dequantize() - w).max() / np.abs(w).max()
    assert err < tol
    x = rng.standard_normal((2, 128)).astype(np.float32)
    y = numerics.block_dense(x, bw.q, bw.d, bw.m)
    ref = x @ w.T
    cos = (y * ref).sum() / np.linalg.norm(y) / np.linalg.norm(ref)
    assert cos > (0.999 if fmt.startswith("int8") else 0.98)


def _mlp(rng: np.random.Generator) -> Graph:
    g = Graph("mlp")
    x = g.add_input("x", TensorType("f32", (1, 4, 64)))
    w1 = g.add_const("up.weight", rng.standard_normal((96, 64)).astype(np.float32))
    b1 = g.add_const("up.bias", rng.standard_normal(96).astype(np.float32))
    h = g.add_node("nn.dense", [x, w1, b1], loc="up").output
    h = g.add_node("nn.silu", [h]).output
    w2 = g.add_const("head.weight", rng.standard_normal((40, 96)).astype(np.float32))
    g.outputs = [g.add_node("nn.dense", [h, w2], loc="head").output]
    return g


def test_pass_rewrites_dense_and_keeps_the_lm_head_at_int8(rng: np.random.Generator) -> None:
    g = _mlp(rng)
    x = rng.standard_normal((1, 4, 64)).astype(np.float32)
    ref = interpret(g, x)[0]
    assert QuantizeLLM(weights="int4", group=32).run(g, PassContext())
    verify(g)
    ops = [n.op for n in g.nodes if n.op != "const"]
    assert ops == ["q.block_dense", "math.add", "nn.silu", "q.block_dense"]
    dtypes = [n.inputs[1].dtype for n in g.nodes if n.op == "q.block_dense"]
    assert dtypes == ["i4", "i8"]  # the head (a graph output) is int8 by default
    out = interpret(g, x)[0]
    cos = (out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref)
    assert cos > 0.98
    text = print_graph(g)
    assert "q.block_dense" in text and "group=32" in text
    again = parse(text, dict(g.constants))
    np.testing.assert_array_equal(interpret(again, x)[0], out)


def test_pass_takes_given_blocks_as_they_are(rng: np.random.Generator) -> None:
    g = _mlp(rng)
    w = g.constants["up.weight"]
    given = quantize_blocks(w, "int4a", 32)
    QuantizeLLM(weights="int8", lm_head="f32", blocks={"up.weight": given}).run(g, PassContext())
    dense = [n for n in g.nodes if n.op == "q.block_dense"]
    assert len(dense) == 1  # the head stays float
    np.testing.assert_array_equal(g.const_value(dense[0].inputs[1]), given.q)
    np.testing.assert_array_equal(g.const_value(dense[0].inputs[3]), given.m)


def test_pass_declines_a_group_that_does_not_divide(rng: np.random.Generator) -> None:
    g = _mlp(rng)
    assert not QuantizeLLM(weights="int8", group=128, lm_head="same").run(g, PassContext())


def test_block_dense_rejects_bad_scale_shapes() -> None:
    from compiler.errors import ShapeError
    from compiler.ir.ops import infer_types

    x, q = TensorType("f32", (1, 64)), TensorType("i4", (8, 64))
    with pytest.raises(ShapeError, match="block scales"):
        infer_types("q.block_dense", [x, q, TensorType("f32", (8, 3))], {"group": 32})
    with pytest.raises(ShapeError, match="must divide"):
        infer_types("q.block_dense", [x, q, TensorType("f32", (8, 2))], {"group": 48})


def test_llm_graphs_share_each_quantized_weight(rng: np.random.Generator) -> None:
    from types import SimpleNamespace

    from passes.quantize_llm import quantize_llm_graphs

    prefill, decode = _mlp(rng), _mlp(np.random.default_rng(1))
    decode.constants = dict(prefill.constants)  # one set of weights, as compile_llm has
    for node in decode.nodes:
        if node.op == "const":
            decode.constants[node.attrs["ref"]] = prefill.constants[node.attrs["ref"]]
    graphs = SimpleNamespace(prefill=prefill, decode=decode, weights=dict(prefill.constants))
    quantize_llm_graphs(graphs, weights="int4", group=32)
    assert "up.weight" not in graphs.weights and "up.weight_q" in graphs.weights
    for graph in (prefill, decode):
        assert all(graph.constants[n] is graphs.weights[n] for n in graph.constants)


def test_pipeline_text_builds_the_pass() -> None:
    from compiler.errors import TapeoutError
    from compiler.pass_manager import build_pass, split_pipeline

    text = "quantize-llm{weights=int8,group=64,sym=false,act_bits=16}"
    ((name, options),) = split_pipeline(text)
    built = build_pass(name, options)
    assert (built.weights, built.group, built.sym, built.act_bits) == ("int8", 64, False, 16)
    with pytest.raises(TapeoutError, match="int4 or int8"):
        QuantizeLLM(weights="int3")


def test_int8a_keeps_a_q4_1_grid_to_within_its_scale_rounding(rng: np.random.Generator) -> None:
    """Weights on an asymmetric 4-bit grid (``d * u + m`` per block: a Q4_1 file's float
    reference) lie on asymmetric int8's 255 levels (every 17th): ``int8a`` keeps them up to
    its float16 scale's rounding, symmetric ``int8`` falls between its levels."""
    d = rng.uniform(0.01, 0.02, (8, 4, 1)).astype(np.float16).astype(np.float32)
    m = (-d * rng.uniform(4, 11, (8, 4, 1))).astype(np.float16).astype(np.float32)
    u = rng.integers(0, 16, (8, 4, 32))
    u[..., 0], u[..., 1] = 0, 15  # each block spans its grid, as Q4_1's min/max do
    w = (u * d + m).astype(np.float32).reshape(8, 128)
    step = np.repeat(d.reshape(8, 4), 32, axis=1)  # the 4-bit grid's step per weight
    errors = {
        fmt: float((np.abs(quantize_blocks(w, fmt, 32).dequantize() - w) / step).max())
        for fmt in ("int8a", "int8")
    }
    assert errors["int8a"] < 0.01, errors
    assert errors["int8"] > 2 * errors["int8a"], errors


def test_act_bits_survive_the_ir_text(rng: np.random.Generator) -> None:
    """The printed graph names 16-bit activations, and parsing it back keeps them (its
    results differ from the same weights' 8-bit build)."""
    g = _mlp(np.random.default_rng(3))
    QuantizeLLM(weights="int8", act_bits=16).run(g, PassContext())
    text = print_graph(g)
    assert "act_bits=16" in text
    back = parse(text, dict(g.constants))
    verify(back)
    x = rng.standard_normal((1, 4, 64)).astype(np.float32)
    np.testing.assert_array_equal(interpret(back, x)[0], interpret(g, x)[0])
    eight = _mlp(np.random.default_rng(3))
    QuantizeLLM(weights="int8").run(eight, PassContext())
    assert not np.array_equal(interpret(eight, x)[0], interpret(g, x)[0])


def test_report_names_activation_and_weight_blocks_and_counts_macs(
    rng: np.random.Generator,
) -> None:
    """A hardware engineer reads what each quantized dense multiplies, and its MACs."""
    from compiler.report import layer_rows

    g = _mlp(rng)
    dense_macs = {r["name"]: r["macs"] for r in layer_rows(g) if r["op"] == "nn.dense"}
    QuantizeLLM(weights="int4", group=32, act_bits=16).run(g, PassContext())
    rows = [r for r in layer_rows(g) if r["op"] == "q.block_dense"]
    assert [r["precision"] for r in rows] == ["a16/32 x i4/32 -> f32", "a16/32 x i8/32 -> f32"]
    macs = sorted(r["macs"] for r in rows)
    assert macs == sorted(dense_macs.values()) == [4 * 40 * 96, 4 * 96 * 64]
