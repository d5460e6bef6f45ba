"""The weight-streaming engine: one int8 MAC array reused layer after layer, fed from DDR.

The second FPGA architecture next to the dataflow design (``backends.hls``): the dataflow
design builds hardware per layer with every weight on chip, right for tiny models; the engine
(``tapeout/engine.h``, in the spirit of the Vitis AI DPU) runs a schedule of layer descriptors
the compiler writes, so ResNet-50-sized models fit any board whose DDR holds them.
``compile(model, target="zcu104", fpga_arch="engine", engine="B2304")``.
"""

from backends.hls.engine.compile import compile_engine
from backends.hls.engine.lower import unsupported

__all__ = ["compile_engine", "unsupported"]
