"""Every key a target file may hold is read by the code: the schema (the dataclasses of
``compiler.target``) lists each key with the module that reads it, and the test checks that
each field is listed and that its module does read it. Together with the loader refusing a
key the schema lacks (``tests/test_target.py``), no number in ``targets/*.toml`` is dead."""

from __future__ import annotations

import re
from dataclasses import fields
from functools import cache
from pathlib import Path

import pytest

from compiler import target as t
from compiler.target import available, load_target

ROOT = Path(__file__).resolve().parents[1]
#: Set by the loader, not keys of a file.
NOT_KEYS = {"Target.source_file", "Target.alias_of"}
#: Class.field -> the file that reads it (as ``.field``).
READERS: dict[str, str] = {
    "Target.name": "compiler/cli.py",
    "Target.backend": "compiler/api.py",
    "Target.description": "compiler/target.py",
    "Target.pipeline": "compiler/api.py",
    "Target.numerics": "passes/quant/driver.py",
    "Target.fpga": "backends/hls/backend.py",
    "Target.gpu": "backends/tensorrt/plan.py",
    "Target.cpu": "backends/tvm/schedules.py",
    "Target.asic": "backends/asic/__init__.py",
    "Target.datasheet": "compiler/target.py",
    "Target.devices": "compiler/multi.py",
    "Numerics.precision": "backends/tensorrt/plan.py",
    "Numerics.allowed_precisions": "compiler/api.py",
    "Numerics.weight_dtype": "passes/quant/rewrite.py",
    "Numerics.activation_dtype": "passes/quant/plan.py",
    "Numerics.power_of_two_scales": "passes/quant/driver.py",
    "Numerics.layout": "passes/convert_layout.py",
    "Numerics.island_dtype": "passes/quant/driver.py",
    "Numerics.integer_ops": "passes/quant/driver.py",
    "FpgaLimits.part": "backends/hls/project.py",
    "FpgaLimits.family": "backends/hls/project.py",
    "FpgaLimits.clock_mhz": "backends/hls/project.py",
    "FpgaLimits.dsp": "backends/hls/reuse.py",
    "FpgaLimits.bram18k": "backends/hls/reuse.py",
    "FpgaLimits.uram": "backends/hls/engine/config.py",
    "FpgaLimits.lut": "backends/hls/reuse.py",
    "FpgaLimits.ff": "backends/hls/project.py",
    "FpgaLimits.interface": "backends/hls/plan.py",
    "FpgaLimits.default_reuse_factor": "compiler/tools/check.py",
    "FpgaLimits.ddr_gbps": "backends/hls/engine/compile.py",
    "FpgaLimits.ddr_mb": "backends/hls/engine/compile.py",
    "FpgaLimits.products_per_dsp": "backends/hls/engine/config.py",
    "FpgaLimits.fused_activations": "passes/fuse_bias_act.py",
    "GpuLimits.compute_capability": "backends/tensorrt/plan.py",
    "GpuLimits.precisions": "backends/tensorrt/plan.py",
    "GpuLimits.memory_gb": "backends/tensorrt/plan.py",
    "GpuLimits.workspace_mb": "backends/tensorrt/plan.py",
    "GpuLimits.dla_cores": "backends/tensorrt/plan.py",
    "GpuLimits.sparsity": "backends/tensorrt/plan.py",
    "CpuLimits.mtriple": "compiler/target.py",
    "CpuLimits.mcpu": "compiler/target.py",
    "CpuLimits.mattr": "backends/tvm/schedules.py",
    "CpuLimits.cores": "backends/tvm/build.py",
    "CpuLimits.vector_bits": "backends/tvm/schedules.py",
    "CpuLimits.vector_regs": "backends/tvm/schedules.py",
    "CpuLimits.has_vnni": "backends/tvm/schedules.py",
    "CpuLimits.kind": "compiler/target.py",
    "CpuLimits.peak_gflops_fp32": "backends/tvm/__init__.py",
    "CpuLimits.memory_mb": "compiler/target.py",
    "HostTarget.kind": "compiler/target.py",
    "HostTarget.mtriple": "compiler/target.py",
    "HostTarget.mcpu": "compiler/target.py",
    "AsicLimits.array_rows": "backends/asic/partition.py",
    "AsicLimits.array_cols": "backends/asic/partition.py",
    "AsicLimits.sram_kib": "backends/asic/build.py",
    "AsicLimits.clock_mhz": "backends/asic/__init__.py",
    "AsicLimits.supported_ops": "backends/asic/partition.py",
    "AsicLimits.host_target": "compiler/target.py",
    "AsicLimits.fused_activations": "backends/asic/partition.py",
    "AsicLimits.accumulator_dtype": "backends/asic/partition.py",
}
SCHEMA = (t.Target, t.Numerics, t.FpgaLimits, t.GpuLimits, t.CpuLimits, t.HostTarget,
          t.AsicLimits)


