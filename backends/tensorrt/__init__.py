"""The TensorRT GPU backend: ONNX (QDQ for int8) -> TensorRT engine, or a deployable bundle.

``build_engine.py`` in this folder is the script copied into every bundle; it imports
nothing from tapeout.
"""

from backends.tensorrt.backend import TensorRTArtifact, TensorRTBackend
from backends.tensorrt.plan import BuildPlan, make_plan

__all__ = ["BuildPlan", "TensorRTArtifact", "TensorRTBackend", "make_plan"]
