"""quantize: post-training quantization with calibration, to the integer IR every backend takes.

Before (float, after fold-batchnorm and fuse-bias-act)::

    %c1: f32[1,16,8,8] = nn.conv2d(%x, %w1, %b1) {act="relu", pads=[1,1,1,1]}
    %y: f32[1,10] = nn.dense(%f, %w2, %b2)

After (int8, per-channel weights, symmetric activations)::

    %x_q: i8[1,1,8,8]{scale=0.0078} = q.quantize(%x) {dtype="i8"}
    %w1_q: i8[16,1,3,3]{scale=[...], axis=0} = const @conv1.weight_q
    %b1_q: i32[16]{scale=[...], axis=0} = const @conv1.bias_q
    %c1_acc: i32[1,16,8,8]{scale=[s_x*s_w...], axis=1} = nn.conv2d(%x_q, %w1_q, %b1_q)
             {acc="i32", act="relu", pads=[1,1,1,1]}
    %c1_q: i8[1,16,8,8]{scale=0.021} = q.requantize(%c1_acc) {dtype="i8", multiplier=[...],
             shift=[...], axis=1}
    ...
    %y_acc: i32[1,10]{scale=[...], axis=1} = nn.dense(%f_q, %w2_q, %b2_q) {acc="i32"}
    %y: f32[1,10] = q.dequantize(%y_acc)

The quantized IR form (the contract the FPGA, CPU and ONNX backends build against):

- Activations are per tensor: ``q.quantize`` to i8 with zero point 0 (symmetric), or u8 with a
  zero point (``symmetric=False``), or i16 (``precision="int16"``, mixed precision).
- Weights are constants of dtype i8 (i16 for layers mixed precision keeps wider) with
  symmetric per-channel QuantParams along the output channel (axis 0 of OIHW conv and of
  dense [N, K], axis 1 of a matmul's constant [K, N]) or one scale per tensor. Biases are i32
  constants at scale ``s_in * s_w[c]`` (axis 0), zero point 0.
- ``nn.conv1d/conv2d/dense/matmul`` on integer operands produce their accumulator: dtype
  ``acc`` (i32, or i64 where the worst case could overflow i32), QuantParams
  ``s_in * s_w[c]`` along axis 1 (conv) or the last axis (dense/matmul). Input zero points
  are subtracted (conv pads with the input zero point: padding is real 0). ``act`` is
  "none" or "relu" (relu on the accumulator is exact).
- ``q.requantize(acc) {dtype, multiplier, shift, axis, clip_min, clip_max}``: one entry or one
  per channel, ``(multiplier, shift) = numerics.quantize_multiplier(s_in*s_w[c] / s_out)``;
  ``out = clamp(saturate(((acc*m + 2^(shift-1)) >> shift) + zp_out), clip_min, clip_max)``.
  relu6/clip are the integer clamps ``clip_min = zp + round(lo/s_out)``,
  ``clip_max = zp + round(hi/s_out)``. An accumulator no integer op consumes is dequantized
  directly (``q.dequantize(acc)``), skipping a needless second rounding.
- Residual adds: ``q.add(a, b) {dtype, a_multiplier, b_multiplier, shift, act}``:
  ``acc = (a - za)*a_multiplier + (b - zb)*b_multiplier`` (int64),
  ``out = saturate(((acc + 2^(shift-1)) >> shift) + zo)``, then relu (``max(out, zo)``) or the
  clamps; ``a_multiplier = round(s_a / s_o * 2^shift)``, ``shift = 16`` (or the smallest
  exact one when both ratios are powers of two). A conv with a residual operand (fuse-residual)
  is un-fused first: conv -> requantize -> ``q.add`` with the skip, because in integers the
  skip would have to be rescaled to the accumulator's per-channel scale.
- ``q.avg_pool2d`` / ``q.global_avg_pool`` sum ``x - zx`` over the window (int64) and
  requantize by ``s_in / (N * s_out)``. Max pooling, reshape, flatten, transpose, squeeze,
  slice, split, concat, pad (padding with the zero point) run unchanged on integer data and
  keep the scale; concat operands are forced to one shared scale (their calibrated ranges
  merged).
- Ops without an integer form (softmax, layer norm, gelu, attention, elementwise math, ...)
  stay float between ``q.dequantize`` and ``q.quantize``. Graph outputs are float.
- Power-of-two mode (``power_of_two=True`` or ``target.numerics.power_of_two_scales``): every
  activation, weight and bias scale is ``2^k``, so each conv/dense requantize has
  multiplier 1 and is a rounding shift (an average pool over a window whose size is not a
  power of two still needs its ``1/N`` multiplier; a q.add's multipliers are powers of two).
- int4 weight-only (``precision="int4w"``): dense/matmul weights and embedding tables are i4
  constants with group-wise QuantParams (``group_size`` along the input axis, ONNX blocked
  quantization) feeding ``q.dequantize``; the dense runs in float.

ONNX QDQ mapping (1:1): ``q.quantize`` = QuantizeLinear (half-to-even, saturating, same
``scale``/``zero_point``/``axis``); ``q.dequantize`` = DequantizeLinear (``block_size`` =
``group_size``); integer conv/dense/matmul = ConvInteger/MatMulInteger (input zero point as
``x_zero_point``) plus an int32 Add of the bias, or equivalently
DequantizeLinear(weights) -> Conv/Gemm; ``q.requantize`` = DequantizeLinear(acc,
``s_in*s_w``, axis) -> QuantizeLinear(``s_out``, ``zp``) (the fixed-point multiplier agrees
with the float product except on exact rounding ties); ``q.add`` = DQ, DQ -> Add -> Q;
pools = DQ -> AveragePool -> Q; clamps = Clip between DQ and Q.

Why transformers keep float where they do. On tiny GPT (random weights, 4 layers) this pass
keeps a logits cosine of 0.9999 against float; onnxruntime's ``quantize_static`` (QDQ,
per-channel, symmetric int8 activations) keeps 0.61 (the issue saw 0.72 on a model like it).
Excluding op types from onnxruntime's quantizer finds why (bench/quant_bench.py has the
numbers): (a) the attention scores after the causal mask: ``masked_fill(-inf)`` makes their
calibrated range ``[-inf, 1.8]``, a symmetric scale is then infinite, every real score rounds
to the same level and the softmax turns uniform; leaving only the softmax input float brings
onnxruntime to 0.9992 (its default asymmetric activations survive at 0.993); (b) the residual
stream and layer norms, whose outlier channels set a coarse per-tensor scale: leaving them
float as well gives 0.9998. So here only the inputs and weights of linear layers (the
operands of the matmuls that carry the compute) are quantized, and a value whose users are
all float (softmax, layer norm, the residual stream) stays float: the plan
(``passes.quant.plan``) makes an add or data movement integer only where its operands are
integers anyway and an integer op consumes its result. Each linear layer's accumulator is
dequantized directly where a float op consumes it (no second rounding to int8).

Calibration statistics come from the context's executor (``compile()`` injects onnxruntime
when it can run the float graph: checked against the interpreter on one sample; ~50x faster
per sample on a ResNet-18) and from the interpreter otherwise; thresholds sit on the
histogram's grid, so both give the same scales.

When it must not run: ``precision="fp32"`` is a no-op; a graph that is already quantized is
left alone by the planner (only float ops are candidates). Bad calibration data, NaN/Inf in
weights or activations raise ``CalibrationError``; an all-zero activation or weight layer
falls back to scale 1 (exact) with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from compiler.context import Executor, interpreter_executor
from compiler.errors import TapeoutError
from compiler.ir.graph import Graph
from compiler.quant_report import QuantReport

if TYPE_CHECKING:
    from compiler.context import PassContext
    from compiler.target import Target

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "int16", "int4w", "mixed")
Budget = float | Callable[[Graph], bool] | None


@dataclass(frozen=True)
class Quantize:
    """The pipeline form of ``quantize_graph``: ``quantize{bits=8,per_channel=true}``.

    ``bits`` picks the precision (8 -> int8, 16 -> int16, 4 -> int4w) unless ``precision`` is
    given; ``power_of_two=None`` follows the target. Calibration data, the executor that
    collects its statistics and the sink for the report come from the ``PassContext``.
    """

    name: ClassVar[str] = "quantize"
    bits: int = 8
    precision: str | None = None
    per_channel: bool = True
    power_of_two: bool | None = None
    symmetric: bool = True
    calibrator: str = "minmax"
    percentile: float = 99.99
    exclude: tuple[str, ...] = ()
    bias_correction: bool = False
    group_size: int = 128
    budget: float | None = None
    island_dtype: str | None = None

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        precision = self.precision or {4: "int4w", 8: "int8", 16: "int16"}.get(self.bits)
        if precision is None:
            raise TapeoutError(f"quantize: bits={self.bits} is not 4, 8 or 16")
        kwargs: dict[str, Any] = dict(
            precision=precision,
            calibrator=self.calibrator,
            per_channel=self.per_channel,
            power_of_two=self.power_of_two,
            symmetric=self.symmetric,
            exclude=tuple(self.exclude),
            bias_correction=self.bias_correction,
            percentile=self.percentile,
            group_size=self.group_size,
            sensitivity_budget=self.budget,
            island_dtype=self.island_dtype,
            executor=ctx.executor,
        )
        report = quantize_graph(graph, ctx.target, ctx.calibration_data, **kwargs)
        ctx.quant_reports.append(report)
        log.info("%s", report.format())
        return precision != "fp32"


def quantize_graph(
    graph: Graph,
    target: Target | None = None,
    calibration_data: Any = None,
    precision: str = "int8",
    calibrator: str = "minmax",
    per_channel: bool = True,
    power_of_two: bool | None = None,
    symmetric: bool = True,
    activation_dtype: str = "i8",
    exclude: tuple[str, ...] | list[str] = (),
    overrides: dict[str, dict[str, Any]] | None = None,
    bias_correction: bool = False,
    percentile: float = 99.99,
    group_size: int = 128,
    sensitivity_budget: Budget = None,
    *,
    clip_threshold: float = 1e-3,
    report_samples: int | None = None,
    stats_engine: str = "auto",
    island_dtype: str | None = None,
    executor: Executor = interpreter_executor,
) -> QuantReport:
    """Quantize ``graph`` in place (its contents are replaced) and report what it did.

    ``calibration_data``: see ``passes.quant.batching``. ``exclude``: layer names (source
    location or value name, fnmatch patterns) or ops (``nn.dense`` or ``dense``) to keep
    float. ``overrides``: pattern -> ``{"precision": "int8"|"int16"|"float", "per_channel",
    "calibrator", "percentile"}``. ``sensitivity_budget`` (mixed precision): the minimum
    output SQNR in dB against float on the report samples, or a callable taking a candidate
    quantized graph and returning True when it is good enough (e.g. an accuracy check).

    Keyword-only: ``clip_threshold``, the clipped share above which a layer is flagged;
    ``report_samples``, how many calibration samples the report (per-layer SQNR, saturation
    at run time, output SQNR) and mixed precision's budget check run on (default: up to 16,
    fewer for big models: a ResNet-18 gets 3, see ``passes.quant.driver.report_limit``);
    ``executor``, what runs the float graph for the calibration statistics (the interpreter
    by default; ``compile()`` passes onnxruntime's, ``backends.onnx.executor``);
    ``stats_engine``, "auto" (the executor when it works and agrees with the interpreter on
    one sample, else the interpreter), "interpreter", or "executor" (its failure is an error):
    see ``passes.quant.fast_stats``;
    ``island_dtype``, "f32" or "f64" for the float ops left between integer layers (default:
    the target's ``numerics.island_dtype``; f64 makes a backend match the interpreter bit for
    bit, f32 is faster: see ``passes.quant.rewrite``).
    """
    from passes.quant.driver import Request, run_request

    if precision not in PRECISIONS:
        raise TapeoutError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    request = Request(
        precision=precision,
        calibrator=calibrator,
        per_channel=per_channel,
        power_of_two=power_of_two,
        symmetric=symmetric,
        activation_dtype=activation_dtype,
        exclude=tuple(exclude),
        overrides=dict(overrides or {}),
        bias_correction=bias_correction,
        percentile=percentile,
        group_size=group_size,
        budget=sensitivity_budget,
        clip_threshold=clip_threshold,
        report_samples=report_samples,
        stats_engine=stats_engine,
        island_dtype=island_dtype,
    )
    return run_request(graph, target, calibration_data, request, executor)
