"""Targets as data: every shipped TOML loads, and every bad file fails naming file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args

import pytest

from compiler.errors import TargetError
from compiler.target import (
    BACKEND_TABLE,
    DType,
    Target,
    available,
    list_targets,
    load_target,
    targets_dir,
)

ALIASES = {"fpga": "zcu104", "cpu": "x86-64-avx2", "gpu": "a100", "asic": "npu-int8"}
EXPECTED = {
    "reference", "onnx", "zcu104", "kv260", "pynq-z2", "u250", "x86-64-avx2", "x86-64-avx512",
    "znver3", "aarch64", "npu-int8", "h100", "a100", "jetson-orin", *ALIASES,
}
FPGA_COUNTS = ("dsp", "bram18k", "lut", "ff", "default_reuse_factor")

GOOD = """\
name = "board"
backend = "hls"
description = "a test board"
datasheet = "DS000 made up for a test"
pipeline = ["fold-batchnorm", "quantize{bits=8,per_channel=true}"]

[numerics]
precision = "int8"
allowed_precisions = ["int8"]
weight_dtype = "i8"
activation_dtype = "i8"

[fpga]
part = "xc7z020clg400-1"
family = "zynq"
clock_mhz = 100
dsp = 220
bram18k = 280
uram = 0
lut = 53200
ff = 106400
"""


def write(tmp_path: Path, text: str, name: str = "board.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(TargetError) as info:
        load_target(path)
    return str(info.value)


@pytest.mark.parametrize("name", available())
def test_every_shipped_target_loads(name: str) -> None:
    target = load_target(name)
    assert target.name == name
    assert Path(target.source_file).is_file()
    assert target.pipeline and target.description
    table = BACKEND_TABLE.get(target.backend)
    if table is not None:
        assert getattr(target, table) is not None
        assert target.datasheet, f"{name}: hardware numbers without a datasheet"
        assert "datasheet" in Path(target.source_file).read_text()


def test_all_expected_targets_ship_and_are_listed() -> None:
    infos = list_targets()
    names = [info.name for info in infos]
    assert names == sorted(names)
    assert EXPECTED <= set(names)
    assert set(names) == set(available())
    assert {info.name: info.alias_of for info in infos if info.alias_of} == ALIASES


@pytest.mark.parametrize(("alias", "real"), sorted(ALIASES.items()))
def test_aliases_resolve(alias: str, real: str) -> None:
    target, original = load_target(alias), load_target(real)
    assert target.name == alias and target.alias_of == real
    assert target.source_file == original.source_file
    assert dataclasses.replace(target, name=real, alias_of=None) == original


def test_load_by_name_path_or_target_and_cache() -> None:
    target = load_target("zcu104")
    assert load_target("zcu104") is target
    assert load_target(targets_dir() / "zcu104.toml") is target
    assert load_target(str(targets_dir() / "zcu104.toml")) is target
    assert load_target(target) is target
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "other"  # type: ignore[misc]


def test_fpga_numbers_are_positive_integers() -> None:
    fpgas = [load_target(name) for name in available() if load_target(name).backend == "hls"]
    assert len(fpgas) >= 5
    for target in fpgas:
        fpga = target.fpga
        assert fpga is not None
        for key in FPGA_COUNTS:
            value = getattr(fpga, key)
            assert type(value) is int and value > 0, (target.name, key, value)
        assert type(fpga.uram) is int and fpga.uram >= 0
        assert fpga.bram18k % 2 == 0  # counted as halves of BRAM36 blocks
        assert fpga.clock_mhz > 0
        numerics = target.numerics
        assert numerics.weight_dtype == "i8" and numerics.power_of_two_scales
        assert fpga.products_per_dsp in (1, 2)  # DSP48E1: 1, DSP48E2 (WP486): 2
        assert numerics.layout == "NHWC"


def test_zcu104_matches_ds891() -> None:
    fpga = load_target("zcu104").fpga
    assert fpga is not None
    assert (fpga.dsp, fpga.bram18k, fpga.uram, fpga.lut, fpga.ff) == (
        1728, 624, 96, 230400, 460800)


def test_tvm_target_is_a_dict_without_native() -> None:
    cpus = [load_target(name) for name in available() if load_target(name).cpu is not None]
    assert {t.name for t in cpus} >= {"x86-64-avx2", "x86-64-avx512", "znver3", "aarch64"}
    for target in cpus:
        tvm = target.tvm_target()
        assert tvm["kind"] == "llvm" and set(tvm) == {"kind", "mtriple", "mcpu", "mattr"}
        assert isinstance(tvm["mattr"], list)
        assert "native" not in repr(tvm)
    assert load_target("x86-64-avx512").cpu.has_vnni  # type: ignore[union-attr]
    assert load_target("asic").tvm_target() == {"kind": "c"}
    with pytest.raises(TargetError, match="no \\[cpu\\] table"):
        load_target("zcu104").tvm_target()


@pytest.mark.tvm
def test_tvm_accepts_every_cpu_and_host_target() -> None:
    import tvm

    for name in available():
        target = load_target(name)
        if target.cpu is not None or target.asic is not None:
            parsed = tvm.target.Target(target.tvm_target())
            assert parsed.kind.name == target.tvm_target()["kind"]


def test_gpu_targets() -> None:
    assert load_target("h100").gpu.sm == 90  # type: ignore[union-attr]
    assert "fp8" in load_target("h100").gpu.precisions  # type: ignore[union-attr]
    assert load_target("jetson-orin").gpu.dla_cores == 2  # type: ignore[union-attr]


def test_numerics_dtypes_are_ir_dtypes() -> None:
    from compiler.ir.types import DTYPES

    assert set(get_args(DType)) <= DTYPES


def test_a_minimal_user_file_loads(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, GOOD))
    assert isinstance(target, Target) and target.name == "board"
    assert target.datasheet == ("DS000 made up for a test",)
    assert target.fpga is not None and target.fpga.clock_mhz == 100.0
    assert target.fpga.interface == "axis" and target.numerics.layout == "NCHW"


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('backend = "hls"', 'backend = "hls"\nspeed = 3', "speed", ["unknown", "allowed keys"]),
    ("dsp = 220", "dsps = 220", "fpga.dsps", ["unknown", "allowed keys", "dsp"]),
    ("[numerics]", "[numerics]\nbits = 8", "numerics.bits", ["unknown"]),
    ("dsp = 220", 'dsp = "220"', "fpga.dsp", ["expected a non-negative integer", "string"]),
    ("dsp = 220", "dsp = true", "fpga.dsp", ["integer", "boolean"]),
    ("dsp = 220", "dsp = -1", "fpga.dsp", ["non-negative"]),
    ("clock_mhz = 100", "clock_mhz = 0", "fpga.clock_mhz", ["positive"]),
    ('backend = "hls"', 'backend = "vivado"', "backend", ["one of", "'hls'", "vivado"]),
    ('weight_dtype = "i8"', 'weight_dtype = "int8"', "numerics.weight_dtype", ["'i8'"]),
    ('pipeline = ["fold-batchnorm", ', 'pipeline = [3, ', "pipeline[0]", ["string"]),
    ('pipeline = ["fold-batchnorm", ', 'pipeline = ["Fold BN", ', "pipeline[0]", ["pass spec"]),
    ("lut = 53200\n", "", "fpga.lut", ["missing required key", "integer"]),
    ('name = "board"\n', "", "name", ["missing required key"]),
    ('precision = "int8"', 'precision = "int16"', "numerics.precision", ["allowed_precisions"]),
    ('datasheet = "DS000 made up for a test"\n', "", "datasheet", ["missing"]),
    ("[fpga]", "[fpga_limits]", "fpga_limits", ["unknown"]),
])
def test_bad_file_names_file_and_key(
    tmp_path: Path, old: str, new: str, key: str, words: list[str]
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    message = load_error(path)
    assert str(path) in message and f"'{key}'" in message, message
    for word in words:
        assert word in message, message


def test_hls_backend_without_fpga_table(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.split("[fpga]")[0])
    message = load_error(path)
    assert str(path) in message and "[fpga]" in message


def test_cpu_native_is_refused(tmp_path: Path) -> None:
    text = (targets_dir() / "x86-64-avx2.toml").read_text().replace('"haswell"', '"native"')
    message = load_error(write(tmp_path, text))
    assert "'cpu.mcpu'" in message and "native" in message


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, "name = \n")
    assert str(path) in load_error(path)
    assert "does not exist" in load_error(tmp_path / "nope.toml")


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(TargetError) as info:
        load_target("zcu105")
    message = str(info.value)
    assert "zcu105" in message and "did you mean 'zcu104'" in message
    assert all(name in message for name in EXPECTED)
    with pytest.raises(TargetError, match="unknown target"):
        load_target("Not A Name")


def test_alias_to_a_shipped_target_from_anywhere(tmp_path: Path) -> None:
    target = load_target(write(tmp_path, 'alias = "pynq-z2"\n', "lab-board.toml"))
    assert (target.name, target.alias_of) == ("lab-board", "pynq-z2")


def test_alias_chain_resolves_to_the_last(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    write(tmp_path, 'alias = "board"\n', "mid.toml")
    target = load_target(write(tmp_path, 'alias = "mid"\ndescription = "x"\n', "top.toml"))
    assert (target.name, target.alias_of, target.description) == ("top", "board", "x")


def test_alias_cycle(tmp_path: Path) -> None:
    write(tmp_path, 'alias = "b"\n', "a.toml")
    path = write(tmp_path, 'alias = "a"\n', "b.toml")
    message = load_error(path)
    assert "'alias'" in message and "cycle" in message and "b -> a -> b" in message
    assert str(tmp_path) in message
    message = load_error(write(tmp_path, 'alias = "self"\n', "self.toml"))
    assert "cycle" in message


def test_alias_errors(tmp_path: Path) -> None:
    path = write(tmp_path, 'alias = "zcu104"\nbackend = "hls"\n', "x.toml")
    message = load_error(path)
    assert str(path) in message and "'backend'" in message and "allowed keys" in message
    message = load_error(write(tmp_path, 'alias = "zcu105"\n', "y.toml"))
    assert "'alias'" in message and "zcu105" in message and "available" in message
    message = load_error(write(tmp_path, "alias = 3\n", "z.toml"))
    assert "'alias'" in message and "integer" in message
