"""The cpu (TVM) lowerings of ``backends.tvm.lower_ops_a`` against the interpreter.

One IR graph holds every op of the group (compiled once: a TVM build is the slow part), with
the edge cases each rule exists for: rounding half to even, ties in hardmax, a zero vector's
Lp norm, a cumprod axis given at runtime, depthwise and grouped convolutions whose weight is
a graph input (and the one-tap form), ceil-mode windows past the padding, grid samples outside the
image, deformable taps outside the input. The sub-cases a rule refuses are listed by
``unsupported`` with their reason.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.interpreter import interpret
from compiler.ir import Graph, verify
from compiler.ir.parser import parse
from compiler.target import load_target

pytestmark = pytest.mark.tvm

RNG = np.random.default_rng(15)

GRAPH = """graph @ops_a(%x3: f32[1,2,5,6,5], %x2: f32[2,3,7,6], %halves: f32[12],
    %seq: f32[2,4,9], %w: f32[4,1,3], %w1: f32[4,1,1], %grid: f32[2,4,5,2],
    %grid3: f32[1,1,3,2,3], %qa: i8[2,3,4], %qb: u8[4,5], %ties: f32[3,4], %cp: f32[3,4],
    %axis: i64[], %norm: f32[3,4], %inf: f32[8], %idx: i64[2,3], %mats: f32[2,3,3],
    %empty: f32[2,0,3], %rois: f32[3,4], %batch: i64[3], %dx: f32[1,4,4,4],
    %dw: f32[2,4,2,2], %doff: f32[1,16,4,2], %dmask: f32[1,8,4,2],
    %cx: f32[1,4,4,5], %cw: f32[4,2,3,3]) -> (
    f32[1,2,3,3,3], f32[2,3,4,4], f32[1,2,3,3,2], f32[12], f32[2,4,7], f32[2,4,9],
    f32[2,3,4,5], f32[1,2,1,3,2], i8[2,3,5], f32[3,4], f32[3,4], f32[3,4], bool[8],
    f32[2,4,3], f32[2], f32[2,0,3], f32[3,3,2,2], f32[1,2,4,2],
    f32[3,3,2,3], f32[1,4,4,3]) {
  %qsa: f32[3] = const @qsa
  %qza: i8[] = const @qza
  %qsb: f32[] = const @qsb
  %qzb: u8[5] = const @qzb
  %qsy: f32[] = const @qsy
  %qzy: i8[] = const @qzy
  %depth: i64[] = const @depth
  %onoff: f32[2] = const @onoff
  %db: f32[2] = const @db
  %db4: f32[4] = const @db4
  %lp: f32[1,2,3,3,3] = nn.pool_nd(%x3) {kind="lp", kernel=[2,2,2], strides=[2,2,2],
      pads=[1,0,1,1,1,0], ceil_mode=true, p=3}
  %avg: f32[2,3,4,4] = nn.pool_nd(%x2) {kind="avg", kernel=[2,3], strides=[2,2], pads=[1,1,1,1],
      dilations=[2,1], ceil_mode=true, count_include_pad=true}
  %mx: f32[1,2,3,3,2] = nn.pool_nd(%x3) {kind="max", kernel=[2,2,2], strides=[1,2,2],
      dilations=[2,1,2]}
  %rounded: f32[12] = math.round(%halves)
  %conv: f32[2,4,7] = nn.conv1d(%seq, %w) {groups=4}
  %tap: f32[2,4,9] = nn.conv1d(%seq, %w1) {groups=4}
  %gs: f32[2,3,4,5] = nn.grid_sample(%x2, %grid) {mode="cubic", padding="reflection"}
  %gs3: f32[1,2,1,3,2] = nn.grid_sample(%x3, %grid3) {mode="nearest",
      padding="border", align_corners=true}
  %qy: i8[2,3,5] = q.linear_matmul(%qa, %qsa, %qza, %qb, %qsb, %qzb, %qsy, %qzy)
  %hard: f32[3,4] = math.hardmax(%ties) {axis=-1}
  %prod: f32[3,4] = math.cumprod(%cp, %axis) {exclusive=true, reverse=true}
  %l1: f32[3,4] = nn.lp_norm(%norm) {axis=1, p=1}
  %pinf: bool[8] = math.isinf(%inf) {negative=false}
  %hot: f32[2,4,3] = tensor.one_hot(%idx, %depth, %onoff) {axis=1}
  %det: f32[2] = math.det(%mats)
  %tri: f32[2,0,3] = tensor.trilu(%empty) {upper=true}
  %roi: f32[3,3,2,2] = nn.roi_align(%x2, %rois, %batch) {out_h=2, out_w=2, spatial_scale=0.5}
  %deform: f32[1,2,4,2] = nn.deform_conv(%dx, %dw, %doff, %db, %dmask) {group=1,
      offset_group=2, pads=[1,0,0,1], strides=[1,2]}
  %roimax: f32[3,3,2,3] = nn.roi_align(%x2, %rois, %batch) {mode="max", out_h=2, out_w=3,
      sampling_ratio=0, half_pixel=false}
  %c2: f32[1,4,4,3] = nn.conv2d(%cx, %cw, %db4) {groups=2, strides=[1,2], pads=[1,1,1,1],
      act="relu"}
  return %lp, %avg, %mx, %rounded, %conv, %tap, %gs, %gs3, %qy, %hard,
    %prod, %l1, %pinf, %hot, %det, %tri, %roi, %deform, %roimax, %c2
}"""

CONSTANTS: dict[str, np.ndarray] = {
    "qsa": np.array([0.02, 0.05, 0.1], np.float32),
    "qza": np.array(3, np.int8),
    "qsb": np.array(0.03, np.float32),
    "qzb": np.array([128, 120, 130, 0, 255], np.uint8),
    "qsy": np.array(0.07, np.float32),
    "qzy": np.array(-5, np.int8),
    "depth": np.array(4, np.int64),
    "onoff": np.array([-1.0, 2.0], np.float32),
    "db": np.array([0.5, -1.0], np.float32),
    "db4": np.array([0.5, -1.0, 0.0, 2.0], np.float32),
}


def _graph() -> Graph:
    graph = parse(GRAPH.replace("\n    ", " "), CONSTANTS)  # continued lines join
    verify(graph)
    return graph


def _inputs() -> list[np.ndarray]:
    def normal(*shape: int) -> np.ndarray:
        return RNG.standard_normal(shape).astype(np.float32)

    halves = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 1e7 + 0.5, 0.49999997, -0.0,
                       4.5, 2.4], np.float32)  # fmt: skip
    ties = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, -5, -1, -2]], np.float32)
    norm = normal(3, 4)
    norm[1] = 0  # a zero vector stays zero
    inf = np.array([np.inf, -np.inf, 0, np.nan, 1e38, -np.inf, np.inf, -1], np.float32)
    rois = np.array([[0, 0, 9, 7], [2.5, 1, 5, 12], [4, 4, 4.5, 5]], np.float32)
    return [
        normal(1, 2, 5, 6, 5), normal(2, 3, 7, 6), halves, normal(2, 4, 9), normal(4, 1, 3),
        normal(4, 1, 1), RNG.uniform(-1.3, 1.3, (2, 4, 5, 2)).astype(np.float32),
        # Coordinates that land on half pixels: nearest rounds them half to even.
        np.array([-1, -0.5, 0, 0.25, 0.5, 1, 1.5, -1.5, 0.75, 0.125, -0.25, 0.625, 1, 0.5,
                  -1, -0.75, 0, 0.5], np.float32).reshape(1, 1, 3, 2, 3),
        RNG.integers(-128, 128, (2, 3, 4)).astype(np.int8),
        RNG.integers(0, 256, (4, 5)).astype(np.uint8), ties,
        RNG.uniform(0.5, 2, (3, 4)).astype(np.float32), np.array(-2, np.int64), norm, inf,
        np.array([[0, -1, 5], [3, -4, 2]], np.int64), normal(2, 3, 3),
        np.zeros((2, 0, 3), np.float32), rois, np.array([1, 0, 1], np.int64),
        normal(1, 4, 4, 4), normal(2, 4, 2, 2), 1.5 * normal(1, 16, 4, 2),
        RNG.uniform(0, 1, (1, 8, 4, 2)).astype(np.float32), normal(1, 4, 4, 5), normal(4, 2, 3, 3),
    ]  # fmt: skip


@functools.cache
def _compiled() -> Any:
    from backends.tvm import TvmBackend

    graph = _graph()
    backend = TvmBackend()
    assert backend.unsupported(graph, load_target("cpu")) == []
    return backend.compile(graph, load_target("cpu"), Path(tempfile.mkdtemp()), {})


def test_every_op_of_the_group_matches_the_interpreter() -> None:
    graph = _graph()
    inputs = _inputs()
    want = interpret(graph, *inputs)
    got = _compiled().run(*inputs)
    for value, g, w in zip(graph.outputs, got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, value.name
        if w.dtype.kind in "iub" or value.name in ("rounded", "hard", "hot", "tri", "gs3"):
            np.testing.assert_array_equal(g, w, err_msg=value.name)  # exact by definition
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=value.name)


def test_the_runtime_cumprod_axis_is_read_at_runtime() -> None:
    graph = _graph()
    inputs = _inputs()
    at = [v.name for v in graph.inputs].index("axis")
    out = [v.name for v in graph.outputs].index("prod")
    for axis in (0, 1, -1):
        inputs[at] = np.array(axis, np.int64)
        got = _compiled().run(*inputs)[out]
        np.testing.assert_allclose(got, interpret(graph, *inputs)[out], rtol=1e-6)


REFUSED = {
    "cubic grid_sample of a volume": (
        "%y: f32[1,1,2,2,2] = nn.grid_sample(%x, %g) {mode=\"cubic\"}",
        "%x: f32[1,1,3,3,3], %g: f32[1,2,2,2,3]", "f32[1,1,2,2,2]"),
    "det of 5x5 matrices": ("%y: f32[] = math.det(%x)", "%x: f32[5,5]", "f32[]"),
    "fused gelu and a non-constant weight": (
        "%y: f32[1,2,4] = nn.conv1d(%x, %w) {act=\"gelu\"}", "%x: f32[1,2,6], %w: f32[2,2,3]",
        "f32[1,2,4]"),
    "one tap per output with strides": (
        "%y: f32[1,2,3] = nn.conv1d(%x, %w) {groups=2, strides=[2]}",
        "%x: f32[1,2,6], %w: f32[2,1,1]", "f32[1,2,3]"),
}


@pytest.mark.parametrize("reason", sorted(REFUSED))
def test_what_cannot_match_is_refused_with_its_reason(reason: str) -> None:
    from backends.tvm import TvmBackend

    line, inputs, output = REFUSED[reason]
    graph = parse(f"graph @g({inputs}) -> ({output}) {{\n  {line}\n  return %y\n}}")
    verify(graph)
    found = TvmBackend().unsupported(graph, load_target("cpu"))
    assert len(found) == 1 and reason in str(found[0]), found
