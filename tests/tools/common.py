"""Constants of the toolbox tests."""

from __future__ import annotations

from pathlib import Path

import compiler

DATA = Path(compiler.__file__).parent / "data"
DIGITS_ONNX = str(DATA / "digits_cnn.onnx")
#: The FPGA's structural passes on the reference target: batch norm folded, ReLU fused.
PIPELINE = "fold-constants,simplify-shapes,fold-batchnorm,fuse-bias-act,dce,quantize"
