"""The FPGA zoo end to end: ``compiler.compile(model, target="fpga")`` then C simulation.

The jet MLP, the digits CNN, a residual block and a MobileNet block are compiled once per
session (``tests/backends/hls/zoo.py``); that their C simulation equals the interpreter on
every output element is checked by the conformance test (tests/backends/test_conformance.py).
Here: the digits CNN stays within one point of float accuracy, the jet MLP meets its latency
goal, one model runs its testbench under ASan/UBSan, and the README's demo command runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import compiler
from backends.hls.artifact import HlsArtifact
from compiler.errors import UnsupportedOpsError
from compiler.interpreter import interpret
from tests.backends.hls.zoo import compiled_fpga
from tests.cases import CASES_FOR_FPGA, get_case
from tests.datasets import digits_split

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C simulation)")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", params=CASES_FOR_FPGA)
def zoo(request):
    name = request.param
    try:
        art = compiled_fpga(name)
    except UnsupportedOpsError as err:  # the quantizer left float ops the FPGA cannot take
        pytest.xfail(f"{name}: quantized graph is not all-integer: {err}")
    return name, get_case(name), art


def reference(graph, x: np.ndarray, chunk: int = 500) -> np.ndarray:
    """The interpreter on ``x`` (batches of a respecialized copy; checked against batch 1)."""
    from passes.quant.batching import respecialize

    outs = []
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        outs.append(interpret(respecialize(graph, len(part)), part)[0])
    batched = np.concatenate(outs)
    for s in range(min(3, len(x))):
        assert batched[s : s + 1].tobytes() == interpret(graph, x[s : s + 1])[0].tobytes()
    return batched


def test_digits_accuracy_within_one_point_of_float(zoo) -> None:
    name, case, art = zoo
    if name != "digits_cnn":
        pytest.skip("accuracy is checked on the digits CNN")
    _, _, x_test, y_test = digits_split()
    with torch.no_grad():
        float_acc = float(
            (case.build()(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
        )
    csim_acc = float((art.run(x_test)[0].argmax(1) == y_test).mean())
    assert csim_acc >= float_acc - 0.01, (csim_acc, float_acc)


def test_jet_mlp_meets_the_latency_goal(zoo) -> None:
    name, _, art = zoo
    if name != "jet_mlp":
        pytest.skip("the latency goal is the jet MLP's")
    s = art.summary
    assert s["latency_ns"] <= 100 and s["dsp"] <= s["dsp_budget"]


def test_testbench_under_sanitizers(zoo) -> None:
    name, _, art = zoo
    if name not in ("digits_cnn", "residual_block"):
        pytest.skip("one CNN and the residual block keep CI time modest")
    assert isinstance(art, HlsArtifact)
    result = art.run_testbench(sanitize=True)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "0 mismatching" in result.stdout


def test_readme_demo_command(tmp_path: Path, capsys) -> None:
    from compiler.cli import main

    out = tmp_path / "demo"
    code = main(
        [
            "compile",
            str(ROOT / "compiler/data/digits_cnn.onnx"),
            "--target",
            "fpga",
            "--calib",
            str(ROOT / "compiler/data/digits_calib.npz"),
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "latency_ns" in printed and "dsp_budget" in printed and "conv" in printed
    art = compiler.load(out)
    assert isinstance(art, HlsArtifact) and art.run_testbench().returncode == 0
    sample = np.load(ROOT / "compiler/data/digits_sample.npy").astype(np.float32)
    got = art.run(sample)[0]
    assert got.tobytes() == reference(art.graph, sample.reshape(-1, 1, 8, 8)).tobytes()
