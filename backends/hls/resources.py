"""Resource and latency estimates of a design, before any HLS tool runs.

The model (every constant below is an assumption, written down so an engineer can check it
against the csynth report):

* **DSP.** A MAC layer's kernel is pipelined at II = rf and shares its multipliers rf ways:
  ``ceil(nonzero_products_per_block / rf)`` multipliers, where a block is the work of one II
  window (a whole dense layer, one output pixel of a conv) and a product whose weight is zero
  (a pruned weight) is not counted. The emitted code does not skip zero weights itself: with
  rf = 1 the weights are fully partitioned constants and HLS folds a multiply by a constant 0
  away; with rf > 1 the estimate is optimistic by the zeros. 8-bit x 8-bit products are
  packed two per DSP48E2 (UltraScale+; the shared-operand INT8 packing of Xilinx WP486: one
  activation times two weights), one per DSP48E1 (7-series) and one per DSP for wider
  operands (the target file's ``products_per_dsp``; the ``dsp_packing`` option overrides
  it). A power-of-two requantize is a rounding shift: no DSP. Any other requantize costs
  ``REQUANT_DSP`` per output lane (a 32 x 31-bit product on 27 x 18-bit multipliers).
* **BRAM18K.** Weights are partitioned cyclically into ``ceil(macs / rf)`` banks (the
  kernels' ARRAY_PARTITION). A bank of at most ``LUTRAM_BITS`` bits stays in LUTs/registers;
  a larger one takes ``ceil(bank_bits / 18 Kb)`` BRAM18K. Activation arrays between layers are
  partitioned for the ports their producer and consumers need per cycle (two per bank);
  unpartitioned banks over ``LUTRAM_BITS`` are BRAM, doubled because DATAFLOW makes every
  array channel a ping-pong buffer.
* **LUT.** Rough per-unit constants: ``LUT_PER_PRODUCT`` per parallel product (its adder-tree
  input), ``LUT_PER_LANE`` per requantize/clip lane, ``LUT_PER_COMPARE`` per pooling
  comparator, ``LUT_PER_STREAM`` per elementwise layer, plus ROM bits in LUTs (64 per LUT6).
* **FF.** Pipeline registers: ``FF_PER_PRODUCT`` per parallel product (the registered
  product and its adder-tree stage), ``FF_PER_LANE`` per output lane (the accumulator and the
  requantize pipeline), ``FF_PER_STREAM`` per elementwise layer. Flip-flops are rarely what
  limits a design (an UltraScale+ slice has two per LUT), so the reuse search does not fit
  them; the report shows them against the part's count.
* **Latency.** II = rf. A MAC layer takes ``blocks * rf + depth - 1`` cycles with
  ``depth = 1 (multiply) + ceil(log2(fan_in) / adder_levels_per_cycle) + 1 (requantize)``;
  ``ADDER_NS`` per adder level sets how many levels fit in one clock period. Elementwise
  layers stream one element per cycle. Ports move one AXI-Stream beat (up to 512 bits) per
  cycle (``M_AXI_LATENCY`` more for an m_axi burst). Layers communicate through arrays, so
  under DATAFLOW a layer starts when its producer is done: the latency of one sample is the
  **sum** over layers, and the interval between samples is the **max** (the slowest layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from backends.hls.design import Buffer, Design, Layer, Port

REQUANT_DSP = 4
ADD_DSP = 4
LUT_PER_PRODUCT = 20
LUT_PER_LANE = 48
LUT_PER_COMPARE = 10
LUT_PER_STREAM = 64
LUT_ROM_BITS = 64
FF_PER_PRODUCT = 24
FF_PER_LANE = 40
FF_PER_STREAM = 64
LUTRAM_BITS = 1024
BRAM18K_BITS = 18 * 1024
ADDER_NS = 1.6
BEAT_BITS = 512
M_AXI_LATENCY = 30


@dataclass
class Estimate:
    """One row's resources and cycles."""

    dsp: int = 0
    bram18k: int = 0
    lut: int = 0
    ii: int = 1
    latency: int = 0
    ff: int = 0

    def add(self, other: Estimate) -> None:
        self.dsp += other.dsp
        self.bram18k += other.bram18k
        self.lut += other.lut
        self.ff += other.ff


@dataclass(frozen=True)
class Model:
    """The per-part numbers of the model: packing and how many adder levels fit a cycle."""

    products_per_dsp: int
    levels_per_cycle: int
    clock_mhz: float

    @staticmethod
    def for_target(products_per_dsp: int, clock_mhz: float, packing: int | None = None) -> Model:
        """The model of a part: its DSP packing (``[fpga] products_per_dsp`` of the target
        file, or the ``dsp_packing`` option) and its clock."""
        period = 1000.0 / clock_mhz
        per_dsp = packing if packing is not None else products_per_dsp
        return Model(per_dsp, max(1, int(period / ADDER_NS)), clock_mhz)

    def tree(self, fan_in: int) -> int:
        return math.ceil(math.log2(max(2, fan_in)) / self.levels_per_cycle)


