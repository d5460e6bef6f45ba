"""The HLS backend's rule table on hand-built quantized graphs, bit for bit against the interpreter.

Two graphs cover every rule between them: a CNN with an asymmetric u8 input (zero-point
paths), strided/depthwise/grouped convs, a conv with a raw residual operand, per-channel and
per-tensor requantize with and without multipliers, max/avg/global pools, q.add, concat,
flatten into dense (weights permuted) and flatten to an output (NHWC -> NCHW copy), a float
island turned into a lookup table, and float-table / per-channel dequantized / integer
outputs; and an MLP with an integer input, standalone requantize with clips and integer relu
on the m_axi interface of the u250. Each is compiled once and built once with g++.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from backends.hls import HlsBackend
from backends.hls.resources import KIND_MODELS
from backends.hls.rules import RULES
from compiler import numerics
from compiler.interpreter import interpret
from compiler.ir import Graph, QuantParams, TensorType, f32, verify
from compiler.ir.graph import Value
from compiler.target import load_target

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C simulation)")


def qt(dtype: str, shape: tuple[int, ...], scale: float = 1.0, zp: int = 0) -> TensorType:
    return TensorType(dtype, tuple(shape), QuantParams.per_tensor(scale, zp))


class Builder:
    """Quantized graphs by hand; requantize scales fitted on sample inputs."""

    def __init__(self, name: str, x_type: TensorType, samples: np.ndarray) -> None:
        self.g = Graph(name)
        self.rng = np.random.default_rng(7)
        self.x = self.g.add_input("x", x_type)
        self.samples = samples

    def node(
        self,
        op: str,
        ins: list[Value],
        attrs: dict,
        out: TensorType | None = None,
        loc: str | None = None,
    ) -> Value:
        types = None if out is None else [out]
        return self.g.add_node(op, ins, attrs, out_types=types, loc=loc).outputs[0]

    def weights(self, name: str, shape: tuple[int, ...], zeros: float = 0.1) -> Value:
        w = self.rng.integers(-127, 128, size=shape)
        w[self.rng.random(shape) < zeros] = 0  # pruned weights
        qp = QuantParams.per_channel(np.full(shape[0], 2.0**-7), 0)
        return self.g.add_const(name, w.astype(np.int8), TensorType("i8", shape, qp))

    def bias(self, name: str, n: int) -> Value:
        return self.g.add_const(name, self.rng.integers(-3000, 3000, size=n).astype(np.int32))

    def peek(self, value: Value) -> np.ndarray:
        """``value`` on the sample inputs (graph outputs set temporarily)."""
        saved = self.g.outputs
        self.g.outputs = [value]
        out = np.concatenate([interpret(self.g, s[None])[0] for s in self.samples])
        self.g.outputs = saved
        return out

    def requant(
        self,
        acc: Value,
        dtype: str = "i8",
        zp: int = 0,
        pow2: bool = True,
        per_channel: bool = True,
        clip: tuple[int | None, int | None] = (None, None),
        loc: str | None = None,
    ) -> Value:
        data = self.peek(acc).astype(np.float64)
        axis = 1
        shape = tuple(int(d) for d in acc.type.shape)
        chans = shape[axis]
        peak = np.abs(np.moveaxis(data, axis, 0).reshape(chans, -1)).max(axis=1) + 1
        peak = peak if per_channel else np.full(1, peak.max())
        pairs = [
            numerics.quantize_multiplier(2.0 ** np.floor(np.log2(110 / p)) if pow2 else 150 / p)
            for p in peak
        ]
        attrs = {
            "dtype": dtype,
            "multiplier": [m for m, _ in pairs],
            "shift": [s for _, s in pairs],
            "axis": axis,
            "clip_min": clip[0],
            "clip_max": clip[1],
        }
        return self.node("q.requantize", [acc], attrs, qt(dtype, shape, 0.05, zp), loc)


def _cnn() -> Graph:
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(6, 3, 9, 9)).astype(np.float32)
    b = Builder("cnn_ops", f32(1, 3, 9, 9), samples)
    x = b.node("q.quantize", [b.x], {"dtype": "u8"}, qt("u8", (1, 3, 9, 9), 2.0**-5, 100))
    conv = {"acc": "i32", "dilations": [1, 1]}
    a = b.node(
        "nn.conv2d",
        [x, b.weights("c1.w", (8, 3, 3, 3)), b.bias("c1.b", 8)],
        {**conv, "strides": [2, 2], "pads": [1, 1, 1, 1], "act": "relu"},
        loc='c1"); system("rm -rf /"); //',
    )
    c1 = b.requant(a, zp=-3, pow2=False, clip=(None, 90))  # 1x8x5x5
    a = b.node(
        "nn.conv2d",
        [c1, b.weights("dw.w", (16, 1, 3, 3))],
        {**conv, "pads": [1, 1, 1, 1], "groups": 8, "act": "relu6"},
        loc="dw */ x",
    )
    dw = b.requant(a, per_channel=False)  # 1x16x5x5, depthwise with multiplier 2
    a = b.node(
        "nn.conv2d",
        [dw, b.weights("g.w", (8, 4, 1, 1)), b.bias("g.b", 8), c1],
        {**conv, "groups": 4},
        loc="grouped\nresidual",
    )
    gr = b.requant(a, pow2=False)  # grouped conv + raw residual
    mp = b.node(
        "nn.max_pool2d",
        [gr],
        {"kernel": [2, 2], "strides": [2, 2], "ceil_mode": True, "pads": [0, 0, 0, 0]},
        qt("i8", (1, 8, 3, 3), 0.05),
    )
    ap = b.node(
        "q.avg_pool2d",
        [gr],
        {
            "kernel": [3, 3],
            "strides": [2, 2],
            "pads": [1, 1, 1, 1],
            "dtype": "i8",
            "multiplier": 1431655765,
            "shift": 32,
        },
        qt("i8", (1, 8, 3, 3), 0.05, 2),
    )
    add = b.node(
        "q.add",
        [mp, ap],
        {"dtype": "i8", "a_multiplier": 3, "b_multiplier": 5, "shift": 3, "act": "relu"},
        qt("i8", (1, 8, 3, 3), 0.05),
    )
    cat = b.node("tensor.concat", [add, mp], {"axis": 1}, qt("i8", (1, 16, 3, 3), 0.05))
    gp = b.node(
        "q.global_avg_pool",
        [cat],
        {"dtype": "i8", "multiplier": 1908874354, "shift": 33},
        qt("i8", (1, 16, 1, 1), 0.05),
    )
    deq = b.node("q.dequantize", [gp], {})
    sig = b.node("nn.sigmoid", [deq], {})
    lut = b.node("q.quantize", [sig], {"dtype": "i8"}, qt("i8", (1, 16, 1, 1), 2.0**-7))
    flat = b.node("tensor.flatten", [cat], {"axis": 1}, qt("i8", (1, 144), 0.05))
    fc = b.node(
        "nn.dense",
        [flat, b.weights("fc.w", (10, 144)), b.bias("fc.b", 10)],
        {"acc": "i32"},
        loc="fc",
    )
    fc.type = TensorType(
        "i32", (1, 10), QuantParams.per_channel(np.linspace(1e-3, 2e-3, 10), axis=1)
    )
    logits = b.node("q.dequantize", [fc], {})
    tail = b.node("math.tanh", [b.node("q.dequantize", [lut], {})], {})
    gm = b.node("nn.global_max_pool", [mp], {}, qt("i8", (1, 8, 1, 1), 0.05))
    b.g.outputs = [
        logits,
        tail,
        gm,
        b.node("tensor.flatten", [gr], {"axis": 1}, qt("i8", (1, 200), 0.05)),
    ]
    verify(b.g)
    return b.g


def _mlp() -> Graph:
    samples = np.random.default_rng(4).integers(-128, 128, size=(6, 24)).astype(np.int8)
    b = Builder("mlp_ops", qt("i8", (1, 24), 0.1, -5), samples)
    a = b.node(
        "nn.dense",
        [b.x, b.weights("d1.w", (32, 24), 0.5), b.bias("d1.b", 32)],
        {"acc": "i32", "act": "clip", "act_args": [-20000, 30000]},
        loc="d1",
    )
    h = b.node(
        "q.requantize",
        [a],
        {"dtype": "i16", "multiplier": [1], "shift": [4]},
        qt("i16", (1, 32), 0.01, 11),
    )  # per tensor, i16 out
    h2 = b.requant(
        b.node("nn.dense", [h, b.weights("d2.w", (16, 32))], {"acc": "i64"}, loc="d2"),
        pow2=False,
        clip=(-50, 60),
    )
    r = b.node("nn.relu", [h2], {}, qt("i8", (1, 16), 0.05))
    acc = b.node(
        "nn.dense",
        [r, b.weights("d3.w", (8, 16)), b.bias("d3.b", 8)],
        {"acc": "i32", "act": "relu"},
        loc="d3",
    )
    b.g.outputs = [acc, b.requant(acc, per_channel=False, clip=(3, None))]
    verify(b.g)
    return b.g


CASES = {"cnn": (_cnn, "zcu104", "nchw"), "mlp": (_mlp, "u250", "nhwc")}


@pytest.fixture(scope="module", params=sorted(CASES))
def compiled(request, tmp_path_factory):
    build, target, layout = CASES[request.param]
    graph = build()
    out = tmp_path_factory.mktemp(f"hls_{request.param}")
    options = {"tb_samples": 8, "port_layout": layout}
    art = HlsBackend().compile(graph, load_target(target), out, options)
    return graph, art


def _inputs(graph: Graph, n: int, seed: int) -> np.ndarray:
    t = graph.inputs[0].type
    rng = np.random.default_rng(seed)
    shape = (n, *[int(d) for d in t.shape[1:]])
    if t.dtype == "f32":
        return (rng.normal(size=shape) * 2).astype(np.float32)
    return rng.integers(-128, 128, size=shape).astype(np.int8)


def test_every_output_element_matches_the_interpreter(compiled) -> None:
    graph, art = compiled
    assert HlsBackend().unsupported(graph, art.target) == []
    x = _inputs(graph, 40, seed=1)
    got = art.run(x)
    for s in range(len(x)):
        want = interpret(graph, x[s : s + 1])
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g[s : s + 1].tobytes() == w.tobytes(), f"output {k}, sample {s}"


def test_testbench_passes_and_sanitizers_are_clean(compiled) -> None:
    _, art = compiled
    plain = art.run_testbench()
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "0 mismatching" in plain.stdout
    sanitized = art.run_testbench(sanitize=True)
    assert sanitized.returncode == 0, sanitized.stdout + sanitized.stderr[-3000:]


def test_testbench_fails_on_a_wrong_golden_output(compiled, tmp_path: Path) -> None:
    _, art = compiled
    folder = tmp_path / "copy"
    shutil.copytree(art.path, folder)
    golden = folder / "tb" / "data" / "output_0.bin"
    data = bytearray(golden.read_bytes())
    data[0] ^= 1
    golden.write_bytes(bytes(data))
    from backends.hls.artifact import HlsArtifact

    broken = HlsArtifact(art.graph, art.target, folder, art.layers, art.summary)
    result = broken.run_testbench()
    assert result.returncode == 1 and "1 mismatching" in result.stdout


def test_every_rule_and_kind_is_exercised(compiled) -> None:
    """Each op of the rule table is in one of the two graphs, each kind has a cost model."""
    graph, art = compiled
    kinds = {row["op"] for row in art.layers}
    assert kinds
    both = {n.op for build, _, _ in CASES.values() for n in build().nodes}
    missing = (
        set(RULES)
        - both
        - {
            "tensor.reshape",
            "tensor.squeeze",
            "tensor.unsqueeze",
            "tensor.identity",
            "nn.dropout",
            "nn.relu6",
            "nn.clip",
        }
    )
    assert not missing, f"rules without a test graph: {sorted(missing)}"
    made = {layer_kind for layer_kind in KIND_MODELS}
    assert {
        "dense",
        "conv2d",
        "depthwise_conv2d",
        "max_pool2d",
        "avg_pool2d",
        "add",
        "lut",
        "layout",
        "concat",
        "clip",
        "requantize",
    } <= made


def test_generated_code_is_escaped(compiled) -> None:
    """Model names reach C++ only as sanitized identifiers or inside one-line comments."""
    graph, art = compiled
    for path in sorted(art.path.rglob("*")):
        if not path.is_file() or path.suffix not in (".cpp", ".h", ".tcl", ""):
            continue
        if path.parent.name == "tapeout":  # the kernel library, copied as is
            continue
        for line in path.read_text().splitlines():
            code = line.split("//")[0] if path.suffix in (".cpp", ".h") else line.split("#")[0]
            assert 'system("' not in code and 'rm -rf /"' not in code, f"{path}: {line}"
            if path.suffix in (".cpp", ".h"):
                assert "*/" not in line and not line.endswith("\\"), f"{path}: {line}"
