"""The budget search (``compiler.search``): its cost model, loop, outputs and config file.

Small, seeded searches on the jet MLP (pynq-z2) and the digits CNN (kv260, from ONNX, by the
CLI): the chosen point respects every limit, the Pareto front is non-dominated, the written
``config.json`` compiles to exactly the design the search priced, and a budget nothing meets
says which resource is short and by how much.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

import compiler
from compiler.cli import main
from compiler.errors import BudgetError, InputError
from compiler.hwsearch.config import load_config
from compiler.hwsearch.cost import fpga_cost, resource_limits
from compiler.hwsearch.fit import import_for_search
from compiler.hwsearch.loop import SearchResult
from compiler.hwsearch.pareto import dominates
from compiler.hwsearch.space import Budget
from compiler.interpreter import interpret
from compiler.target import load_target
from tests.cases import DATA_DIR, get_case
from tests.datasets import digits_split, jet_split

JET_BUDGET = {"max_dsp": 120, "max_accuracy_drop": 2.0}


@cache
def _jet() -> tuple[np.ndarray, ...]:
    x_train, y_train, x_test, y_test = jet_split()
    return x_train[:2000], y_train[:2000], x_test[:600], y_test[:600]


@pytest.fixture(scope="module")
def jet_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchResult, Path]:
    x_train, y_train, x_test, y_test = _jet()
    out = tmp_path_factory.mktemp("search") / "out"
    result = compiler.search(
        get_case("jet_mlp").build(),
        "pynq-z2",
        JET_BUDGET,
        x_test,
        y_test,
        train=(x_train, y_train),
        output_dir=out,
        epochs=1,
    )
    return result, out


def test_budget_rejects_unknown_and_negative_keys() -> None:
    with pytest.raises(InputError, match="unknown budget key.*max_dsps"):
        Budget.of({"max_dsps": 3})
    with pytest.raises(InputError, match="max_dsp must be a number"):
        Budget.of({"max_dsp": -1})
    assert Budget.of({"max_dsp": 5, "max_lut": None}).limits() == {
        "max_dsp": 5,
        "max_accuracy_drop": 0.5,
    }


def test_cost_is_what_compile_reports() -> None:
    """The search prices a design with the numbers ``compile`` then reports."""
    x_train, _, x_test, _ = _jet()
    model = get_case("jet_mlp").build()
    art = compiler.compile(model, "pynq-z2", (torch.from_numpy(x_test[:1]),), x_train[:256])
    target = load_target("pynq-z2")
    cost = fpga_cost(art.graph, target, resource_limits(target, {}))
    assert (cost.dsp, cost.lut, cost.latency_ns) == (
        art.summary["dsp"],
        art.summary["lut"],
        art.summary["latency_ns"],
    )
    assert cost.reuse == art.summary["reuse_factors"] and cost.fits


def test_search_meets_the_budget(jet_search: tuple[SearchResult, Path]) -> None:
    result, _ = jet_search
    chosen = result.chosen
    assert chosen is not None and chosen.cost is not None and chosen.drop is not None
    assert chosen.cost.dsp <= JET_BUDGET["max_dsp"] and chosen.drop <= 2.0
    # The dense int8 start, with the backend's own reuse fit, is measured and no faster.
    assert result.baseline.cost is not None and not result.baseline.pruned
    assert chosen.cost.latency_ns <= result.baseline.cost.latency_ns
    # Every measured accuracy is the quantized graph's, recomputed here independently.
    x_test, y_test = _jet()[2:]
    assert chosen.graph is not None and chosen.accuracy is not None
    float_acc = np.mean(interpret(_batch(chosen.graph, x_test), x_test)[0].argmax(-1) == y_test)
    assert abs(100 * float_acc - 100 * chosen.accuracy) < 5  # float vs int8: close


def _batch(graph: compiler.ir.Graph, x: np.ndarray) -> compiler.ir.Graph:
    from passes.quant.batching import respecialize

    return respecialize(graph, len(x))


def test_front_is_non_dominated(jet_search: tuple[SearchResult, Path]) -> None:
    result, _ = jet_search
    front = result.front()
    assert front and result.chosen in result.measured
    for p in front:
        assert not any(dominates(q, p) for q in result.measured)
    for q in result.measured:
        if q not in front:
            assert any(dominates(p, q) for p in result.measured)
    table = result.table()
    assert "chosen" in table and "dense int8" in table


def test_config_round_trips_into_compile(jet_search: tuple[SearchResult, Path]) -> None:
    """``config.json`` compiles to the priced design, and the C-sim-exact graph matches the
    accuracy the search measured."""
    result, out = jet_search
    chosen = result.chosen
    assert chosen is not None and chosen.cost is not None
    assert (out / "pareto.txt").read_text().startswith("search on pynq-z2")
    config = load_config(out / "config.json")
    assert config.target == "pynq-z2" and config.options["reuse_factor"] == chosen.cost.reuse
    art = compiler.compile(str(out / "config.json"), output_dir=out.parent / "build2")
    assert art.summary["dsp"] == chosen.cost.dsp
    assert art.summary["latency_ns"] == chosen.cost.latency_ns
    assert art.summary["reuse_factors"] == chosen.cost.reuse
    x_test, y_test = _jet()[2:]
    logits = interpret(_batch(art.graph, x_test), x_test)[0]
    assert np.mean(logits.argmax(-1) == y_test) == pytest.approx(chosen.accuracy)
    # Pruned weights stay zero through fine-tuning and quantization.
    assert chosen.pruned
    zeros = sum(int(np.sum(v == 0)) for k, v in art.graph.constants.items() if "weight" in k)
    assert zeros > 0


def test_plot_written_or_skipped(jet_search: tuple[SearchResult, Path]) -> None:
    result, out = jet_search
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result.plot_path is None and not (out / "pareto.png").exists()
        return
    assert result.plot_path is not None
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_nothing_fits_names_the_short_resource(tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = _jet()
    budget = {"max_dsp": 3, "max_latency_ns": 50, "max_accuracy_drop": 100}
    with pytest.raises(BudgetError, match=r"DSP short by \d+ .*latency \(ns\) short by") as e:
        compiler.search(
            get_case("jet_mlp").build(),
            "pynq-z2",
            budget,
            x_test[:200],
            y_test[:200],
            train=(x_train[:500], y_train[:500]),
            epochs=1,
            output_dir=tmp_path / "out",
        )
    assert isinstance(e.value.result, SearchResult) and e.value.result.chosen is None
    # Only the table and plot are written: there is no configuration to compile.
    assert (tmp_path / "out" / "pareto.txt").exists()
    assert not (tmp_path / "out" / "config.json").exists()


def test_cli_search_from_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``tapeout search`` on the digits ONNX model, then ``tapeout compile config.json``."""
    x_train, y_train, x_test, y_test = digits_split()
    np.savez(tmp_path / "x.npz", x_test[:150])
    np.save(tmp_path / "y.npy", y_test[:150])
    np.savez(tmp_path / "xt.npz", x_train[:300])
    np.save(tmp_path / "yt.npy", y_train[:300])
    args = [
        str(DATA_DIR / "digits_cnn.onnx"),
        "--target",
        "kv260",
        "--max-dsp",
        "600",
        "--max-accuracy-drop",
        "100",
        "--data",
        str(tmp_path / "x.npz"),
        "--labels",
        str(tmp_path / "y.npy"),
        "--train-data",
        str(tmp_path / "xt.npz"),
        "--train-labels",
        str(tmp_path / "yt.npy"),
        "--epochs",
        "1",
        "-o",
        str(tmp_path / "out"),
        "--json",
    ]
    assert main(["search", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["estimate"]["dsp"] <= 600
    assert report["compiled"]["latency_ns"] == report["estimate"]["latency_ns"]
    code = main(["compile", report["config"], "-o", str(tmp_path / "b"), "--json"])
    compiled = json.loads(capsys.readouterr().out)
    assert code == 0 and compiled["summary"]["dsp"] == report["estimate"]["dsp"]


def test_cli_search_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 16), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    onnx = str(DATA_DIR / "digits_cnn.onnx")
    code = main(
        [
            "search",
            onnx,
            "-t",
            "kv260",
            "--data",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1 and "one integer label per input" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_search_needs_an_fpga_target() -> None:
    x_train, y_train, x_test, y_test = _jet()
    with pytest.raises(compiler.errors.TargetError, match="no \\[fpga\\] table"):
        compiler.search(get_case("jet_mlp").build(), "cpu", None, x_test, y_test)


def test_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text('{"tapeout": "something-else"}')
    with pytest.raises(InputError, match="not a tapeout compile config"):
        compiler.compile(str(bad))
    bad.write_text("{")
    with pytest.raises(InputError, match="cannot read compile config"):
        compiler.compile(str(bad))


def test_import_for_search_fixes_batch_one() -> None:
    x = digits_split()[2][:1]
    graph = import_for_search(str(DATA_DIR / "digits_cnn.onnx"), x)
    assert graph.inputs[0].type.shape == (1, 1, 8, 8)
