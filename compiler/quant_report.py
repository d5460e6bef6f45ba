"""What a quantization did, layer by layer: scheme, scales, sensitivity, saturation.

``passes.quantize.quantize_graph`` returns a ``QuantReport``. Per layer (every node that runs
in integers, plus those left float or kept wider on purpose):

- ``weight_scheme``: e.g. ``i8 per-channel``, ``i8 per-tensor pow2``, ``i4 group128``;
- ``input_scale`` / ``output_scale``: the activation scales around it;
- ``sqnr_db``: SQNR of the layer's output against float when that layer *alone* is quantized
  (a low value means a sensitive layer);
- ``clip_calibration``: share of calibration values outside the chosen range (at the input
  and output of the layer, the larger), ``clip_runtime``: share the quantized graph actually
  saturated on the report samples (``interpret(count_saturation=True)``);
- ``flagged``: either share above ``clip_threshold`` (also logged as a warning);
- ``kept_wider``: "int16" or "float" when mixed precision kept the layer wider.

``format()`` renders a text table, ``to_json()`` a JSON-ready dict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerReport:
    """One layer's quantization and what it cost."""

    name: str
    op: str
    precision: str
    weight_scheme: str = "-"
    input_scale: float | None = None
    output_scale: float | None = None
    activation_dtype: str | None = None
    sqnr_db: float | None = None
    clip_calibration: float = 0.0
    clip_runtime: float | None = None
    flagged: bool = False
    kept_wider: str | None = None


@dataclass
class QuantReport:
    """The result of ``quantize_graph``; see the module docstring."""

    precision: str
    calibrator: str = "minmax"
    per_channel: bool = True
    power_of_two: bool = False
    symmetric: bool = True
    samples: int = 0
    layers: list[LayerReport] = field(default_factory=list)
    output_sqnr_db: float | None = None
    output_cosine: float | None = None
    weight_bytes_float: int = 0
    weight_bytes_quantized: int = 0
    clip_threshold: float = 1e-3
    budget: str | None = None
    budget_met: bool | None = None
    calibration_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.flagged]

    @property
    def kept_wider(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.kept_wider]

    @property
    def compression(self) -> float:
        """Weight bytes before / after (1.0 when nothing was quantized)."""
        if not self.weight_bytes_quantized:
            return 1.0
        return self.weight_bytes_float / self.weight_bytes_quantized

    def layer(self, name: str) -> LayerReport:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in the report; layers: {[x.name for x in self.layers]}")

    def format(self) -> str:
        head = (
            f"quantization: {self.precision}, calibrator {self.calibrator}, "
            f"{'per-channel' if self.per_channel else 'per-tensor'} weights, "
            f"{'symmetric' if self.symmetric else 'asymmetric'} activations"
            f"{', power-of-two scales' if self.power_of_two else ''}; {self.samples} samples "
            f"in {self.calibration_seconds:.1f} s"
        )
        rows = [head, _row(_COLUMNS)]
        for layer in self.layers:
            rows.append(_row(_cells(layer)))
        summary = []
        if self.output_sqnr_db is not None:
            summary.append(f"output SQNR {_db(self.output_sqnr_db)} dB")
        if self.output_cosine is not None:
            summary.append(f"cosine {self.output_cosine:.6f}")
        if self.weight_bytes_quantized:
            summary.append(
                f"weights {self.weight_bytes_float} -> {self.weight_bytes_quantized} bytes "
                f"({self.compression:.2f}x)"
            )
        if self.budget is not None:
            summary.append(f"budget {self.budget}: {'met' if self.budget_met else 'NOT met'}")
        if self.kept_wider:
            summary.append(
                "kept wider: " + ", ".join(f"{x.name} ({x.kept_wider})" for x in self.kept_wider)
            )
        if self.flagged:
            summary.append(
                f"{len(self.flagged)} layer(s) clip more than {self.clip_threshold:g}: "
                + ", ".join(x.name for x in self.flagged)
            )
        rows.extend(summary + self.notes)
        return "\n".join(rows)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["compression"] = self.compression
        return _finite(data)


_COLUMNS = (
    "layer",
    "op",
    "precision",
    "weights",
    "in scale",
    "out scale",
    "SQNR dB",
    "clip cal",
    "clip run",
    "flag",
)
_WIDTHS = (28, 14, 9, 22, 10, 10, 8, 9, 9, 4)


def _row(cells: tuple[str, ...] | list[str]) -> str:
    return " ".join(
        (c if len(c) <= w else c[: w - 1] + "~").ljust(w)
        for c, w in zip(cells, _WIDTHS, strict=True)
    ).rstrip()


def _cells(layer: LayerReport) -> list[str]:
    precision = layer.precision + ("*" if layer.kept_wider else "")
    return [
        layer.name,
        layer.op,
        precision,
        layer.weight_scheme,
        _scale(layer.input_scale),
        _scale(layer.output_scale),
        "-" if layer.sqnr_db is None else _db(layer.sqnr_db),
        f"{layer.clip_calibration:.1e}",
        "-" if layer.clip_runtime is None else f"{layer.clip_runtime:.1e}",
        "!" if layer.flagged else "",
    ]


def _scale(s: float | None) -> str:
    if s is None:
        return "-"
    exponent = math.log2(s)
    return f"2^{int(exponent)}" if exponent == int(exponent) else f"{s:.3g}"


def _db(value: float) -> str:
    return "inf" if math.isinf(value) and value > 0 else f"{value:.1f}"


def _finite(data: Any) -> Any:
    """JSON has no Infinity: infinite SQNR (exact) becomes the string "inf"."""
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return "inf" if data > 0 else ("-inf" if data < 0 else "nan")
    return data
