"""What a loaded LLM artifact keeps: its step graphs unparsed until something looks inside
(``compiler.llm.saved_graph``), its interpreter-form weights encoded on disk
(``compiler.llm.weights.CODECS``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from compiler.errors import IntegrityError
from compiler.ir import Graph
from compiler.ir.parser import parse
from compiler.ir.types import TensorType
from compiler.llm.saved_graph import SavedGraph
from compiler.llm.weights import VERSION_CODECS, WeightFile, write_weights


def _step_graph() -> tuple[str, dict[str, np.ndarray]]:
    """A small graph with two inputs, a constant and two outputs, as IR text."""
    graph = Graph("step")
    x = graph.add_input("input_ids", TensorType("f32", (1, 4)))
    cache = graph.add_input("past_key_0", TensorType("f32", (1, 4)))
    w = graph.add_const("model.w", np.arange(16, dtype=np.float32).reshape(4, 4))
    (y,) = graph.add_node("nn.dense", [x, w]).outputs
    (z,) = graph.add_node("math.add", [y, cache]).outputs
    graph.outputs = [y, z]
    return str(graph), dict(graph.constants)


def test_saved_graph_has_its_signature_without_a_parse() -> None:
    text, constants = _step_graph()
    want = parse(text, constants)
    touched: list[str] = []

    class Watched(dict):  # records which constants the parse reads
        def __getitem__(self, key: str) -> np.ndarray:
            touched.append(key)
            return super().__getitem__(key)

    saved = SavedGraph(text, Watched(constants))
    assert not saved.parsed and not touched
    assert saved.name == want.name
    assert [(v.name, v.type) for v in saved.inputs] == [(v.name, v.type) for v in want.inputs]
    assert [(v.name, v.type) for v in saved.outputs] == [(v.name, v.type) for v in want.outputs]
    assert not saved.parsed and not touched
    assert len(saved.nodes) == len(want.nodes)  # the first look inside parses it
    assert saved.parsed and touched == ["model.w"]
    assert str(saved) == text
    assert saved.outputs[0].producer is saved.nodes[1]  # the parse's values from now on
    assert saved.constants["model.w"] is constants["model.w"]


def test_saved_graph_of_bad_text_is_the_parsers_error() -> None:
    from compiler.errors import ParseError

    with pytest.raises(ParseError):
        SavedGraph("graph @g(%x: f32[1]) -> (f32[1]) {\n  return %y, %x\n}\n", {})
    with pytest.raises(ParseError):
        SavedGraph("", {})


def _index(path: Path) -> dict:
    data = path.read_bytes()
    length = struct.unpack("<8sQ", data[:16])[1]
    return dict(json.loads(data[16 : 16 + length]))


def test_four_bit_arrays_no_runtime_maps_are_stored_two_per_byte(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    arrays = {
        "nib_u": rng.integers(0, 16, (33, 7), dtype=np.uint8),  # odd count: a padded byte
        "nib_i": rng.integers(-8, 8, (64, 32), dtype=np.int8),
        "i8": rng.integers(-128, 128, (64, 32), dtype=np.int8),  # no codec fits
        "mapped": rng.integers(0, 16, (64, 32), dtype=np.uint8),
        "tvm:mapped": None,  # the same array under a name a runtime maps: stays as it is
        "f32": rng.standard_normal((8, 8)).astype(np.float32),
    }
    arrays["tvm:mapped"] = arrays["mapped"].copy()
    compact = {"nib_u", "nib_i", "i8", "mapped", "f32"}
    path = tmp_path / "w.bin"
    write_weights(path, arrays, compact=compact)  # type: ignore[arg-type]
    plain = tmp_path / "plain.bin"
    write_weights(plain, arrays)  # type: ignore[arg-type]
    got = WeightFile(path)
    for name, want in arrays.items():
        assert want is not None
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want)
    assert got["mapped"] is got["tvm:mapped"]
    index = _index(path)
    assert index["version"] == VERSION_CODECS
    encoded = {index["arrays"][n][0] for n in ("nib_u", "nib_i")}
    assert {int(b) for b in index["codecs"]} == encoded
    saved = (33 * 7 - 116) + 64 * 32 // 2
    assert plain.stat().st_size - path.stat().st_size >= saved - 2 * 64
    assert _index(plain)["version"] == 1  # nothing encoded: the format older readers take
    # A codec this reader does not know is refused.
    data = path.read_bytes().replace(b'"u4"', b'"x9"', 1)
    path.write_bytes(data)
    with pytest.raises(IntegrityError, match="codec"):
        WeightFile(path)


def _block_graph(rng: np.random.Generator, rows: list[int], k: int = 64) -> Graph:
    """Sibling ``q.block_dense`` nodes (u4 weights, f16 scales and offsets, group 32) that
    read one input, as a layer's q/k/v projections do."""
    graph = Graph("blocks")
    x = graph.add_input("x", TensorType("f32", (1, k)))
    outs = []
    for i, n in enumerate(rows):
        q = graph.add_const(f"w{i}_q", rng.integers(0, 16, (n, k), dtype=np.uint8),
                            TensorType("u4", (n, k)))  # fmt: skip
        d = graph.add_const(f"w{i}_d", rng.random((n, k // 32)).astype(np.float16))
        m = graph.add_const(f"w{i}_m", -rng.random((n, k // 32)).astype(np.float16))
        outs += graph.add_node("q.block_dense", [x, q, d, m], {"group": 32}).outputs
    graph.outputs = outs
    return graph


@pytest.mark.parametrize("rows", [[32, 48, 16], [20, 48]], ids=["whole-tiles", "split-tile"])
def test_block_weights_are_recomputed_from_the_packed_kernel_operands(
    tmp_path: Path, rng: np.random.Generator, rows: list[int]
) -> None:
    from backends.tvm.kernels_blocks import layout_for, pack
    from backends.tvm.weights import derive_constants

    graph = _block_graph(rng, rows)
    consts = graph.constants
    k = 64
    # What the lowering lifts: the siblings' rows packed together (backends/tvm/lower_llm.py).
    joined = [np.concatenate([consts[f"w{i}_{p}"] for i in range(len(rows))]) for p in "qdm"]
    layout = layout_for("u4", sum(rows), k, 32, True, "float16")
    lifted = dict(zip(["tvm:w", "tvm:d", "tvm:m"], pack(layout, *joined), strict=True))
    recipes = derive_constants([graph], lifted)
    # A sibling whose rows start inside a 16-row tile shares that tile: not placed, stored.
    placed = [i for i in range(len(rows)) if sum(rows[:i]) % 16 == 0]
    assert set(recipes) == {f"w{i}_{p}" for i in placed for p in "qdm"}
    derived = {name: (consts[name], recipe) for name, recipe in recipes.items()}
    path = tmp_path / "w.bin"
    kept = {n: a for n, a in consts.items() if n not in derived}
    write_weights(path, {**kept, **lifted}, derived=derived)
    got = WeightFile(path)
    assert set(got) == set(consts) | set(lifted)
    for name, want in consts.items():
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want)
    stored = sum(a.nbytes for a in lifted.values()) + sum(a.nbytes for a in kept.values())
    assert path.stat().st_size < stored + 64 * (len(lifted) + len(kept)) + 4096
    # A recipe that does not give its array is refused when the file is written.
    wrong = {"w0_d": (consts["w0_d"] + 1, recipes["w0_d"])}
    with pytest.raises(IntegrityError, match="w0_d"):
        write_weights(tmp_path / "bad.bin", lifted, derived=wrong)


def test_saved_graph_keeps_the_signature_values_a_caller_took_before_the_parse() -> None:
    import compiler

    text, constants = _step_graph()
    saved = SavedGraph(text, constants)
    inputs, outputs = list(saved.inputs), list(saved.outputs)
    x = np.ones((1, 4), np.float32)
    (want_y, want_z) = compiler.interpret(parse(text, constants), x, x)
    got_y, got_z = compiler.interpret(saved, x, x)  # takes the inputs, then parses
    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_z, want_z)
    assert saved.inputs == inputs and saved.outputs == outputs  # the same objects
    assert outputs[0].producer is saved.nodes[1] and saved.nodes[2].inputs[0] is outputs[0]
    three = text.replace("return %dense, %add", "return %input_ids, %add, %add")
    three = three.replace("-> (f32[1,4], f32[1,4])", "-> (f32[1,4], f32[1,4], f32[1,4])")
    returned = SavedGraph(three, constants)
    assert returned.outputs[0] is returned.inputs[0] and returned.outputs[1] is returned.outputs[2]
    assert len(returned.nodes) == 3 and returned.outputs[0] is returned.inputs[0]


def test_float_dense_weights_are_recomputed_from_their_tiled_copies(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    from backends.tvm.kernels import pack_dense_weight
    from backends.tvm.weights import TVM_KEY, derive_constants
    from compiler.llm.weights import digest

    graph = Graph("dense")
    x = graph.add_input("x", TensorType("f32", (1, 48)))
    shapes = {"q": 64, "k": 32, "table": 40}
    for name, n in shapes.items():
        w = graph.add_const(name, rng.standard_normal((n, 48)).astype(np.float32))
        graph.outputs += graph.add_node("nn.dense", [x, w]).outputs
    consts = graph.constants
    # q and k packed together in tiles of 32 (the GEMV kernel), k alone in tiles of 16 too
    # (a TE dense), and the table lent as it is (a gather reads it): stored, never derived.
    lifted = {
        "tvm:qk": pack_dense_weight(np.concatenate([consts["q"], consts["k"]]), 32),
        "tvm:k16": pack_dense_weight(consts["k"], 16),
        TVM_KEY + digest(consts["table"]): consts["table"],
    }
    recipes = derive_constants([graph], lifted)
    assert set(recipes) == {"q", "k"} and recipes["k"]["row"] in (0, 64)
    derived = {name: (consts[name], recipe) for name, recipe in recipes.items()}
    path = tmp_path / "w.bin"
    write_weights(path, {"table": consts["table"], **lifted}, derived=derived)
    got = WeightFile(path)
    for name, want in consts.items():
        np.testing.assert_array_equal(got[name], want)
        assert got[name].dtype == want.dtype


def test_a_saved_gguf_tokenizer_reads_its_merges_only_to_encode(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    pytest.importorskip("gguf", reason="the tiny GGUF file needs the gguf package")
    from compiler.frontends.gguf import read_gguf
    from compiler.llm.tokenizer import SavedGgufTokenizer, load_tokenizer, save_tokenizer
    from tests.frontends.test_gguf import _write

    _write(tmp_path / "tiny.gguf", rng)
    original = read_gguf(tmp_path / "tiny.gguf").tokenizer()
    kind = save_tokenizer(original, tmp_path / "tok")
    saved = load_tokenizer(str(kind), tmp_path / "tok")
    assert isinstance(saved, SavedGgufTokenizer)
    text = "hello world, hello"
    ids = original.encode(text)
    assert saved.decode(ids) == original.decode(ids) and saved.eos_id == original.eos_id
    assert saved._full is None  # decoding read the vocabulary only
    assert saved.encode(text) == ids and saved.decode(ids) == original.decode(ids)
    assert dict(saved.merges.items()) == original.merges  # type: ignore[attr-defined]
    again = tmp_path / "again"  # an artifact saved from a loaded one keeps the tokenizer
    assert save_tokenizer(saved, again) == kind
    assert load_tokenizer(str(kind), again).encode(text) == ids


def test_a_gathered_table_is_marked_and_still_reads_back(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    table = rng.standard_normal((4096, 64)).astype(np.float32)  # 1 MB: more than a page
    other = rng.standard_normal((64, 64)).astype(np.float32)
    path = tmp_path / "w.bin"
    write_weights(path, {"embed": table, "tvm:embed": table.copy(), "w": other},
                  sparse={"embed"})  # fmt: skip
    index = _index(path)
    assert index["sparse"] == [index["arrays"]["embed"][0]] and index["version"] == 2
    got = WeightFile(path)  # advised: small pages, no readahead, its cached pages dropped
    np.testing.assert_array_equal(got["tvm:embed"][[5, 4000]], table[[5, 4000]])
    np.testing.assert_array_equal(got["w"], other)
