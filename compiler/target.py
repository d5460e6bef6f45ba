"""Hardware targets as data: ``targets/<name>.toml`` loaded into frozen dataclasses.

A target names its backend, its default pass pipeline, its numerics and the limits of its
hardware. Every hardware number lives in a TOML file next to the data sheet it came from;
nothing here knows a part number. The schema *is* the dataclasses below: each field is a key,
its annotation is the type the key must have, a field without a default is a required key.
An unknown key, a wrong type or a missing key is a ``TargetError`` naming the file and the key.

A file holding only ``alias = "zcu104"`` points at another target (``fpga.toml``). Loading it
gives the aliased target under the alias's name, with ``alias_of`` set to the real target's
name and ``source_file`` to the file the numbers came from.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from compiler.errors import TargetError
from compiler.quant_config import Precision

Backend = Literal["reference", "hls", "tvm", "tensorrt", "onnx", "asic", "multi"]
GpuPrecision = Literal["fp32", "tf32", "fp16", "bf16", "int8", "fp8", "int4"]
#: IR dtype names (a subset of ``compiler.ir.types.DTYPES``; a test keeps them in step).
DType = Literal["i4", "u4", "i8", "u8", "i16", "i32", "f16", "bf16", "f32"]
Layout = Literal["NCHW", "NHWC"]

#: The limits table each backend cannot work without.
BACKEND_TABLE: dict[str, str] = {"hls": "fpga", "tvm": "cpu", "tensorrt": "gpu", "asic": "asic"}
MAX_ALIAS_DEPTH = 8
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_PASS_SPEC = re.compile(r"^[a-z][a-z0-9-]*(\{[^{}]*\})?$")
_ALIAS_KEYS = ("alias", "description", "name")


@dataclass(frozen=True)
class Numerics:
    """Which number formats the target computes in, and how quantization must look."""

    precision: Precision
    allowed_precisions: tuple[Precision, ...]
    weight_dtype: DType
    activation_dtype: DType
    power_of_two_scales: bool = False  # requantize by a shift only: no multiplier, no DSP
    layout: Layout = "NCHW"
    #: dtype of the float ops left between integer layers of a quantized graph ("f32", or
    #: "f64" so that a backend reproduces the reference interpreter bit for bit: see
    #: passes/quant/rewrite.py)
    island_dtype: Literal["f32", "f64"] = "f32"
    #: softmax, layer norm, GELU and activation matmuls in integers (passes.quant.integer_ops)
    integer_ops: bool = False


@dataclass(frozen=True)
class FpgaLimits:
    """An FPGA part: resource counts from its data sheet, and the HLS defaults used on it."""

    part: str
    family: str
    clock_mhz: float
    dsp: int
    bram18k: int
    uram: int
    lut: int
    ff: int
    interface: Literal["axis", "m_axi"] = "axis"
    default_reuse_factor: int = 1
    #: External memory the weight-streaming engine reads (0: unknown, the engine refuses):
    #: peak bandwidth in GB/s and capacity in MiB, from the board's data sheet.
    ddr_gbps: float = 0.0
    ddr_mb: int = 0
    #: 8-bit products one DSP slice computes per cycle when they share an operand (2 on a
    #: DSP48E2/DSP58, 1 on a DSP48E1); the ``dsp_packing`` option overrides it.
    products_per_dsp: int = 1
    #: The activations the HLS conv/dense kernels apply in their output stage (fuse-bias-act
    #: fuses no other); absent: any.
    fused_activations: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GpuLimits:
    """A CUDA GPU as TensorRT sees it."""

    compute_capability: str
    precisions: tuple[GpuPrecision, ...]
    memory_gb: int
    workspace_mb: int
    dla_cores: int = 0
    sparsity: bool = False  # 2:4 structured sparsity in the tensor cores

    @property
    def sm(self) -> int:
        """The compute capability as one number: ``"9.0"`` -> 90."""
        major, minor = self.compute_capability.split(".")
        return int(major) * 10 + int(minor)


@dataclass(frozen=True)
class CpuLimits:
    """A CPU as LLVM (through TVM) sees it. ``mcpu`` is always a named CPU, never ``native``."""

    mtriple: str
    mcpu: str
    mattr: tuple[str, ...]
    cores: int
    vector_bits: int
    #: Architectural vector registers (16 ymm with AVX2, 32 zmm with AVX-512, 32 NEON v-regs):
    #: how many accumulators a register-blocked kernel may keep.
    vector_regs: int = 16
    has_vnni: bool = False
    kind: Literal["llvm"] = "llvm"
    peak_gflops_fp32: float | None = None
    #: Main memory in MiB (0: unknown, not checked); pipeline stages are cut to fit it.
    memory_mb: int = 0


@dataclass(frozen=True)
class HostTarget:
    """The code generator for the host side of an accelerator (TVM target kind)."""

    kind: Literal["c", "llvm"]
    mtriple: str | None = None
    mcpu: str | None = None


@dataclass(frozen=True)
class AsicLimits:
    """A fixed-function accelerator: a systolic array with on-chip SRAM and a host CPU."""

    array_rows: int
    array_cols: int
    sram_kib: int
    clock_mhz: float
    supported_ops: tuple[str, ...]
    host_target: HostTarget
    #: The fused activations the array's output stage applies (others run on the host).
    fused_activations: tuple[str, ...] = ("none",)
    #: The array cells' accumulator: a layer whose accumulator differs runs on the host.
    accumulator_dtype: DType = "i32"


@dataclass(frozen=True)
class Target:
    """One hardware target. ``source_file`` and ``alias_of`` are set by the loader, not keys."""

    name: str
    backend: Backend
    description: str
    pipeline: tuple[str, ...]
    numerics: Numerics
    fpga: FpgaLimits | None = None
    gpu: GpuLimits | None = None
    cpu: CpuLimits | None = None
    asic: AsicLimits | None = None
    source_file: str = ""
    alias_of: str | None = None
    datasheet: tuple[str, ...] = ()  # the documents the numbers came from
    #: For ``backend = "multi"``: the targets a model is partitioned across, in order of
    #: preference (each node goes to the first one whose backend takes it).
    devices: tuple[str, ...] = ()

    def memory_bytes(self) -> int | None:
        """The memory a model's weights and activations live in, as the target file states
        it (``[cpu] memory_mb``, ``[gpu] memory_gb`` or ``[fpga] ddr_mb``: the first one
        given counts), or None."""
        stated = (
            (self.cpu.memory_mb if self.cpu is not None else 0) * 2**20,
            (self.gpu.memory_gb if self.gpu is not None else 0) * 2**30,
            (self.fpga.ddr_mb if self.fpga is not None else 0) * 2**20,
        )
        return next((int(amount) for amount in stated if amount), None)

    def tvm_target(self) -> dict[str, Any]:
        """The TVM target as a dict (TVM 0.27 takes dicts): the CPU, or an ASIC's host."""
        if self.cpu is not None:
            cpu = self.cpu
            return {
                "kind": cpu.kind,
                "mtriple": cpu.mtriple,
                "mcpu": cpu.mcpu,
                "mattr": list(cpu.mattr),
            }
        if self.asic is not None:
            host = self.asic.host_target
            extra = {"mtriple": host.mtriple, "mcpu": host.mcpu}
            return {"kind": host.kind, **{k: v for k, v in extra.items() if v is not None}}
        raise TargetError(
            f"target {self.name!r} (backend {self.backend}) has no [cpu] table, "
            "so it has no TVM target"
        )


