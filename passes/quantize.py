"""quantize: post-training quantization with calibration, to the integer IR every backend takes.

Before (float, after fold-batchnorm and fuse-bias-act{integer=true})::

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
  exact one when both ratios are powers of two). quantize reads the graph as the passes
  before it left it and un-fuses nothing: before an integer quantize, fuse-residual declines
  (the skip is this ``q.add``: in integers it would have to be rescaled to the accumulator's
  per-channel scale) and fuse-bias-act fuses only relu/relu6/clip
  (``compiler.pass_manager.fit_to_quantize``); a conv/dense with a residual operand or a
  gelu/silu/... ``act`` is refused by name.
- ``q.avg_pool2d`` / ``q.global_avg_pool`` sum ``x - zx`` over the window (int64) and
  requantize by ``s_in / (N * s_out)``. Max pooling, reshape, flatten, transpose, squeeze,
  slice, split, concat, pad (padding with the zero point) run unchanged on integer data and
  keep the scale; concat operands are forced to one shared scale (their calibrated ranges
  merged).
- Ops without an integer form (softmax, layer norm, gelu, attention, elementwise math, ...)
  stay float between ``q.dequantize`` and ``q.quantize``. Graph outputs are float. With
  ``integer_ops`` (for hardware with no float unit: the FPGA engine) softmax and layer norm
  over the last axis become ``q.softmax`` / ``q.layernorm``, a matmul of two activations an
  integer ``nn.matmul`` (absorbing a scalar ``1/sqrt(d)``), and GELU-like elementwise ops
  i8 -> i8 tables (``passes.quant.integer_ops``).
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

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from compiler.context import Executor, PassContext, interpreter_executor
from compiler.errors import TapeoutError
from compiler.ir.graph import Graph
from compiler.quant_config import QuantConfig
from compiler.quant_report import QuantReport
from passes.bias_correct import BiasCorrect
from passes.calibrate import Calibrate
from passes.mixed_precision import MixedPrecision
from passes.quant_report import QuantReportPass
from passes.quantize_rewrite import QuantizeRewrite

if TYPE_CHECKING:
    from compiler.target import Target

__all__ = ["QuantConfig", "Quantize", "quantize_graph"]


@dataclass(frozen=True)
class Quantize:
    """The pipeline form of ``quantize_graph``: ``quantize{bits=8,per_channel=true}``.

    Its one field is a ``QuantConfig`` (the braces set its fields; ``bits`` 8 -> int8,
    16 -> int16, 4 -> int4w unless ``precision`` is given); without one it uses the run's
    ``PassContext.quant``, else the defaults. Calibration data, the executor that collects
    its statistics and the sink for the report come from the ``PassContext``. The pass
    manager runs (records, prints) its ``stages()`` as passes of their own, one module each:
    ``passes.calibrate``, ``passes.quantize_rewrite``, ``passes.bias_correct``,
    ``passes.mixed_precision``, ``passes.quant_report`` (they hand their state on in
    ``ctx.quant_state``: ``passes.quant.state``).
    """

    name: ClassVar[str] = "quantize"
    config: QuantConfig | None = None

    @classmethod
    def from_options(cls, **options: Any) -> Quantize:
        """``quantize{...}``: the options are QuantConfig fields (and ``bits``)."""
        return cls(QuantConfig.from_options(**options) if options else None)

    def makes_integers(self, quant: QuantConfig | None = None) -> bool:
        """Whether this pass makes integer layers (its config, else the run's ``quant``):
        the passes before it then produce only the forms an integer layer takes
        (``compiler.pass_manager.fit_to_quantize``)."""
        return (self.config or quant or QuantConfig()).integer

    def stages(self) -> list[Any]:
        """calibrate, quantize-rewrite, bias-correct, mixed-precision, quant-report."""
        return [Calibrate(self.config), QuantizeRewrite(), BiasCorrect(), MixedPrecision(),
                QuantReportPass()]  # fmt: skip

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for stage in self.stages():
            changed |= stage.run(graph, ctx)
        return changed


def quantize_graph(
    graph: Graph,
    target: Target | None = None,
    calibration_data: Any = None,
    config: QuantConfig | None = None,
    *,
    executor: Executor = interpreter_executor,
    **options: Any,
) -> QuantReport:
    """Quantize ``graph`` in place (its contents are replaced) and report what it did.

    ``calibration_data``: see ``passes.quant.batching`` (fp32, fp16 and int4w need none).
    ``config`` (default ``QuantConfig()``) with ``options`` replacing any of its fields, e.g.
    ``quantize_graph(g, target, data, precision="mixed", budget=40.0)``; see
    ``compiler.quant_config`` for every field. ``executor`` runs the float graph for the
    calibration statistics (the interpreter by default; ``compile()`` passes onnxruntime's,
    ``backends.onnx.executor``; ``stats_engine`` says whether to insist on it or fall back).
    """
    try:
        config = dataclasses.replace(config or QuantConfig(), **options)
    except TypeError as e:
        raise TapeoutError(f"quantize_graph: {e}") from None
    ctx = PassContext(
        target=target, quant=config, calibration_data=calibration_data, executor=executor
    )
    Quantize(config).run(graph, ctx)
    return ctx.quant_reports[-1]
