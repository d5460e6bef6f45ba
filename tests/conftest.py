"""Shared pytest setup: toolchain-dependent skips, Hypothesis profiles, a seeded generator.

Tests marked ``gpu`` need TensorRT and a CUDA device; tests marked ``tvm`` need apache-tvm.
Where those are missing the tests skip and say why, so the CI machine (2 cores, no GPU) runs
everything else. The toolchain probes are lazy and run once, only if such tests were collected.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import settings

#: tests/fs_audit.py fails the session if a test writes outside its temporary folders.
pytest_plugins = ["tests.fs_audit"]

# Hypothesis' default 200 ms deadline fails tests on a busy 2-core CI machine for timing, not
# correctness. In CI (CI=true) examples are also derandomized, so a red run reproduces exactly.
# No example database: it would be written into the checkout (tests write only to temporary
# folders, see tests/fs_audit.py); print_blob=True prints what reproduces a failure instead.
settings.register_profile("tapeout", deadline=None, print_blob=True, database=None)
settings.register_profile("ci", parent=settings.get_profile("tapeout"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "tapeout")


@functools.cache
def _import_error(module: str) -> str | None:
    """Why ``module`` cannot be imported, or None if it can."""
    try:
        importlib.import_module(module)
    except Exception as error:  # an ImportError, or a broken native library raising anything
        return f"{type(error).__name__}: {error}"
    return None


@functools.cache
def _gpu_skip_reason() -> str | None:
    if (error := _import_error("tensorrt")) is not None:
        return f"needs TensorRT (pip install 'tapeout[tensorrt]'); import tensorrt failed: {error}"
    if (error := _import_error("torch")) is not None:
        return f"needs torch to find a CUDA device; import torch failed: {error}"
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA GPU; torch.cuda.is_available() is False"
    return None


@functools.cache
def _tvm_skip_reason() -> str | None:
    if (error := _import_error("tvm")) is not None:
        return f"needs apache-tvm (pip install 'tapeout[tvm]'); import tvm failed: {error}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps a cache of its own (``.hypothesis/constants``) beside the tests even
    without an example database, and matplotlib one in the home folder: give them a temporary
    home, removed at the end."""
    from hypothesis.configuration import set_hypothesis_home_dir

    home = tempfile.mkdtemp(prefix="tapeout-hypothesis-")
    config.stash[_HYPOTHESIS_HOME] = home
    set_hypothesis_home_dir(home)
    # matplotlib (imported by some libraries) writes a font cache under ~/.cache and a config
    # folder under ~/.config unless told otherwise: give it the same temporary home.
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(home, "matplotlib"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if home := config.stash.get(_HYPOTHESIS_HOME, None):
        shutil.rmtree(home, ignore_errors=True)


_HYPOTHESIS_HOME = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("gpu") is not None and (reason := _gpu_skip_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))
        if item.get_closest_marker("tvm") is not None and (reason := _tvm_skip_reason()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test (and every process it starts) caches under a temporary folder: a test
    never reads or writes the user's ``~/.cache/tapeout``."""
    os.environ["TAPEOUT_CACHE"] = str(tmp_path_factory.mktemp("tapeout-cache"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator seeded with 0: every test sees the same "random" data on every run."""
    return np.random.default_rng(0)