@dataclass(frozen=True)
class TargetInfo:
    """One line of ``list_targets()``."""

    name: str
    backend: str
    description: str
    alias_of: str | None


def targets_dir() -> Path:
    """The folder of the shipped ``*.toml`` files (the installed ``targets`` package)."""
    root = resources.files("targets")
    if not isinstance(root, Path):
        raise TargetError(f"the targets package is not in a folder on disk: {root}")
    return root


def available() -> list[str]:
    """Names of the shipped targets, sorted."""
    return sorted(path.stem for path in targets_dir().glob("*.toml"))


def load_target(target: str | Path | Target | Sequence[str | Path | Target]) -> Target:
    """A target by name (``"zcu104"``), by path to any ``.toml``, or a ``Target`` as is; a list
    of them (or names joined by ``+``: ``"zcu104+cpu"``) is one ``multi`` target whose model is
    partitioned across those devices (``compiler.multi``).

    Loaded once per resolved path and process: a file edited afterwards is not re-read.
    """
    if isinstance(target, Target):
        return target
    if isinstance(target, str) and "+" in target:
        target = target.split("+")
    if isinstance(target, str | Path):
        return _load_cached(_resolve(target).resolve())
    return combined_target([load_target(t) for t in target])


def combined_target(devices: Sequence[Target]) -> Target:
    """One ``multi`` target over ``devices``: the first one's pipeline and numerics (the model
    is compiled for it first; the others take what it cannot)."""
    if not devices:
        raise TargetError("a multi-device target needs at least one device")
    for device in devices:
        if device.backend == "multi":
            raise TargetError(f"target {device.name} is already multi-device; list its devices")
    first = devices[0]
    return replace(
        first,
        name="+".join(d.name for d in devices),
        backend="multi",
        description="partitioned across " + ", ".join(d.name for d in devices),
        devices=tuple(d.name for d in devices),
        alias_of=None,
    )


