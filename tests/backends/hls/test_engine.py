"""The weight-streaming engine: descriptors, tiling, cost model, resources and refusals.

Fast unit tests (no C++): the Python descriptor table against the C++ header, tiles that fit
the buffers, cycle counts against hand-computed numbers, the DPU sizes, the architecture
choice, and the typed errors for a layer no tiling fits and a model over the board's DDR.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.hls.engine.compile import check_board
from backends.hls.engine.config import DPU_SIZES, EngineConfig, parse_engine, resources, sized
from backends.hls.engine.cost import step_cost
from backends.hls.engine.schedule import FIELDS, OPS, Step, pack, split64
from backends.hls.engine.tiling import Tiling, choose_tiles, needs, traffic
from compiler.errors import BackendError
from compiler.ir.graph import Graph
from compiler.target import load_target
from tests.backends.ir_text import graph_from_text

HEADER = Path(__file__).resolve().parents[3] / "backends/hls/include/tapeout/engine_desc.h"


def conv_step(
    ic: int,
    oc: int,
    h: int,
    w: int,
    k: int = 3,
    stride: int = 1,
    groups: int = 1,
    pad: int | None = None,
    res: bool = False,
) -> Step:
    """A conv step as lowering makes it (same-padding by default)."""
    pad = k // 2 if pad is None else pad
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    step = Step("layer", "conv", [], kind="conv" if groups == 1 else "grouped")
    step.weights = np.zeros((oc, k, k, ic // groups), np.int8)
    step.macs = oh * ow * oc * (ic // groups) * k * k
    step.fields.update(
        IN_H=h,
        IN_W=w,
        IN_C=ic,
        IN_PS=ic,
        OUT_H=oh,
        OUT_W=ow,
        OUT_C=oc,
        OUT_PS=oc,
        KH=k,
        KW=k,
        SH=stride,
        SW=stride,
        PT=pad,
        PL=pad,
        DH=1,
        DW=1,
        GROUPS=groups,
        PER_CHANNEL=1,
        RES=0 if res else -1,
    )
    return step


def big(name: str, pp: int, icp: int, ocp: int) -> EngineConfig:
    return EngineConfig(name, pp, icp, ocp, in_buf=1 << 22, w_buf=1 << 22, acc_buf=1 << 22)


# ---- the descriptor table -------------------------------------------------------------------
def test_descriptor_fields_match_the_cpp_header() -> None:
    text = HEADER.read_text()
    start = text.index("enum Field {")
    body = re.sub(r"//[^\n]*", "", text[start : text.index("DESC_WORDS", start)])
    names = re.findall(r"\bF_([A-Z0-9_]+)\b", body)
    assert tuple(names) == FIELDS
    ops = dict(re.findall(r"OP_([A-Z]+) = (\d+)", text))
    assert {k.lower(): int(v) for k, v in ops.items()} == OPS


def test_pack_lays_out_aligned_images_and_offsets() -> None:
    a, b = conv_step(3, 8, 4, 4), conv_step(8, 4, 4, 4, k=1)
    a.bias, a.mult, a.shift = np.arange(8), np.ones(8), np.full(8, 7)
    b.bias, b.mult, b.shift = None, np.array([3]), np.array([2])
    sched, wgt, par = pack([a, b])
    assert sched.shape == (2, len(FIELDS)) and sched.dtype == np.int32
    idx = {k: i for i, k in enumerate(FIELDS)}
    assert sched[0, idx["WGT"]] == 0 and sched[1, idx["WGT"]] % 64 == 0
    assert sched[1, idx["WGT"]] >= a.weights.size
    assert sched[1, idx["BIAS"]] == -1  # absent bias
    assert par[sched[0, idx["SHIFT"]] : sched[0, idx["SHIFT"]] + 8].tolist() == [7] * 8
    assert par[sched[1, idx["MULT"]]] == 3 and sched[0, idx["OP"]] == OPS["conv"]


@pytest.mark.parametrize("value", [0, 1, -1, 2**31, -(2**40) - 5, 2**62 + 3])
def test_split64_round_trips(value: int) -> None:
    lo, hi = split64(value)
    assert -(2**31) <= lo < 2**31 and -(2**31) <= hi < 2**31
    assert ((hi & 0xFFFFFFFF) << 32 | (lo & 0xFFFFFFFF)) == value & (2**64 - 1)


# ---- tiling -----------------------------------------------------------------------------------
def test_a_layer_that_fits_whole_is_one_tile() -> None:
    step = conv_step(32, 64, 16, 16)
    assert choose_tiles(step, big("B1024", 8, 8, 8)) == Tiling(16, 64, 32)


def test_weights_too_large_for_the_buffer_are_split_by_output_channels() -> None:
    step = conv_step(256, 512, 14, 14)  # 1.18 MB of weights
    cfg = dataclasses.replace(big("B4096", 8, 16, 16), w_buf=300_000)
    t = choose_tiles(step, cfg)
    assert t.oc * 9 * t.ic <= 300_000 and t.oc % 16 == 0
    assert {k: v for k, v in needs(step, t).items() if k != "max_oc"} == {
        "in_buf": (t.oh + 2) * 16 * t.ic,
        "w_buf": t.oc * 9 * t.ic,
        "acc_buf": t.oh * 14 * t.oc,
    }


@given(
    ic=st.integers(1, 300),
    oc=st.integers(1, 300),
    hw=st.integers(1, 40),
    k=st.sampled_from([1, 3, 5]),
    stride=st.sampled_from([1, 2]),
    buf=st.integers(2_000, 200_000),
)
def test_chosen_tiles_always_fit_every_buffer(ic, oc, hw, k, stride, buf) -> None:
    step = conv_step(ic, oc, hw, hw, k, stride)
    cfg = EngineConfig("B1024", 8, 8, 8, in_buf=buf, w_buf=buf, acc_buf=buf // 4)
    try:
        t = choose_tiles(step, cfg)
    except BackendError as err:
        assert "layer layer" in str(err) and "needs" in str(err)
        return
    need = needs(step, t)
    assert need["in_buf"] <= cfg.in_buf and need["w_buf"] <= cfg.w_buf
    assert need["acc_buf"] <= cfg.acc_buf and t.oc <= cfg.max_oc
    # never less traffic than fetching every weight and writing every output once (a strided
    # 1x1 conv may skip input rows)
    floor = step.weights.size + step.get("OUT_H") * step.get("OUT_W") * oc
    assert traffic(step, t) >= floor


def test_a_layer_no_tiling_fits_is_refused_by_name_with_the_short_buffer() -> None:
    step = conv_step(64, 64, 8, 4000, k=7)  # a 7x7 window over rows 4000 pixels wide
    step.name = "stem_conv"
    cfg = EngineConfig("B512", 4, 8, 8, in_buf=100_000, w_buf=1 << 20, acc_buf=1 << 20)
    # the smallest tile: 1 output row = 7 input rows x 4006 padded columns x 8 channels
    with pytest.raises(BackendError, match=r"stem_conv .*in_buf needs 224336 > 100000"):
        choose_tiles(step, cfg)


# ---- cost model ---------------------------------------------------------------------------------
def test_conv_cycles_match_the_hand_count() -> None:
    # 3x3 conv, 32 -> 64 channels, 16x16, on B1024 (8 x 8 x 8), one tile:
    # ceil(64/8) * ceil(32/8) * 9 taps * 16 rows * ceil(16/8) = 8 * 4 * 9 * 16 * 2 = 9216,
    # + 16 (tile overhead) = 9232 compute cycles. DDR: weights 64*9*32 = 18432, input
    # 16*16*32 = 8192, output 16*16*64 = 16384, params 3 * 4 * 64 = 768 -> 43776 bytes at
    # 19.2 GB/s * 0.8 / 200 MHz = 76.8 B/cycle -> ceil(570.0) = 570 cycles. 9232 + 256 = 9488.
    step = conv_step(32, 64, 16, 16)
    choose_tiles(step, big("B1024", 8, 8, 8))
    cost = step_cost(step, big("B1024", 8, 8, 8), 19.2, 200.0)
    assert (cost.compute_cycles, cost.ddr_bytes, cost.memory_cycles) == (9232, 43776, 570)
    assert cost.cycles == 9488 and cost.bound == "compute"
    assert cost.efficiency == pytest.approx(16 * 16 * 64 * 32 * 9 / (9488 * 512))


def test_a_large_dense_layer_is_memory_bound() -> None:
    # ResNet-50's fc, 2048 -> 1000 on B4096 (8 x 16 x 16), one tile: ceil(1000/16) *
    # ceil(2048/16) * 1 * 1 * ceil(1/8) = 63 * 128 = 8064 + 16 = 8080 compute cycles; DDR:
    # 2,048,000 weights + 2048 in + 1000 out + 12,000 params = 2,063,048 bytes / 76.8 =
    # 26862.6 -> 26863 cycles: memory bound, 26863 + 256 = 27119.
    step = conv_step(2048, 1000, 1, 1, k=1)
    cfg = big("B4096", 8, 16, 16)
    choose_tiles(step, cfg)
    cost = step_cost(step, cfg, 19.2, 200.0)
    assert (cost.compute_cycles, cost.ddr_bytes, cost.memory_cycles) == (8080, 2_063_048, 26863)
    assert cost.cycles == 27119 and cost.bound == "memory"


def test_depthwise_runs_channels_on_the_input_lanes() -> None:
    # depthwise 3x3 over 64 channels, 16x16, B1024: ceil(64/8) * 9 * 16 * ceil(16/8) = 2304
    step = conv_step(64, 64, 16, 16, groups=64)
    cfg = big("B1024", 8, 8, 8)
    choose_tiles(step, cfg)
    assert step_cost(step, cfg, 19.2, 200.0).compute_cycles == 2304 + 16


def test_row_tiles_pay_the_tile_overhead_and_refetch_the_halo() -> None:
    step = conv_step(8, 8, 16, 16)
    cfg = EngineConfig("B512", 4, 8, 8, in_buf=18 * 8 * 6, w_buf=1 << 20, acc_buf=1 << 20)
    t = choose_tiles(step, cfg)
    assert t == Tiling(4, 8, 8)  # rows(4) = 6 padded input rows of 18 x 8
    # 4 tiles of ceil(8/8) * 1 * 9 * 4 * ceil(16/4) = 144 cycles, + 16 each
    assert step_cost(step, cfg, 19.2, 200.0).compute_cycles == 4 * (144 + 16)
    # 4 tiles read 6, 6, 6, 6 -> min(6, 16) rows each of the 16-pixel-wide, 8-channel input
    assert traffic(step, t) == 576 + 4 * 6 * 16 * 8 + 16 * 16 * 8 + 3 * 4 * 8


# ---- sizes and resources -------------------------------------------------------------------------
def test_dpu_sizes_are_named_after_their_peak_ops() -> None:
    for name, (pp, icp, ocp) in DPU_SIZES.items():
        assert parse_engine(name).peak_ops == int(name[1:]) == 2 * pp * icp * ocp


def test_engine_option_forms() -> None:
    assert parse_engine({"pp": 4, "icp": 8, "ocp": 16}).name == "B1024"
    assert parse_engine({"name": "B2304", "in_buf": 1000}).in_buf == 1000
    for bad in ("B9999", {"pp": 0, "icp": 8, "ocp": 8}, {"pp": 8}, {"lanes": 3}, 3.5):
        with pytest.raises(BackendError):
            parse_engine(bad)


@pytest.mark.parametrize("target", ["zcu104", "kv260", "u250", "pynq-z2"])
def test_the_default_buffers_fit_the_part(target: str) -> None:
    fpga = load_target(target).fpga
    cfg = sized(parse_engine("B512"), fpga)
    used = resources(cfg, fpga, pow2_requant=True)
    assert used["bram18k"] <= fpga.bram18k and used["uram"] <= fpga.uram
    assert cfg.in_buf > 0 and cfg.w_buf > 0 and cfg.acc_buf > 0


def test_resources_scale_with_the_array() -> None:
    fpga = load_target("zcu104").fpga
    small = resources(sized(parse_engine("B512"), fpga), fpga, True)
    large = resources(sized(parse_engine("B4096"), fpga), fpga, True)
    assert small["dsp"] == math.ceil(256 / 2) and large["dsp"] == 1024  # 2 int8 MACs per DSP
    assert large["lut"] > small["lut"]
    assert resources(sized(parse_engine("B512"), fpga), fpga, False)["dsp"] > small["dsp"]


# ---- the board ---------------------------------------------------------------------------
def test_a_model_over_the_boards_ddr_is_refused_up_front() -> None:
    target = load_target("pynq-z2")
    graph = graph_from_text(
        """
        graph @huge(%x: i8[1,8]) -> (i8[1,8]) {
          %w: i8[78643200,8] = const @w
          %y: i8[1,8] = tensor.identity(%x)
          return %y
        }
        """,
        {"w": np.zeros((2**20 * 600 // 8, 8), np.int8)},  # 600 MiB
    )
    with pytest.raises(BackendError, match=r"needs 600\.0 MiB .* pynq-z2 has 512 MiB"):
        check_board(graph, target)


def test_a_target_without_ddr_data_is_refused() -> None:
    target = load_target("zcu104")
    assert target.fpga is not None
    no_ddr = dataclasses.replace(target, fpga=dataclasses.replace(target.fpga, ddr_mb=0))
    with pytest.raises(BackendError, match="ddr_mb"):
        check_board(Graph("g"), no_ddr)


@pytest.mark.parametrize(
    ("target", "size"),
    [("zcu104", "B4096"), ("kv260", "B4096"), ("u250", "B4096"), ("pynq-z2", "B256")],
)
def test_the_default_engine_is_the_largest_that_fits(target: str, size: str) -> None:
    from backends.hls.engine.config import largest_fitting

    fpga = load_target(target).fpga
    best = largest_fitting(fpga, pow2_requant=True)
    assert best is not None and best.name == size
    # pynq-z2's 220 DSP48E1 (one int8 product each) cannot take B512's 256 MACs
    assert not resources(best, fpga, True)["dsp"] > fpga.dsp


def test_unsupported_lists_every_node_and_edge_with_its_reason() -> None:
    from backends.hls.engine.lower import unsupported

    graph = graph_from_text(
        """
        graph @tokens(%ids: i64[1,8], %x: f32[1,4,4,4]) -> (f32[1,4,4,4], i64[1,8]) {
          %soft: f32[1,4,4,4] = nn.softmax(%x) {axis=1}
          %ids_out: i64[1,8] = tensor.identity(%ids)
          return %soft, %ids_out
        }
        """
    )
    items = {(u.op, u.reason.split(":")[0]) for u in unsupported(graph, load_target("zcu104"))}
    assert ("nn.softmax", "float softmax has no engine unit") in items  # + the integer_ops hint
    assert ("input", "i64 input") in items  # token ids
    assert any(op == "input" and "q.quantize" in why for op, why in items)  # float x, no quantize
    assert any(op == "output" for op, _ in items)
