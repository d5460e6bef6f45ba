"""FPGA backend: quantized graphs to Vitis HLS C++ (``compile(model, target="fpga")``)."""

from backends.hls.backend import HlsBackend

__all__ = ["HlsBackend"]
