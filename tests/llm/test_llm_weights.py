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


def _thp_eligible(address: int) -> bool | None:
    """``THPeligible`` of the mapping holding ``address`` in this process (None: not shown)."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    inside = False
    for line in smaps.read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "THPeligible:":
            return line.split()[1] == "1"
    return None


def test_resident_reads_the_streamed_arrays_into_huge_pages_once(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from compiler.llm import weights as module

    arrays = {
        "w": rng.standard_normal((64, 16384)).astype(np.float32),  # 4 MB: spans huge pages
        "w_again": None,
        "bias": rng.standard_normal(7).astype(np.float32),
        "table": rng.standard_normal((512, 64)).astype(np.float32),
    }
    arrays["w_again"] = arrays["w"].copy()
    path = tmp_path / "w.bin"
    write_weights(path, arrays, sparse=["table"])
    wf = WeightFile(path)
    before = wf["w"]  # a view of the mapping until resident moves it
    names = ["w", "bias", "table", "w_again"]
    got = wf.resident(names)
    for name, array in zip(names, got, strict=True):
        np.testing.assert_array_equal(array, arrays[name])
        assert array.ctypes.data % ALIGN == 0, name
    mapping = np.frombuffer(wf._map, np.uint8)  # type: ignore[arg-type]
    assert np.shares_memory(got[2], mapping)  # a sparse table stays mapped (rows on demand)
    assert got[0] is got[3] is wf["w"] and wf.resident(["w"])[0] is got[0]
    if not module._huge_pages():
        pytest.skip("no transparent huge pages to advise here: resident is the mapping")
    assert not np.shares_memory(got[0], mapping) and not np.shares_memory(got[1], mapping)
    assert not np.shares_memory(got[0], before)
    assert len(wf._arenas) == 1  # both streamed blobs in one arena; the second call read none
    assert _thp_eligible(got[0].ctypes.data) in (True, None)


def test_resident_without_huge_pages_is_the_mapping(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPEOUT_HUGE_PAGES", "0")
    w = rng.standard_normal((64, 64)).astype(np.float32)
    path = tmp_path / "w.bin"
    write_weights(path, {"w": w})
    wf = WeightFile(path)
    (got,) = wf.resident(["w"])
    np.testing.assert_array_equal(got, w)
    assert np.shares_memory(got, np.frombuffer(wf._map, np.uint8))  # type: ignore[arg-type]
    assert not wf._arenas


def test_resident_of_a_file_cut_short_or_removed_after_loading_is_a_typed_error(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from compiler.llm import weights as module

    if not module._huge_pages():
        pytest.skip("no transparent huge pages here: resident reads nothing")
    path = tmp_path / "w.bin"
    write_weights(path, {"w": rng.standard_normal((64, 64)).astype(np.float32)})
    wf = WeightFile(path)
    with open(path, "r+b") as f:  # another program truncates it while it is loaded
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(IntegrityError, match="past the end"):
        wf.resident(["w"])
    path.unlink()  # or removes it
    with pytest.raises(IntegrityError, match="cannot be read"):
        wf.resident(["w"])
