"""The engine's size: its MAC array, its on-chip buffers and what they cost on a part.

An ``EngineConfig`` is the array (PP pixels x ICP input channels x OCP output channels, the
parallelism the DPUCZDX8G names B512 ... B4096 after its peak operations per clock: 2 x PP x
ICP x OCP) and the buffer sizes the tiler must respect. ``engine_config(option, fpga)`` reads
the ``engine`` compile option (``"B2304"``, or a dict of fields) and sizes the buffers from
the part file's BRAM and URAM; ``resources`` prices a configuration on a part.

The resource model is an estimate (no synthesis has been run): a DSP48E2 packs two int8
products that share an operand (the target file's ``products_per_dsp``), a buffer costs
the BRAM18K/URAM blocks its bytes and its port width need, and the LUTs are a fixed control
and AXI part plus a per-MAC share for adder trees and operand registers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from backends.hls.resources import REQUANT_DSP
from compiler.errors import BackendError

#: The DPUCZDX8G array sizes (PG338, "Hardware Architecture": pixel, input-channel and
#: output-channel parallelism of each B-size).
DPU_SIZES: dict[str, tuple[int, int, int]] = {
    "B512": (4, 8, 8),
    "B800": (4, 10, 10),
    "B1024": (8, 8, 8),
    "B1152": (4, 12, 12),
    "B1600": (8, 10, 10),
    "B2304": (8, 12, 12),
    "B3136": (8, 14, 14),
    "B4096": (8, 16, 16),
}

#: Smaller arrays than the DPU's, for parts with few DSPs (Zynq-7000); the automatic choice
#: falls back to them.
SMALL_SIZES: dict[str, tuple[int, int, int]] = {"B256": (4, 4, 8), "B128": (2, 4, 8)}

BRAM18K_BYTES = 2304  # 18 Kb
BRAM18K_BITS_WIDE = 36  # widest port of a BRAM18K
URAM_BYTES = 36864  # 288 Kb
URAM_BITS_WIDE = 72
#: Share of the part's BRAM/URAM bytes the engine's buffers may take (the rest: AXI FIFOs,
#: the descriptor fetch, whatever else the platform puts on the chip). A choice, not a datum.
ONCHIP_SHARE = 0.6
#: How the BRAM share is split between input rows and accumulators when the weights have the
#: URAM; without URAM, between input rows, weights and accumulators. Each of input rows and
#: weights is double-buffered (two halves).
SPLIT_WITH_URAM = {"in": 0.5, "w": 0.0, "acc": 0.5}
SPLIT_BRAM_ONLY = {"in": 0.3, "w": 0.4, "acc": 0.3}
#: Largest output-channel tile (per-channel parameter registers).
MAX_OC = 1024
#: LUT model: control, descriptor fetch and four AXI masters; per MAC: operand registers and
#: its share of the adder trees.
LUT_BASE = 15000
LUT_PER_MAC = 16
FF_PER_MAC = 24


@dataclass(frozen=True)
class EngineConfig:
    """One engine: the array and its buffer sizes (elements)."""

    name: str
    pp: int
    icp: int
    ocp: int
    in_buf: int = 0  # int8 input elements per ping-pong half
    w_buf: int = 0  # int8 weights per ping-pong half
    acc_buf: int = 0  # int32 accumulators
    max_oc: int = MAX_OC

    @property
    def macs(self) -> int:
        return self.pp * self.icp * self.ocp

    @property
    def peak_ops(self) -> int:
        """Operations per clock (a MAC is two), the number in the B-size's name."""
        return 2 * self.macs


def parse_engine(option: Any) -> EngineConfig:
    """The ``engine`` option as an array size: ``"B2304"`` or ``{"pp": 8, "icp": 12, ...}``."""
    if option is None or option is False:  # False: the CLI's --no-engine (a GPU option)
        option = "B4096"  # compile picks the largest size that fits the part instead
    if isinstance(option, EngineConfig):
        return option
    if isinstance(option, str):
        size = {**DPU_SIZES, **SMALL_SIZES}.get(option.upper())
        if size is None:
            raise BackendError(
                f"unknown engine size {option!r}; known: {', '.join(DPU_SIZES)} "
                "(or a dict with pp, icp, ocp)"
            )
        return EngineConfig(option.upper(), *size)
    if isinstance(option, dict):
        fields = {"name", "pp", "icp", "ocp", "in_buf", "w_buf", "acc_buf", "max_oc"}
        unknown = sorted(set(option) - fields)
        if unknown:
            raise BackendError(
                f"engine option has unknown field(s) {unknown}; known: {sorted(fields)}"
            )
        base = parse_engine(option.get("name", "B4096")) if "name" in option else None
        try:
            values: dict[str, Any] = {k: int(v) for k, v in option.items() if k != "name"}
        except (TypeError, ValueError):
            raise BackendError(f"engine fields must be integers, got {option!r}") from None
        if any(v < 1 for v in values.values()):
            raise BackendError(f"engine fields must be >= 1, got {option!r}")
        if base is not None:
            return replace(base, **values)
        missing = {"pp", "icp", "ocp"} - set(values)
        if missing:
            raise BackendError(f"engine option needs {sorted(missing)} (or a name like 'B2304')")
        name = str(option.get("name") or f"B{2 * values['pp'] * values['icp'] * values['ocp']}")
        return EngineConfig(name, **values)
    raise BackendError(f"engine must be a size like 'B2304' or a dict of fields, got {option!r}")


