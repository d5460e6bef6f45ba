"""The engine end to end: C simulation equal to the interpreter on every output element.

A hand-built integer graph exercises every engine unit with the awkward cases the zoo does
not have (non-zero zero points, a grouped conv with stride 2, a dilated depthwise conv,
non-power-of-two per-channel requantize with clipping, max pooling with ceil_mode, average
pooling, concat, a standalone add, nearest upsampling, reshape into a dense layer whose
weights absorb the NHWC order), on tiny buffers so that every layer is tiled over rows,
output and input channels; its testbench also runs under AddressSanitizer and UBSan.
Engines of different sizes are loaded into this one process (their symbols must not
collide). The zoo's CNNs then go through ``compiler.compile(..., fpga_arch="engine")``: the
real pipeline, random inputs, every output bit compared, plus the generated testbench.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import compiler
from backends.hls.engine.artifact import EngineArtifact
from compiler.interpreter import interpret
from compiler.ir.graph import Graph, Value
from compiler.ir.types import QuantParams, TensorType
from compiler.numerics import quantize_multiplier
from tests.backends.hls.zoo import ENGINE_ZOO, compiled_engine, engine_shape

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C simulation)")

TINY = {"pp": 2, "icp": 4, "ocp": 4, "in_buf": 600, "w_buf": 400, "acc_buf": 64, "max_oc": 8}


def _q(scale: float, zp: int = 0) -> QuantParams:
    return QuantParams.per_tensor(scale, zp)


class Builder:
    """Integer graphs by hand: seeded weights, requantize parameters from real scales."""

    def __init__(self, graph: Graph, seed: int = 0) -> None:
        self.g = graph
        self.rng = np.random.default_rng(seed)

    def conv(self, x: Value, cout: int, k: int, zp_out: int, groups: int = 1, **attrs) -> Value:
        cin = int(x.type.shape[1])
        w = self.g.add_const(
            "w", self.rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8)
        )
        b = self.g.add_const("b", self.rng.integers(-3000, 3000, cout).astype(np.int32))
        acc = self.g.add_node(
            "nn.conv2d", [x, w, b], {"acc": "i32", "groups": groups, **attrs}
        ).outputs[0]
        return self.requantize(acc, zp_out, axis=1)

    def requantize(self, acc: Value, zp_out: int, axis: int, scale: float = 1e-2, **clip) -> Value:
        channels = int(acc.type.shape[axis])
        reals = self.rng.uniform(0.3 * scale, 1.5 * scale, channels)
        pairs = [quantize_multiplier(float(s)) for s in reals]
        shape = acc.type.shape
        out_t = TensorType("i8", shape, _q(0.05, zp_out))
        attrs = {
            "dtype": "i8",
            "axis": axis,
            "multiplier": [m for m, _ in pairs],
            "shift": [s for _, s in pairs],
            **clip,
        }
        return self.g.add_node("q.requantize", [acc], attrs, out_types=[out_t]).outputs[0]

    def node(self, op: str, inputs: list[Value], attrs: dict, zp: int, shape=None) -> Value:
        from compiler.ir.ops import infer_types

        shape = shape or infer_types(op, [v.type for v in inputs], attrs)[0].shape
        out_t = TensorType("i8", tuple(shape), _q(0.05, zp))
        return self.g.add_node(op, inputs, attrs, out_types=[out_t]).outputs[0]


def ops_graph() -> Graph:
    g = Graph("engine_ops")
    b = Builder(g)
    x = g.add_input("x", TensorType("i8", (1, 6, 11, 11), _q(0.1, 3)))
    a = b.conv(x, 8, 3, -4, groups=2, pads=[1, 0, 1, 2], strides=[2, 2], act="relu")  # 6x6
    d = b.conv(a, 8, 3, 5, groups=8, pads=[2, 2, 2, 2], dilations=[2, 2])  # depthwise, dilated
    d2 = b.requantize(
        g.add_node(
            "nn.conv2d",
            [d, g.add_const("w", b.rng.integers(-127, 128, (12, 8, 1, 1)).astype(np.int8))],
            {"acc": "i32"},
        ).outputs[0],
        -2,
        axis=1,
        clip_min=-20,
        clip_max=90,
    )
    m = b.node(
        "nn.max_pool2d",
        [d2],
        {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 0], "ceil_mode": True},
        -2,
    )
    p = b.node(
        "q.avg_pool2d",
        [d2],
        {"kernel": [2, 2], "strides": [2, 2], "dtype": "i8", "multiplier": 1 << 30, "shift": 32},
        1,
        shape=m.type.shape,
    )
    cat = b.node("tensor.concat", [m, p], {"axis": 1}, -2)
    mm = b.node("tensor.concat", [p, m], {"axis": 1}, 1)
    s = b.node(
        "q.add",
        [cat, mm],
        {"dtype": "i8", "a_multiplier": 3, "b_multiplier": 5, "shift": 3, "act": "relu"},
        4,
    )
    up = g.add_node("nn.resize", [s], {"scales": [1, 1, 2.5, 2]}).outputs[0]  # 3x3 -> 7x6
    flat = g.add_node(
        "tensor.reshape",
        [up],
        {"shape": [1, -1]},
        out_types=[TensorType("i8", (1, int(np.prod(up.type.shape))), s.type.quant)],
    ).outputs[0]
    k = int(flat.type.shape[1])
    w = g.add_const("fc", b.rng.integers(-127, 128, (7, k)).astype(np.int8))
    y = b.requantize(
        g.add_node("nn.dense", [flat, w], {"acc": "i32"}).outputs[0], 0, axis=1, scale=1e-3
    )
    g.outputs = [y, s]
    return g


def _assert_equal(art, inputs: list[np.ndarray]) -> None:
    got = art.run(*inputs)
    for i in range(len(inputs[0])):
        want = interpret(art.graph, *[x[i : i + 1] for x in inputs])
        for j, (gv, wv) in enumerate(zip(got, want, strict=True)):
            assert gv[i : i + 1].tobytes() == np.asarray(wv).tobytes(), f"sample {i}, output {j}"


def test_every_engine_unit_on_tiny_tiled_buffers(tmp_path) -> None:
    graph = ops_graph()
    art = compiler.compile(
        graph,
        target="zcu104",
        output_dir=tmp_path / "ops",
        pipeline=[],
        fpga_arch="engine",
        engine=TINY,
        tb_samples=3,
    )
    assert isinstance(art, EngineArtifact)
    tiles = [row["tile"] for row in art.layers if row["tile"]]
    assert any(t.split("x")[0] != "1" for t in tiles) and len(set(tiles)) > 1
    x = np.random.default_rng(2).integers(-128, 128, (12, 6, 11, 11)).astype(np.int8)
    y, s = art.run(x)
    assert len(np.unique(y)) > 20 and len(np.unique(s)) > 20, (
        np.unique(y),
        np.unique(s),
    )  # not saturated or clipped flat
    _assert_equal(art, [x])
    result = art.run_testbench(sanitize=True)  # ASan + UBSan over the engine's C++
    assert result.returncode == 0 and "0 mismatching" in result.stdout, result.stdout


@pytest.fixture(scope="module", params=list(ENGINE_ZOO))
def zoo(request):
    name = request.param
    return name, engine_shape(name), compiled_engine(name)


def test_zoo_testbench_and_reload(zoo) -> None:
    name, shape, art = zoo
    result = art.run_testbench()
    assert result.returncode == 0 and "0 mismatching" in result.stdout, result.stdout
    again = compiler.load(art.path)
    assert isinstance(again, EngineArtifact)
    x = np.random.default_rng(3).normal(size=(1, *shape[1:])).astype(np.float32)
    assert again.run(x)[0].tobytes() == art.run(x)[0].tobytes()


def test_auto_picks_dataflow_for_small_models_and_the_engine_for_large_ones(zoo) -> None:
    from backends.hls.engine.choice import pick_arch

    name, _, art = zoo
    arch, reason = pick_arch(art.graph, art.target, {})
    if name == "resnet18":  # 11.7 MB of weights: more than any Zynq part's BRAM + URAM
        assert arch == "engine" and "exceed" in reason and "keeps every weight" in reason
    elif name == "digits_cnn":
        assert arch == "dataflow" and "fit on chip" in reason
    else:
        pytest.skip("ResNet-18 and the digits CNN show both choices")
    assert pick_arch(art.graph, art.target, {"fpga_arch": "dataflow"})[0] == "dataflow"
    assert pick_arch(art.graph, art.target, {"engine": "B512"})[0] == "engine"


def test_a_layer_no_tiling_fits_is_refused_before_anything_is_written(tmp_path) -> None:
    from compiler.errors import BackendError

    tiny = {**TINY, "in_buf": 40}
    with pytest.raises(BackendError, match=r"layer conv2d \(grouped\).*in_buf needs \d+ > 40"):
        compiler.compile(
            ops_graph(),
            target="zcu104",
            output_dir=tmp_path / "out",
            pipeline=[],
            fpga_arch="engine",
            engine=tiny,
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["kv260", "u250"])
def test_the_same_graph_on_other_boards(zoo, target: str, tmp_path) -> None:
    name, shape, art = zoo
    if name != "resnet18":
        pytest.skip("one model on the other boards keeps CI time modest")
    other = compiler.compile(
        art.graph,
        target=target,
        pipeline=[],
        output_dir=tmp_path / target,
        fpga_arch="engine",
        tb_samples=0,
    )
    assert (
        other.summary["engine"] == "B4096" and other.summary["dsp"] <= other.summary["dsp_budget"]
    )
    x = np.random.default_rng(4).normal(size=(1, *shape[1:])).astype(np.float32)
    assert other.run(x)[0].tobytes() == interpret(art.graph, x)[0].tobytes()


def test_the_board_driver_prepares_and_reads_back_like_the_host(zoo) -> None:
    import importlib.util

    name, shape, art = zoo
    if name not in ("digits_cnn", "mobilenet_block"):
        pytest.skip("the driver's conversions on one CNN and one float-island output")
    spec = importlib.util.spec_from_file_location("driver", art.path / "host" / "driver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    driver = module.EngineDriver(art.path)
    x = (np.random.default_rng(5).normal(size=(1, *shape[1:])) * 2).astype(np.float32)
    arena = driver.prepare(x)
    art.run_arena(arena)
    (got,) = driver.finish(arena)
    assert got.tobytes() == art.run(x)[0].tobytes()
    with pytest.raises(RuntimeError, match="pynq|bitstream"):
        driver.run(x)  # no board here
