"""IR types: dtypes, quantization parameters and tensor types.

A tensor type prints as ``i8[1,16,8,8]{scale=2^-4}``: the dtype (bit width always visible),
the shape (ints, or names for symbolic dimensions such as ``batch``), and, for quantized
tensors, the scale and zero point (per tensor, or per channel along ``axis``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from compiler.numerics import INT_RANGES, ML_DTYPES, is_power_of_two

#: IR dtype name -> NumPy dtype used to hold its values. i4 is stored unpacked in int8.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(np.float32),  # NumPy has no bfloat16; values are rounded on cast
    "f64": np.dtype(np.float64),
    "i64": np.dtype(np.int64),
    "i32": np.dtype(np.int32),
    "i16": np.dtype(np.int16),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "u16": np.dtype(np.uint16),
    "u32": np.dtype(np.uint32),
    "u64": np.dtype(np.uint64),
    "i4": np.dtype(np.int8),
    "u4": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
    # Narrow types ONNX carries (Cast, Q/DQ): held in the wider NumPy type, whose values the
    # interpreter rounds to the narrow type's after every op (``numerics.round_narrow``).
    "f8e4m3fn": np.dtype(np.float32),
    "f8e4m3fnuz": np.dtype(np.float32),
    "f8e5m2": np.dtype(np.float32),
    "f8e5m2fnuz": np.dtype(np.float32),
    "f4e2m1": np.dtype(np.float32),
    "i2": np.dtype(np.int8),
    "u2": np.dtype(np.uint8),
}
DTYPES: frozenset[str] = frozenset(NUMPY_DTYPES)
#: Float types no backend computes in natively (only the interpreter, through ml_dtypes).
NARROW_FLOAT_DTYPES: frozenset[str] = frozenset(
    {"f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz", "f4e2m1"}
)
FLOAT_DTYPES: frozenset[str] = frozenset({"f32", "f16", "bf16", "f64"}) | NARROW_FLOAT_DTYPES
#: Integer types narrower than a byte, held one value per byte.
SUB_BYTE_INTS: frozenset[str] = frozenset({"i4", "u4", "i2", "u2"})
INT_DTYPES: frozenset[str] = frozenset(INT_RANGES)

BITS: dict[str, int] = {
    "f32": 32,
    "f16": 16,
    "bf16": 16,
    "f64": 64,
    "i64": 64,
    "i32": 32,
    "i16": 16,
    "i8": 8,
    "u8": 8,
    "u16": 16,
    "u32": 32,
    "u64": 64,
    "i4": 4,
    "u4": 4,
    "bool": 1,
    "f8e4m3fn": 8,
    "f8e4m3fnuz": 8,
    "f8e5m2": 8,
    "f8e5m2fnuz": 8,
    "f4e2m1": 4,
    "i2": 2,
    "u2": 2,
}

_FROM_ML: dict[str, str] = {v: k for k, v in ML_DTYPES.items()}

Dim = int | str
Shape = tuple[Dim, ...]

#: A symbolic dimension as the IR text writes it, and so the only ones a type may hold: a
#: name (``batch``), a product or sum the shape rules derive (``b*seq``, ``s+1``) or a derived
#: size they cannot name (``seq'``). The parser reads exactly these; anything else would print
#: as text that does not parse back.
DIM_NAME = re.compile(r"[A-Za-z0-9_'*+]+")


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def dtype_of_numpy(dt: np.dtype) -> str:
    """The IR dtype name that stores NumPy dtype ``dt``."""
    table = {
        np.dtype(np.float32): "f32",
        np.dtype(np.float16): "f16",
        np.dtype(np.float64): "f64",
        np.dtype(np.int64): "i64",
        np.dtype(np.int32): "i32",
        np.dtype(np.int16): "i16",
        np.dtype(np.int8): "i8",
        np.dtype(np.uint8): "u8",
        np.dtype(np.uint16): "u16",
        np.dtype(np.uint32): "u32",
        np.dtype(np.uint64): "u64",
        np.dtype(np.bool_): "bool",
    }
    if np.dtype(dt).name in _FROM_ML:
        return _FROM_ML[np.dtype(dt).name]
    try:
        return table[np.dtype(dt)]
    except KeyError:
        raise TypeError(f"NumPy dtype {dt} has no IR dtype") from None


def storage_array(array: np.ndarray) -> np.ndarray:
    """``array`` in the NumPy type the IR holds its dtype in (ml_dtypes arrays -> float32 or
    8-bit integers; NumPy arrays unchanged)."""
    name = _FROM_ML.get(array.dtype.name)
    return array if name is None else array.astype(NUMPY_DTYPES[name])


def format_scale(s: float) -> str:
    """A scale as text: ``2^-7`` for powers of two, else the shortest round-tripping repr."""
    if is_power_of_two(s):
        return f"2^{math.frexp(s)[1] - 1}"
    return repr(float(s))


def parse_scale(text: str) -> float:
    text = text.strip()
    if text.startswith("2^"):
        return math.ldexp(1.0, int(text[2:]))
    return float(text)


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: ``real = (q - zero_point) * scale``.

    Per tensor when ``axis`` is None (one scale and zero point), else per channel along
    ``axis`` (one entry per channel). ``power_of_two`` is derived: every scale is ``2^k``,
    i.e. the tensor is plain fixed point (``ap_fixed`` on an FPGA).
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None
    #: Block (group-wise) quantization, as ONNX DequantizeLinear's ``block_size``: groups of
    #: ``group_size`` consecutive elements along ``axis`` share one scale; the scales are the
    #: tensor's shape with dimension ``axis`` divided by ``group_size``, flattened row-major
    #: (an int4 dense weight [N, K] with axis=1 has N*K/group_size scales).
    group_size: int | None = None

    def __post_init__(self) -> None:
        if len(self.scale) == 0 or len(self.scale) != len(self.zero_point):
            raise ValueError("QuantParams needs as many zero points as scales (at least one)")
        if self.axis is None and len(self.scale) != 1:
            raise ValueError("per-tensor QuantParams has exactly one scale")
        if self.group_size is not None and (self.axis is None or self.group_size < 1):
            raise ValueError("group-wise QuantParams needs an axis and a group_size >= 1")
        for s in self.scale:
            if not (s > 0 and math.isfinite(s)):
                raise ValueError(f"quantization scale must be positive and finite, got {s!r}")

    @staticmethod
    def per_tensor(scale: float, zero_point: int = 0) -> QuantParams:
        return QuantParams((float(scale),), (int(zero_point),), None)

    @staticmethod
    def per_channel(
        scales: np.ndarray | list[float],
        axis: int,
        zero_points: np.ndarray | list[int] | None = None,
    ) -> QuantParams:
        s = tuple(float(v) for v in np.asarray(scales).reshape(-1))
        z = (
            tuple(int(v) for v in np.asarray(zero_points).reshape(-1))
            if zero_points is not None
            else (0,) * len(s)
        )
        return QuantParams(s, z, axis)

    @property
    def power_of_two(self) -> bool:
        return all(is_power_of_two(s) for s in self.scale)

    @property
    def per_tensor_scale(self) -> float:
        if self.axis is not None:
            raise ValueError("per-channel quantization has no single scale")
        return self.scale[0]

    def scale_array(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float32)

    def zero_point_array(self) -> np.ndarray:
        return np.asarray(self.zero_point, dtype=np.int64)

    def __str__(self) -> str:
        def one(vals: tuple, fmt) -> str:
            return fmt(vals[0]) if self.axis is None else "[" + ",".join(fmt(v) for v in vals) + "]"

        parts = [f"scale={one(self.scale, format_scale)}"]
        if any(self.zero_point):
            parts.append(f"zp={one(self.zero_point, str)}")
        if self.axis is not None:
            parts.append(f"axis={self.axis}")
        if self.group_size is not None:
            parts.append(f"group={self.group_size}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class TensorType:
    """A tensor's dtype, shape (ints or symbolic names) and optional quantization."""

    dtype: str
    shape: Shape
    quant: QuantParams | None = field(default=None)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {sorted(DTYPES)}")
        for d in self.shape:
            if isinstance(d, bool) or not isinstance(d, int | str):
                raise ValueError(f"shape {self.shape} has a dimension that is neither int nor name")
            if isinstance(d, int) and d < 0:
                raise ValueError(f"shape {self.shape} has a negative dimension")
            if isinstance(d, str) and (not DIM_NAME.fullmatch(d) or d.isdigit()):
                raise ValueError(
                    f"shape {self.shape} has a symbolic dimension {d!r} that IR text cannot "
                    f"hold; a name takes [A-Za-z0-9_'*+] and is not all digits"
                )
        if self.quant is not None:
            if not is_int(self.dtype):
                raise ValueError(f"quantization parameters on non-integer dtype {self.dtype}")
            if self.quant.axis is not None:
                if not -len(self.shape) <= self.quant.axis < max(len(self.shape), 1):
                    raise ValueError(
                        f"quantization axis {self.quant.axis} out of range for {self.shape}"
                    )
                n = self.shape[self.quant.axis]
                if self.quant.group_size is not None:
                    self._check_groups(n)
                elif isinstance(n, int) and n != len(self.quant.scale):
                    raise ValueError(
                        f"{len(self.quant.scale)} per-channel scales for {n} channels along axis "
                        f"{self.quant.axis}"
                    )

    def _check_groups(self, n: Dim) -> None:
        assert self.quant is not None and self.quant.group_size is not None
        group = self.quant.group_size
        if isinstance(n, int) and n % group:
            raise ValueError(f"group size {group} does not divide dimension {n} of {self.shape}")
        if self.is_static and self.numel // group != len(self.quant.scale):
            raise ValueError(
                f"{len(self.quant.scale)} group scales for {self.shape} in groups of {group}"
            )

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int:
        if not self.is_static:
            raise ValueError(f"shape {self.shape} is symbolic")
        return math.prod(int(d) for d in self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return NUMPY_DTYPES[self.dtype]

    def with_shape(self, shape: Shape) -> TensorType:
        return TensorType(self.dtype, tuple(shape), None)

    def with_dtype(self, dtype: str, quant: QuantParams | None = None) -> TensorType:
        return TensorType(dtype, self.shape, quant)

    def with_quant(self, quant: QuantParams | None) -> TensorType:
        return TensorType(self.dtype, self.shape, quant)

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]" + (str(self.quant) if self.quant else "")


def f32(*shape: Dim) -> TensorType:
    """Shorthand used in tests and passes: ``f32(1, 3, 8, 8)``."""
    return TensorType("f32", tuple(shape))