def _mac(layer: Layer, m: Model) -> Estimate:
    c, rf = layer.cost, layer.rf
    mults = math.ceil(c.nonzero / rf)
    pack = m.products_per_dsp if c.operand_bits <= 8 else 1
    lanes = math.ceil(c.lanes / rf)
    dsp = math.ceil(mults / pack) + (REQUANT_DSP * lanes if c.requant_dsp else 0)
    banks = math.ceil(c.macs / rf)
    depth = math.ceil(c.weight_count / banks)
    bank_bits = depth * c.weight_bits
    bram, rom = 0, 0
    if bank_bits > LUTRAM_BITS and rf > 1:
        bram = banks * math.ceil(bank_bits / BRAM18K_BITS)
    elif depth > 1:
        rom = banks * c.weight_bits * math.ceil(depth / LUT_ROM_BITS)
    lut = LUT_PER_PRODUCT * mults + LUT_PER_LANE * lanes + rom
    latency = c.blocks * rf + (1 + m.tree(c.fan_in) + 1) - 1
    return Estimate(dsp, bram, lut, rf, latency, FF_PER_PRODUCT * mults + FF_PER_LANE * lanes)


def _window(layer: Layer, m: Model) -> Estimate:
    c, rf = layer.cost, layer.rf
    lanes = math.ceil(c.lanes / rf)
    dsp = REQUANT_DSP * lanes if c.requant_dsp else 0
    lut = LUT_PER_COMPARE * c.fan_in * lanes + LUT_PER_LANE * lanes
    return Estimate(dsp, 0, lut, rf, c.blocks * rf + m.tree(c.fan_in) + 1, FF_PER_LANE * lanes)


def _global(layer: Layer, m: Model) -> Estimate:
    c = layer.cost
    dsp = REQUANT_DSP if c.requant_dsp else 0
    lanes = c.lanes
    return Estimate(dsp, 0, LUT_PER_LANE * lanes, 1, c.blocks + lanes + 2, FF_PER_LANE * lanes)


def _stream(layer: Layer, m: Model) -> Estimate:
    c = layer.cost
    dsp = (ADD_DSP if layer.kind == "add" else REQUANT_DSP) if c.requant_dsp else 0
    rom = sum(a.data.size * 8 // LUT_ROM_BITS for a in layer.arrays if a.name.endswith("table"))
    return Estimate(dsp, 0, LUT_PER_STREAM + rom, 1, c.elements + 2, FF_PER_STREAM)


KIND_MODELS: dict[str, Callable[[Layer, Model], Estimate]] = {
    "dense": _mac,
    "conv2d": _mac,
    "depthwise_conv2d": _mac,
    "max_pool2d": _window,
    "avg_pool2d": _window,
    "global_avg_pool": _global,
    "global_max_pool": _global,
    "add": _stream,
    "requantize": _stream,
    "lut": _stream,
    "layout": _stream,
    "concat": _stream,
    "clip": _stream,
}
"""Layer kind -> its estimator (a test checks every kind a rule makes is here)."""


def estimate_layer(layer: Layer, model: Model) -> Estimate:
    return KIND_MODELS[layer.kind](layer, model)


# ---- activation arrays ----------------------------------------------------------------------
def _reader_ports(layer: Layer) -> int:
    c = layer.cost
    if layer.kind in ("dense", "conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d"):
        return math.ceil(c.reads / layer.rf)
    if layer.kind in ("global_avg_pool", "global_max_pool"):
        return c.lanes
    return 1


def _writer_ports(layer: Layer) -> int:
    if layer.kind in ("dense", "conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d"):
        return math.ceil(layer.cost.lanes / layer.rf)
    return 1


def partition(design: Design, all_layers: list[Layer]) -> dict[str, int]:
    """Buffer name -> cyclic partition factor (0: complete, i.e. registers)."""
    demand: dict[str, int] = {b.name: 1 for b in design.buffers}
    for layer in all_layers:
        for buf in layer.inputs:
            demand[buf.name] = max(demand.get(buf.name, 1), _reader_ports(layer))
        demand[layer.output.name] = max(demand.get(layer.output.name, 1), _writer_ports(layer))
    for port in [*design.in_ports, *design.out_ports]:
        demand[port.edge.name] = max(demand.get(port.edge.name, 1), port.packet)
    factors = {}
    for buf in design.buffers:
        banks = math.ceil(demand[buf.name] / 2)
        factors[buf.name] = 0 if banks * 2 >= buf.size or banks >= buf.size else banks
    return factors


def buffer_cost(buf: Buffer, factor: int) -> Estimate:
    """Memory of one activation array (ping-pong under DATAFLOW)."""
    if factor == 0:
        return Estimate()
    bank_bits = math.ceil(buf.size / factor) * buf.bits
    if bank_bits <= LUTRAM_BITS:
        return Estimate(lut=2 * factor * buf.bits * math.ceil(bank_bits / buf.bits / 64))
    return Estimate(bram18k=2 * factor * math.ceil(bank_bits / BRAM18K_BITS))


def port_estimate(port: Port, interface: str) -> Estimate:
    beats = math.ceil(port.buffer.size * port.buffer.bits / BEAT_BITS)
    if interface == "axis":
        beats = port.buffer.size // port.packet
    extra = M_AXI_LATENCY if interface == "m_axi" else 0
    return Estimate(0, 0, LUT_PER_STREAM, 1, beats + extra)