def onchip_bytes(fpga: Any) -> int:
    """BRAM and URAM bytes of the part."""
    return int(fpga.bram18k) * BRAM18K_BYTES + int(fpga.uram) * URAM_BYTES


def sized(cfg: EngineConfig, fpga: Any) -> EngineConfig:
    """``cfg`` with the buffer sizes it does not set taken from the part's on-chip memory:
    weights in URAM where the part has it, input rows and accumulators in BRAM."""
    bram = int(fpga.bram18k) * BRAM18K_BYTES * ONCHIP_SHARE
    uram = int(fpga.uram) * URAM_BYTES * ONCHIP_SHARE
    split = SPLIT_WITH_URAM if uram else SPLIT_BRAM_ONLY
    in_buf = cfg.in_buf or int(bram * split["in"] / 2)
    w_buf = cfg.w_buf or int((uram if uram else bram * split["w"]) / 2)
    acc_buf = cfg.acc_buf or int(bram * split["acc"] / 4)
    return replace(cfg, in_buf=in_buf, w_buf=w_buf, acc_buf=acc_buf)


def engine_config(option: Any, fpga: Any) -> EngineConfig:
    """The engine the options ask for, with buffers sized for ``fpga``."""
    return sized(parse_engine(option), fpga)


def _blocks(nbytes: int, width_bits: int, block_bytes: int, block_bits: int) -> int:
    """Blocks a memory of ``nbytes`` read ``width_bits`` per cycle needs (capacity or ports)."""
    return max(math.ceil(nbytes / block_bytes), math.ceil(width_bits / block_bits))


def resources(cfg: EngineConfig, fpga: Any, pow2_requant: bool) -> dict[str, int]:
    """DSP, BRAM18K, URAM, LUT and FF of ``cfg`` on ``fpga`` (an estimate, see the module).

    Weights go to URAM when the part has it (large, read wide once per cycle), the input rows
    and accumulators to BRAM (read at odd strides: the windows).
    """
    pack = int(fpga.products_per_dsp)
    lanes = cfg.pp * cfg.ocp
    dsp = math.ceil(cfg.macs / pack) + (0 if pow2_requant else REQUANT_DSP * lanes)
    in_b = _blocks(2 * cfg.in_buf, cfg.pp * cfg.icp * 8, BRAM18K_BYTES, BRAM18K_BITS_WIDE)
    acc_b = _blocks(4 * cfg.acc_buf, lanes * 32, BRAM18K_BYTES, BRAM18K_BITS_WIDE)
    w_bits = cfg.icp * cfg.ocp * 8
    if int(fpga.uram) > 0:
        uram = _blocks(2 * cfg.w_buf, w_bits, URAM_BYTES, URAM_BITS_WIDE)
        w_b = 0
    else:
        uram = 0
        w_b = _blocks(2 * cfg.w_buf, w_bits, BRAM18K_BYTES, BRAM18K_BITS_WIDE)
    return {
        "dsp": dsp,
        "bram18k": in_b + acc_b + w_b,
        "uram": uram,
        "lut": LUT_BASE + LUT_PER_MAC * cfg.macs,
        "ff": 2 * LUT_BASE + FF_PER_MAC * cfg.macs,
    }


def largest_fitting(fpga: Any, pow2_requant: bool) -> EngineConfig | None:
    """The largest standard engine (DPU sizes, then the small ones) that fits ``fpga``."""
    sizes = {**DPU_SIZES, **SMALL_SIZES}
    for name in sorted(sizes, key=lambda n: -int(n[1:])):
        cfg = sized(EngineConfig(name, *sizes[name]), fpga)
        if not fit_problems(cfg, fpga, pow2_requant):
            return cfg
    return None


def fit_problems(cfg: EngineConfig, fpga: Any, pow2_requant: bool) -> list[str]:
    """What of ``cfg`` does not fit ``fpga`` (empty: it fits)."""
    used = resources(cfg, fpga, pow2_requant)
    return [
        f"{key.upper()} {used[key]} > {int(getattr(fpga, key))}"
        for key in ("dsp", "bram18k", "uram", "lut", "ff")
        if used[key] > int(getattr(fpga, key))
    ]
