"""Hardware targets as data: one TOML file per target, loaded by ``compiler.target``.

Each file names the backend that compiles for the target, its default pass pipeline, its
numerics (allowed precisions; weight, activation and accumulator types) and its hardware
limits (DSP/BRAM/LUT and clock for an FPGA part, compute capability and precisions for a GPU,
LLVM triple and CPU features for a CPU, array size and SRAM for an ASIC). Every hardware
number is cited: the ``datasheet`` key and a comment name the document it came from.

A file holding only ``alias = "<name>"`` points at another target (``fpga.toml`` ->
``zcu104``). Add a target by adding a file; ``tapeout targets`` lists them. This package holds
no code, so that the files are found with ``importlib.resources`` once installed.
"""
