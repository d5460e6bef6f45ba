"""Packaging and CI wiring: what a fresh clone and CI rely on."""

from __future__ import annotations

import importlib.metadata
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAINS = ("torch", "onnx", "tvm", "tensorrt", "onnxruntime")


def test_import_compiler_loads_no_toolchain() -> None:
    """DESIGN.md: `import compiler` works without any toolchain, so none may load eagerly."""
    probe = (
        "import compiler, passes, backends, targets, sys; "
        f"print([m for m in {TOOLCHAINS!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", (
        f"importing the tapeout packages loaded toolchains {result.stdout.strip()}; "
        "import them lazily inside compiler/frontends/ or backends/<name>/"
    )


def _readme_commands() -> list[str]:
    """The commands of README.md's first code block, comments stripped."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("```"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    commands = [line.split("#", 1)[0].strip() for line in lines[start + 1 : end]]
    return [command for command in commands if command]


def _ci_commands() -> list[str]:
    """The commands .ci/run runs, less the shell setup (set, cd) and comments."""
    commands = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        command = line.split("#", 1)[0].strip()
        if command and not command.startswith(("set ", "cd ")):
            commands.append(command)
    return commands


def test_readme_leads_with_the_demo_and_test_commands() -> None:
    assert _readme_commands() == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_ci_runs_the_readme_test_command() -> None:
    """CI must run exactly what the README tells a developer to run, nothing more or less."""
    ci = [shlex.split(command) for command in _ci_commands()]
    assert ci == [shlex.split(_readme_commands()[1])]


def test_scripts_are_strict_bash() -> None:
    for script in [ROOT / ".ci" / "run", *sorted((ROOT / "scripts").glob("*.sh"))]:
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script
        assert "set -euo pipefail" in text, script
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{script}: {syntax.stderr}"


def test_tvm_ffi_stays_pinned() -> None:
    """apache-tvm-ffi 0.1.15 segfaults in MetaSchedule; the pin must not drift in a cleanup."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tvm_extra = pyproject["project"]["optional-dependencies"]["tvm"]
    assert "apache-tvm-ffi==0.1.14.post0" in tvm_extra
    assert "apache-tvm==0.27.0.post1" in tvm_extra


def test_setup_env_installs_the_cpu_torch_first() -> None:
    """Any torch request but the pinned on-disk CPU wheel downloads gigabytes of CUDA."""
    text = (ROOT / "scripts" / "setup_env.sh").read_text()
    torch_at = text.index('install -q "torch==$TORCH_VERSION"')
    assert 'TORCH_VERSION="2.13.0"' in text
    assert torch_at < text.index('install -q -e ".[dev,tvm]"')


def test_console_script_points_at_the_cli() -> None:
    try:
        importlib.metadata.distribution("tapeout")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tapeout is not installed in this interpreter; run bash scripts/setup_env.sh")
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="tapeout")
    assert script.value == "compiler.cli:main"