def list_targets() -> list[TargetInfo]:
    """Every shipped target, aliases included, sorted by name."""
    infos = []
    for name in available():
        target = load_target(name)
        infos.append(TargetInfo(target.name, target.backend, target.description, target.alias_of))
    return sorted(infos, key=lambda info: info.name)


def _resolve(target: str | Path) -> Path:
    if isinstance(target, Path) or target.endswith(".toml") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise TargetError(f"target file {path} does not exist")
        return path
    return _shipped(target, where="unknown target")


def _shipped(name: str, where: str) -> Path:
    path = targets_dir() / f"{name}.toml"
    if _NAME.match(name) and path.is_file():
        return path
    names = available()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TargetError(f"{where} {name!r}{hint}; available: {', '.join(names)}")


@cache
def _load_cached(path: Path) -> Target:
    return _load_file(path, ())


def _load_file(path: Path, chain: tuple[Path, ...]) -> Target:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise TargetError(f"{path}: cannot read target file: {err}") from None
    if "alias" in data:
        return _load_alias(path, data, chain)
    if isinstance(data.get("datasheet"), str):
        data["datasheet"] = [data["datasheet"]]  # one citation may be a plain string
    target = _build(Target, data, "", path, skip=("source_file", "alias_of"))
    target = replace(target, source_file=str(path))
    _check(target, path)
    return target


def _load_alias(path: Path, data: dict[str, Any], chain: tuple[Path, ...]) -> Target:
    unknown = sorted(set(data) - set(_ALIAS_KEYS))
    if unknown:
        raise TargetError(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))} in an alias "
            f"file; allowed keys: {', '.join(_ALIAS_KEYS)}"
        )
    for key in _ALIAS_KEYS:
        if key in data and not isinstance(data[key], str):
            raise TargetError(f"{path}: key {key!r}: expected a string, got {_got(data[key])}")
    chain = (*chain, path)
    if len(chain) > MAX_ALIAS_DEPTH:
        raise TargetError(
            f"{path}: key 'alias': more than {MAX_ALIAS_DEPTH} aliases in a row: "
            + " -> ".join(p.stem for p in chain)
        )
    alias: str = data["alias"]
    sibling = path.parent / f"{alias}.toml"
    if _NAME.match(alias) and sibling.is_file():
        next_path = sibling.resolve()
    else:
        next_path = _shipped(alias, where=f"{path}: key 'alias': unknown target").resolve()
    if next_path in chain:
        cycle = " -> ".join(p.stem for p in (*chain, next_path))
        raise TargetError(f"{path}: key 'alias': alias cycle {cycle}")
    real = _load_file(next_path, chain)
    return replace(
        real,
        name=data.get("name", path.stem),
        description=data.get("description", real.description),
        alias_of=real.alias_of or real.name,
    )


def _build(
    cls: type, table: dict[str, Any], prefix: str, path: Path, skip: tuple[str, ...] = ()
) -> Any:
    """``cls(**table)``, checking every key against the field's annotation."""
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise TargetError(
            f"{path}: unknown key(s) {', '.join(repr(prefix + k) for k in unknown)}"
            f"; allowed keys in {where}: {', '.join(sorted(known))}"
        )
    values = {}
    for name, field in known.items():
        key = prefix + name
        if name in table:
            values[name] = _convert(hints[name], table[name], key, path)
        elif field.default is MISSING and field.default_factory is MISSING:
            raise TargetError(
                f"{path}: missing required key {key!r} in {where} "
                f"(expected {_describe(hints[name])})"
            )
    return cls(**values)


