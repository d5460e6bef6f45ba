"""One copy of the weights: ``weights.bin`` (``compiler.llm.weights``) and, on the cpu
target, the two TVM modules taking their large constants from it (``backends.tvm.weights``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.errors import IntegrityError
from compiler.llm.weights import ALIGN, WeightFile, write_weights


def test_weight_file_round_trip_stores_equal_arrays_once(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    a = rng.standard_normal((3, 5)).astype(np.float32)
    arrays: dict[str, np.ndarray] = {
        "a": a,
        "a_again": a.copy(),  # equal bytes, another object: one blob
        "b": rng.integers(-8, 8, (7,), dtype=np.int8),
        "c": np.float16(2.5) * np.ones((2, 2), np.float16),
        "scalar": np.array(3, np.int64),
        "empty": np.zeros((0, 4), np.float32),
        "flags": np.array([True, False, True]),
    }
    path = tmp_path / "w.bin"
    size = write_weights(path, arrays)
    assert path.stat().st_size == size
    got = WeightFile(path)
    assert set(got) == set(arrays) and got.blobs == len(arrays) - 1
    for name, want in arrays.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want)
        if got[name].size:
            assert got[name].ctypes.data % ALIGN == 0, name  # TVM borrows only aligned data
    assert got["a"] is got["a_again"]  # one blob, one array in memory
    got["a"][0, 0] = 99.0  # copy-on-write: the file keeps its bytes
    np.testing.assert_array_equal(WeightFile(path)["a"], a)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: p.unlink(), "cannot be read"),
        (lambda p: p.write_bytes(p.read_bytes()[:-10]), "damaged"),
        (lambda p: p.write_bytes(b"NOTOURS!" + p.read_bytes()[8:]), "bad header"),
        (lambda p: p.write_bytes(p.read_bytes()[:16] + b"}" + p.read_bytes()[17:]), "damaged"),
    ],
    ids=["missing", "truncated", "foreign", "bad-index"],
)
def test_a_damaged_weight_file_is_a_typed_error_naming_it(
    tmp_path: Path, damage: object, says: str
) -> None:
    path = tmp_path / "w.bin"
    write_weights(path, {"x": np.arange(100, dtype=np.float32)})
    damage(path)  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=says) as err:
        WeightFile(path)
    assert str(path) in str(err.value)


# ---- the cpu target ----------------------------------------------------------------------
@pytest.mark.tvm
def test_lifted_block_weights_run_bit_for_bit_from_params_bin(tmp_path: Path) -> None:
    """Every q.block_dense format with its packed arrays lifted out of model.so gives the
    interpreter's bits (as the build with them inside does: tests/backends/tvm), from the
    compile and from a reload; a damaged params.bin is named."""
    pytest.importorskip("tvm")
    from backends.tvm import TvmBackend
    from compiler.context import PassContext
    from compiler.interpreter import interpret
    from compiler.target import load_target
    from passes.quantize_llm import QuantizeLLM
    from tests.backends.tvm.test_block_dense import FORMATS, _graph

    rng = np.random.default_rng(3)
    graph, blocks = _graph(rng, 3, 32)
    QuantizeLLM(blocks=blocks).run(graph, PassContext())
    x = rng.standard_normal((1, 3, FORMATS[0][1])).astype(np.float32)
    target, folder = load_target("cpu"), tmp_path / "m"
    folder.mkdir()
    art = TvmBackend().compile(graph, target, folder, {"weights_file": True})
    params = art.meta["params"]  # type: ignore[attr-defined]
    weights = WeightFile(folder / params["file"])
    # At least the four weights' packed blocks (smaller arrays stay inside model.so).
    assert len(params["keys"]) >= 4 and set(params["keys"]) <= set(weights)
    largest = max(params["keys"], key=lambda k: weights[k].nbytes)
    assert weights[largest].tobytes()[:256] not in (folder / "model.so").read_bytes()
    want = interpret(graph, x)
    again = TvmBackend().load(folder, graph, target, {})
    for run in (art.run, again.run):
        for got, ref in zip(run(x), want, strict=True):
            np.testing.assert_array_equal(got, ref)
    # The graph's block weights, recomputed from the lifted packed arrays (an LLM artifact
    # stores the recipes instead of them): each weight placed, every recipe exact.
    from backends.tvm.weights import derive_constants

    recipes = derive_constants([graph], dict(weights))
    quantized = [n.inputs[1].producer.attrs["ref"] for n in graph.nodes if n.op == "q.block_dense"]
    assert len(quantized) == 4 and set(quantized) <= set(recipes)
    derived = {name: (graph.constants[name], recipe) for name, recipe in recipes.items()}
    write_weights(tmp_path / "w.bin", dict(weights), derived=derived)  # checks every recipe
    path = folder / params["file"]
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(IntegrityError, match="params.bin"):
        TvmBackend().load(folder, graph, target, {}).run(x)
