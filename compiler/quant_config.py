"""``QuantConfig``: every quantization setting, in one frozen dataclass.

It is the ``quantize`` pass's one field (``quantize{bits=8,per_channel=true}`` builds it,
``QuantConfig.from_options``), the ``PassContext.quant`` of a run, the ``quant=`` argument
of ``compiler.compile`` (``precision=``, ``calibrator=``, ``island_dtype=`` are shortcuts for
its fields), and the source of the ``tapeout compile`` flags (``cli_flags``): each field's
metadata holds its help text, its choices and how the command line parses it. Adding an
option is one field here, the rule that reads it (``passes/quant/``), and a test.

This is a leaf module (no NumPy, no passes), so ``compiler`` and ``compiler.target`` import
it freely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from compiler.errors import CalibrationError, TapeoutError

Precision = Literal["fp32", "fp16", "int8", "int16", "int4w", "mixed"]
#: What ``quantize`` can produce; a target's ``numerics.allowed_precisions`` is a subset.
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: The precisions that make conv/dense/matmul integer (the others stay float or weight-only).
INTEGER_PRECISIONS = ("int8", "int16", "mixed")
#: ``calibrator`` names; ``passes.quant.stats`` implements each.
CALIBRATORS = ("minmax", "percentile", "entropy", "mse")
ACTIVATION_DTYPES = ("i8", "u8", "i16")
ISLAND_DTYPES = ("f32", "f64")
#: ``stats_engine``: "auto" tries the context's executor (``PassContext.executor``) and falls
#: back to the interpreter; "executor" insists on it.
STATS_ENGINES = ("auto", "interpreter", "executor")
#: ``bits`` of the pipeline form -> precision.
BITS = {4: "int4w", 8: "int8", 16: "int16"}

#: A mixed-precision budget: the minimum output SQNR (dB), or a callable taking a candidate
#: quantized graph and returning True when it is good enough.
Budget = float | Callable[[Any], bool] | None


def _option(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
    error: type[TapeoutError] = TapeoutError,
) -> Any:
    """A field with what the command line and validation need to know about it."""
    meta = {"help": help, "parse": parse, "choices": choices, "cli": cli, "error": error}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize (see ``passes.quantize`` for the IR each setting produces)."""

    precision: Precision = _option("int8", "numeric format of the model", choices=PRECISIONS)
    calibrator: str = _option(
        "minmax", "how a range is picked from statistics", choices=CALIBRATORS,
        error=CalibrationError,
    )  # fmt: skip
    percentile: float = _option(99.99, "percentile calibrator: the |x| percentile", parse=float)
    per_channel: bool = _option(True, "one weight scale per output channel")
    power_of_two: bool | None = _option(
        None, "power-of-two scales (requantize is a shift); default: the target's"
    )
    symmetric: bool = _option(True, "symmetric activations (no zero point); else u8")
    activation_dtype: str = _option("i8", "activation type", choices=ACTIVATION_DTYPES)
    group_size: int = _option(128, "int4w: weights per scale along the input axis", parse=int)
    island_dtype: str | None = _option(
        None,
        "float ops between integer layers: f64 matches the interpreter bit for bit (the CPU "
        "targets' default), f32 is faster",
        choices=ISLAND_DTYPES,
    )
    integer_ops: bool | None = _option(
        None,
        "softmax, layer norm, GELU and attention matmuls in integers (q.softmax, "
        "q.layernorm: for the FPGA engine); default: the target's",
    )
    budget: Budget = _option(
        None, "mixed: the minimum output SQNR in dB, or cosine (Python: or a callable)",
        parse=float,
    )  # fmt: skip
    budget_metric: str = _option(
        "sqnr", "mixed: what the budget bounds: output SQNR (dB) or cosine similarity",
        choices=("sqnr", "cosine"),
    )  # fmt: skip
    bias_correction: bool = _option(False, "correct the mean output shift of each layer")
    exclude: tuple[str, ...] = _option(
        (), "keep this layer (name, location, pattern) or op float (repeatable)"
    )
    overrides: Mapping[str, Mapping[str, Any]] = _option(
        {}, "pattern -> {precision, per_channel, calibrator, percentile}", cli=False
    )
    clip_threshold: float = _option(
        1e-3, "clipped share above which a layer is flagged", parse=float
    )
    report_samples: int | None = _option(
        None, "samples the report and mixed precision run on (default: by model size)", parse=int
    )
    stats_engine: str = _option(
        "auto", "what runs calibration: the executor (onnxruntime) or the interpreter",
        choices=STATS_ENGINES,
    )  # fmt: skip

    def __post_init__(self) -> None:
        # Lists from a pipeline string or JSON become tuples: the config stays hashable-ish
        # and compares equal however it was spelled.
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "overrides", dict(self.overrides))
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise f.metadata["error"](
                    f"unknown {f.name} {value!r}; expected one of {', '.join(choices)}"
                )

    @classmethod
    def from_options(cls, bits: int | None = None, **options: Any) -> QuantConfig:
        """The config of ``quantize{bits=8,per_channel=true,...}``: ``bits`` (4, 8, 16)
        picks the precision unless ``precision`` is given."""
        unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TapeoutError(
                f"pass quantize has no option(s) {sorted(unknown)}; it takes "
                f"{sorted(['bits', *(f.name for f in dataclasses.fields(cls))])}"
            )
        if bits is not None and "precision" not in options:
            if bits not in BITS:
                raise TapeoutError(f"quantize: bits={bits} is not 4, 8 or 16")
            options["precision"] = BITS[bits]
        return cls(**options)

    @property
    def integer(self) -> bool:
        """Whether this config makes integer layers (``INTEGER_PRECISIONS``)."""
        return self.precision in INTEGER_PRECISIONS

    def budget_text(self) -> str | None:
        """The budget as the report prints it."""
        if self.budget is None:
            return None
        if isinstance(self.budget, int | float):
            unit = {"sqnr": "dB output SQNR", "cosine": "output cosine"}[self.budget_metric]
            return f">= {self.budget} {unit}"
        return "callable"


def cli_flags() -> list[tuple[str, dict[str, Any]]]:
    """``(flag, argparse keyword arguments)`` for each command-line field of QuantConfig.

    Every flag defaults to "not given" (``argparse.SUPPRESS``), so the parsed namespace holds
    only the fields the user set, which ``compile(quant=...)`` applies over the pipeline's.
    """
    import argparse

    flags = []
    for f in dataclasses.fields(QuantConfig):
        meta = f.metadata
        if not meta["cli"]:
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        kwargs["help"] = meta["help"]
        if isinstance(f.default, bool) or f.name == "power_of_two":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(f.default, tuple):
            kwargs.update(action="append", metavar="NAME")
        else:
            kwargs.update(type=meta["parse"] or str, choices=meta["choices"])
        flags.append(("--" + f.name.replace("_", "-"), kwargs))
    return flags


def quant_changes(namespace: Any) -> dict[str, Any]:
    """The QuantConfig fields a parsed command line set (see ``cli_flags``)."""
    names = {f.name for f in dataclasses.fields(QuantConfig)}
    return {k: v for k, v in vars(namespace).items() if k in names}