@cache
def _source(path: str) -> str:
    return (ROOT / path).read_text()


def _schema_keys() -> list[str]:
    return [f"{cls.__name__}.{f.name}" for cls in SCHEMA for f in fields(cls)
            if f"{cls.__name__}.{f.name}" not in NOT_KEYS]


def test_every_schema_key_has_a_reader() -> None:
    keys = _schema_keys()
    assert sorted(set(keys) - set(READERS)) == [], "a key nobody reads: read it or remove it"
    assert sorted(set(READERS) - set(keys)) == [], "READERS names a key the schema lacks"


@pytest.mark.parametrize("key", sorted(READERS))
def test_the_reader_reads_the_key(key: str) -> None:
    field = key.split(".", 1)[1]
    assert re.search(rf"\.{field}\b", _source(READERS[key])), f"{READERS[key]} does not read {key}"


def _file_keys(table: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in table.items():
        out.add(prefix + key)
        if isinstance(value, dict):
            out |= _file_keys(value, f"{prefix}{key}.")
    return out


def test_every_key_of_every_shipped_file_is_in_the_schema() -> None:
    import tomllib

    sections = {"numerics": t.Numerics, "fpga": t.FpgaLimits, "gpu": t.GpuLimits,
                "cpu": t.CpuLimits, "asic": t.AsicLimits, "asic.host_target": t.HostTarget}
    for name in available():
        load_target(name)  # the loader refuses unknown keys; this also checks the types
        data = tomllib.loads((ROOT / "targets" / f"{name}.toml").read_text())
        if "alias" in data:
            continue
        for dotted in _file_keys(data):
            section, _, key = dotted.rpartition(".")
            cls = sections.get(section, t.Target) if section else t.Target
            if dotted in sections:
                continue
            assert f"{cls.__name__}.{key}" in READERS, f"{name}.toml: {dotted}"


def test_hardware_numbers_reach_the_code_from_the_file() -> None:
    """The numbers that moved out of Python: a changed file changes what the code uses."""
    import dataclasses

    from backends.hls.engine.config import EngineConfig, resources
    from backends.tvm.schedules import cpu_params

    cpu = load_target("x86-64-avx512")
    assert cpu.cpu is not None and cpu_params(cpu).vector_regs == cpu.cpu.vector_regs == 32
    fewer = dataclasses.replace(cpu, cpu=dataclasses.replace(cpu.cpu, vector_regs=16))
    assert cpu_params(fewer).max_accumulators < cpu_params(cpu).max_accumulators
    fpga = load_target("zcu104").fpga
    assert fpga is not None and fpga.products_per_dsp == 2
    cfg = EngineConfig("B1024", 8, 8, 8)
    one = dataclasses.replace(fpga, products_per_dsp=1)
    assert resources(cfg, one, True)["dsp"] == 2 * resources(cfg, fpga, True)["dsp"]
