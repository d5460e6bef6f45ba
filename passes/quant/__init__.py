"""The pieces of post-training quantization that the quantize passes share.

``passes.quantize`` is the public entry point; its stages are pipeline passes of their own,
one module each (``passes.calibrate``, ``passes.quantize_rewrite``, ``passes.bias_correct``,
``passes.mixed_precision``, ``passes.quant_report``). The helpers here are leaf modules
they import:

- ``stats``: per-tensor statistics (exact min/max, histograms) and the calibrators.

- ``batching``: calibration data in any accepted form -> checked samples; run a graph over
  them in batches (respecializing a batch-1 graph to batch N).
- ``plan``: which nodes run in integers, which values share a scale, and every scale.
- ``weights``: weight and bias quantization (per channel, per tensor, power of two, int4).
- ``rewrite``: build the quantized graph from a plan.
- ``fast_stats``: calibration statistics through the context's executor (onnxruntime from
  ``compile()``), checked against the interpreter.
- ``analysis``: per-layer SQNR, saturation at run time, output fidelity.
- ``bias_correction``, ``mixed``, ``weight_only`` (int4w, fp16): the optional modes.
- ``state``: what one stage hands the next, in the run's ``PassContext``; ``driver``: what
  the stages share; ``reporting``: the report rows.

The settings all come from one ``compiler.quant_config.QuantConfig``.
"""
