"""The pieces of post-training quantization; ``passes.quantize`` is the public entry point.

- ``batching``: calibration data in any accepted form -> checked samples; run a graph over
  them in batches (respecializing a batch-1 graph to batch N).
- ``plan``: which nodes run in integers, which values share a scale, and every scale.
- ``weights``: weight and bias quantization (per channel, per tensor, power of two, int4).
- ``rewrite``: build the quantized graph from a plan.
- ``fast_stats``: calibration statistics through the context's executor (onnxruntime from
  ``compile()``), checked against the interpreter.
- ``analysis``: per-layer SQNR, saturation at run time, output fidelity.
- ``bias_correction``, ``mixed``, ``weight_only`` (int4w, fp16): the optional modes.
- ``stages``: the quantize stages as pipeline passes (calibrate, quantize-rewrite,
  bias-correct, mixed-precision, quant-report), handing their state on through the
  ``PassContext``; ``driver``: what they share; ``reporting``: the report rows.

The settings all come from one ``compiler.quant_config.QuantConfig``.
"""
