"""The engine's program: layer steps, their descriptors, and the DDR images.

A ``Step`` is one descriptor of ``tapeout/engine_desc.h`` before it is packed: its op, its
fields by name (``FIELDS``, the header's ``Field`` enum without the ``F_`` prefix, in the same
order) and the constant data it brings (weights, per-channel parameters, a table). ``pack``
lays the constants out in the two parameter images (``wgt``: int8, ``par``: int32, each
aligned to ``ALIGN`` bytes so that every layer's weights start a fresh AXI burst), fills in
their offsets and returns the schedule as int32 words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compiler.ir.graph import Node

#: Descriptor fields, in the order of the ``Field`` enum of tapeout/engine_desc.h.
FIELDS: tuple[str, ...] = (
    "OP",
    "IN", "IN_H", "IN_W", "IN_C", "IN_PS", "IN_ZP",
    "OUT", "OUT_H", "OUT_W", "OUT_C", "OUT_PS", "OUT_ZP",
    "KH", "KW", "SH", "SW", "PT", "PL", "DH", "DW", "GROUPS",
    "WGT", "BIAS", "MULT", "SHIFT", "PER_CHANNEL",
    "RELU", "LO", "HI",
    "RES", "RES_PS", "RES_ZP", "RES_AMUL_LO", "RES_AMUL_HI", "RES_BMUL_LO", "RES_BMUL_HI",
    "RES_SHIFT", "RES_OUT_ZP", "RES_LO", "RES_HI",
    "POOL_MULT", "POOL_SHIFT",
    "T_OH", "T_OC", "T_IC",
    "ROWS", "ROW_LEN", "BATCH", "A_BS", "B_BS", "EPS",
)  # fmt: skip
INDEX = {name: i for i, name in enumerate(FIELDS)}
DESC_WORDS = len(FIELDS)

#: Engine op codes (the ``Op`` enum).
OPS: dict[str, int] = {
    "conv": 1,
    "maxpool": 2,
    "avgpool": 3,
    "add": 4,
    "copy": 5,
    "lut": 6,
    "resize": 7,
    "matmul": 8,
    "softmax": 9,
    "layernorm": 10,
    "gather": 11,
}

#: Offsets of absent operands.
ABSENT = -1
#: Byte alignment of each layer's constants and each tensor in DDR (one AXI burst beat line).
ALIGN = 64


@dataclass
class Step:
    """One descriptor: ``op`` (a key of ``OPS``), ``fields`` by name, constant data.

    ``weights``: int8 ``[OC, KH, KW, IC / groups]`` (or a 256-entry table for ``lut``);
    ``bias``/``mult``/``shift``: int32 arrays. ``kind`` names what the report shows (conv,
    dense, depthwise, ...); ``macs`` counts the products of one run.
    """

    name: str
    op: str
    nodes: list[Node]
    fields: dict[str, int] = field(default_factory=dict)
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    kind: str = ""
    macs: int = 0

    @property
    def loc(self) -> str:
        return (self.nodes[0].loc or "") if self.nodes else ""

    def get(self, key: str) -> int:
        return int(self.fields.get(key, 0))


def _aligned(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def split64(value: int) -> tuple[int, int]:
    """An int64 as (low, high) int32 words (two's complement)."""
    u = int(value) & (2**64 - 1)
    lo, hi = u & 0xFFFFFFFF, u >> 32
    return (lo - 2**32 if lo >= 2**31 else lo), (hi - 2**32 if hi >= 2**31 else hi)


def pack(steps: list[Step]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(schedule int32 [n, DESC_WORDS], wgt int8 image, par int32 image); sets the offsets."""
    wgt_parts: list[np.ndarray] = []
    par_parts: list[np.ndarray] = []
    wgt_len = par_len = 0
    for step in steps:
        if step.weights is not None:
            step.fields["WGT"] = wgt_len
            flat = np.ascontiguousarray(step.weights, dtype=np.int8).reshape(-1)
            pad = _aligned(flat.size) - flat.size
            wgt_parts.append(np.concatenate([flat, np.zeros(pad, np.int8)]))
            wgt_len += flat.size + pad
        for key, arr in (("BIAS", step.bias), ("MULT", step.mult), ("SHIFT", step.shift)):
            if arr is None:
                if key == "BIAS":
                    step.fields[key] = ABSENT
                continue
            step.fields[key] = par_len
            flat32 = np.asarray(arr, dtype=np.int64).astype(np.int32).reshape(-1)
            pad = _aligned(flat32.size, ALIGN // 4) - flat32.size
            par_parts.append(np.concatenate([flat32, np.zeros(pad, np.int32)]))
            par_len += flat32.size + pad
    schedule = np.zeros((len(steps), DESC_WORDS), dtype=np.int32)
    for i, step in enumerate(steps):
        step.fields["OP"] = OPS[step.op]
        for key, value in step.fields.items():
            schedule[i, INDEX[key]] = int(value)
    wgt = np.concatenate(wgt_parts) if wgt_parts else np.zeros(ALIGN, np.int8)
    par = np.concatenate(par_parts) if par_parts else np.zeros(ALIGN // 4, np.int32)
    return schedule, wgt, par


def describe(step: Step) -> str:
    """One line of ``schedule.txt``: the step's name, op and its non-zero fields."""
    shown = " ".join(f"{k}={step.fields[k]}" for k in FIELDS if step.fields.get(k, 0) != 0)
    return f"{step.name}: {step.op} ({step.kind}) {shown}"
