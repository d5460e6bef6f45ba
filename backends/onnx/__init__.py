"""ONNX export of any lowered graph (float, or QDQ for quantized graphs), and the ``onnx``
backend that runs the exported file with onnxruntime.

``export_onnx(graph, path=None, opset=17) -> onnx.ModelProto`` is what ``tapeout export
--format onnx`` calls (``required_opset(graph)``: 21 where int16/int4 quantization needs it,
else 17); ``unsupported_nodes(graph, opset)`` lists what it cannot write.
"""

from backends.onnx.backend import OnnxArtifact, OnnxBackend, ort_session, run_onnx
from backends.onnx.emitter import ExportError
from backends.onnx.export import MIN_OPSET, export_onnx, unsupported_nodes
from backends.onnx.rules_quant import required_opset

__all__ = [
    "MIN_OPSET",
    "ExportError",
    "OnnxArtifact",
    "OnnxBackend",
    "export_onnx",
    "ort_session",
    "required_opset",
    "run_onnx",
    "unsupported_nodes",
]