def _convert(tp: Any, value: Any, key: str, path: Path) -> Any:
    """``value`` as type ``tp``, or a TargetError naming the file, key, expected and got."""
    tp = _strip_none(tp)
    origin = get_origin(tp)
    ok: bool
    if origin is Literal:
        ok = isinstance(value, str) and value in get_args(tp)
    elif origin is tuple:
        if isinstance(value, list):
            item_tp = get_args(tp)[0]
            return tuple(_convert(item_tp, v, f"{key}[{i}]", path) for i, v in enumerate(value))
        ok = False
    elif is_dataclass(tp):
        if isinstance(value, dict):
            return _build(tp, value, key + ".", path)  # type: ignore[arg-type]
        ok = False
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp in (int, float):  # hardware counts and clocks are never negative
        ok = (
            (isinstance(value, int) or tp is float and isinstance(value, float))
            and not isinstance(value, bool)
            and value >= 0
        )
        value = tp(value) if ok else value
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise TargetError(f"{path}: key {key!r}: expected {_describe(tp)}, got {_got(value)}")
    return value


def _describe(tp: Any) -> str:
    tp = _strip_none(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(tp))
    if origin is tuple:
        return f"an array of ({_describe(get_args(tp)[0])})"
    if is_dataclass(tp):
        return "a table"
    names = {
        bool: "a boolean",
        int: "a non-negative integer",
        float: "a non-negative number",
        str: "a string",
    }
    return names.get(tp, str(tp))


def _strip_none(tp: Any) -> Any:
    """``X | None`` -> ``X``: a key that may be left out has the type ``X`` when given."""
    if get_origin(tp) in (Union, types.UnionType):
        return next(arg for arg in get_args(tp) if arg is not type(None))
    return tp


def _got(value: Any) -> str:
    kinds = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"


def _check(target: Target, path: Path) -> None:
    """The rules that span keys, which the types alone cannot say."""
    table = BACKEND_TABLE.get(target.backend)
    if table is not None and getattr(target, table) is None:
        raise TargetError(f"{path}: backend {target.backend!r} needs a [{table}] table")
    if table is not None and not target.datasheet:  # hardware numbers must say where from
        raise TargetError(
            f"{path}: missing required key 'datasheet' (the documents the "
            f"[{table}] numbers came from)"
        )
    numerics = target.numerics
    if numerics.precision not in numerics.allowed_precisions:
        raise TargetError(
            f"{path}: key 'numerics.precision': {numerics.precision!r} is not in "
            f"numerics.allowed_precisions {list(numerics.allowed_precisions)}"
        )
    for i, spec in enumerate(target.pipeline):
        if not _PASS_SPEC.match(spec):
            raise TargetError(
                f"{path}: key 'pipeline[{i}]': expected a pass spec like "
                f"'fold-batchnorm' or 'quantize{{bits=8}}', got {spec!r}"
            )
    if target.fpga is not None and target.fpga.clock_mhz <= 0:
        raise TargetError(f"{path}: key 'fpga.clock_mhz': must be positive")
    if target.gpu is not None and not re.fullmatch(r"\d+\.\d", target.gpu.compute_capability):
        raise TargetError(
            f"{path}: key 'gpu.compute_capability': expected 'major.minor' like "
            f"'9.0', got {target.gpu.compute_capability!r}"
        )
    if target.cpu is not None:
        if target.cpu.mcpu == "native":  # a build must not depend on the machine it ran on
            raise TargetError(
                f"{path}: key 'cpu.mcpu': 'native' is not allowed; name the CPU "
                "(e.g. 'haswell', 'znver3')"
            )
        bad = [attr for attr in target.cpu.mattr if attr[:1] not in ("+", "-")]
        if bad:
            raise TargetError(
                f"{path}: key 'cpu.mattr': expected '+feature' or '-feature', got {bad}"
            )
