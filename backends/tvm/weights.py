"""Weights outside ``model.so``: large Relax constants lifted into parameters of ``main``.

A Relax VM executable embeds every constant of ``main`` in the library, and loading the
library copies them into memory. An LLM artifact has two modules (prefill and decode) over
the same weights, so they were on disk twice and in memory twice. With the TVM option
``weights_file=True`` the constants of at least ``MIN_BYTES`` (after constant folding and
packing: exactly the arrays the kernels read) become extra parameters of ``main``, after
the graph's inputs (the function's ``num_input`` attribute says where they start); the
arrays go into ``params.bin`` (``compiler.llm.weights``), keyed by their content, and
``tvm.json`` lists the keys in parameter order. At run the file is memory-mapped once, each
array is lent to TVM through DLPack (no copy) and ``BoundVM`` appends them to every call of
``main``. ``compile_llm`` moves the two modules' parameters into the artifact's one
``weights.bin``, where an array both modules read is stored once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from compiler.errors import BackendError
from compiler.llm.weights import digest

#: Constants smaller than this stay in the library (scalars, shapes, tiny tables): lending
#: them would cost more per call than they weigh.
MIN_BYTES = 1024


def lift_constants(mod: Any, min_bytes: int = MIN_BYTES) -> tuple[Any, list[tuple[str, Any]]]:
    """``mod`` with the constants of ``main`` of at least ``min_bytes`` turned into trailing
    parameters, and ``[(key, array)]`` in parameter order (equal arrays: one parameter)."""
    import tvm
    from tvm import relax

    lifted: dict[str, tuple[Any, np.ndarray]] = {}

    @relax.expr_functor.mutator
    class Lift(relax.PyExprMutator):
        def visit_generic_const_(self, op: Any) -> Any:
            data = op.value
            if not isinstance(data, tvm.runtime.Tensor):
                return op
            if not len(data.shape) or _nbytes(data) < min_bytes:
                return op
            array = data.numpy()
            key = digest(array)
            if key not in lifted:
                lifted[key] = (relax.Var(f"w{len(lifted)}", op.ty), array)
            return lifted[key][0]

    main = mod["main"]
    num_input = len(main.params)
    body = Lift(mod).visit_expr(main.body)
    params = [*main.params, *(var for var, _ in lifted.values())]
    func = relax.Function(params, body, main.ret_ty, main.is_pure, main.attrs)
    mod["main"] = func.with_attr("num_input", num_input)
    return mod, [(key, array) for key, (_, array) in lifted.items()]


def _nbytes(data: Any) -> int:
    shape = [int(d) for d in data.shape]
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(str(data.dtype)).itemsize


def lend(arrays: Mapping[str, np.ndarray], keys: list[str], where: str) -> list[Any]:
    """TVM tensors of ``arrays[key]`` for ``keys``, borrowed through DLPack (not copied:
    the weights file's memory, where a ``WeightFile`` read the streamed arrays into huge
    pages, ``WeightFile.resident``); a key the file lacks is a ``BackendError``."""
    import tvm

    missing = [k for k in keys if k not in arrays]
    if missing:
        raise BackendError(
            f"{where} lacks {len(missing)} of the {len(keys)} arrays model.so takes "
            f"(first: {missing[0]}): the artifact's files do not belong together"
        )
    resident = getattr(arrays, "resident", None)
    views = resident(keys) if resident is not None else [arrays[k] for k in keys]
    return [tvm.runtime.from_dlpack(a) for a in views]


class BoundVM:
    """A Relax VM whose ``main`` is called with the lifted weights appended."""

    def __init__(self, vm: Any, params: list[Any]):
        self.vm = vm
        self.params = tuple(params)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        func = self.vm[name]
        if name != "main" or not self.params:
            return func
        params = self.params
        return lambda *args: func(*args, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.vm, name)


#: The file ``compile`` writes the lifted constants into, in the artifact folder.
PARAMS_FILE = "params.bin"


def write_params(out_dir: Any, lifted: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """Write ``lifted`` into ``out_dir/params.bin``; the ``tvm.json`` entry that finds them."""
    from pathlib import Path

    from compiler.llm.weights import write_weights

    write_weights(Path(out_dir) / PARAMS_FILE, {TVM_KEY + k: a for k, a in lifted})
    return {"file": PARAMS_FILE, "keys": [TVM_KEY + k for k, _ in lifted]}


#: The prefix of a lifted array's name in a weights file (the rest is its content digest),
#: so that it never meets the name of a graph constant.
TVM_KEY = "tvm:"


# ---- graph constants recomputed from the packed arrays -----------------------------------
# An LLM's weight is in its artifact twice: as the graph's constant (the interpreter's form:
# a float matrix, or one 4-bit value per byte and scales per row) and packed for the kernel
# that reads it (``backends.tvm.kernels_blocks.pack``: two per byte in tiles of 16 rows;
# ``backends.tvm.kernels.pack_dense_weight``: tiles of T rows transposed). Only the packed
# form is read when generating; the graph's form only when the graph is parsed (the
# interpreter check of a loaded artifact). ``derive_constants`` finds where each such
# constant's rows lie in a lifted array; ``unpack`` recomputes it from there, and
# ``compile_llm`` stores the recipe instead of the array.

#: The ``kind`` of a recipe ``unpack`` follows (``compiler.llm.weights.DERIVED``).
PACKED = "tvm-packed"
_SCALES = {"f16": "float16", "f32": "float32"}


def unpack(recipe: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
           dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The graph constant (``shape``, ``dtype``) that ``recipe`` places in a packed array of
    ``arrays``, from its row ``row`` on: ``part`` "q" (a block weight stored ``q + offset``
    in ``bits``, ``kernels_blocks.pack``) or "rows" (tiles of ``T`` rows transposed,
    ``[tiles, columns, T]``: a float weight, or a block weight's scales or offsets)."""
    from backends.tvm.kernels_blocks import LANES

    source = arrays[recipe["array"]]
    lanes = LANES if recipe["part"] == "q" else source.shape[-1]
    rows, row = shape[0], int(recipe["row"])
    first = row // lanes
    packed = source[first : -(-(row + rows) // lanes)]
    tiles, start = packed.shape[0], row - first * lanes
    if recipe["part"] == "rows":
        full = packed.transpose(0, 2, 1).reshape(tiles * lanes, -1)
        return np.ascontiguousarray(full[start : start + rows]).astype(dtype).reshape(shape)
    values = packed.reshape(*packed.shape[:3], LANES, -1).transpose(0, 3, 1, 2, 4)
    if int(recipe["bits"]) == 4:  # low nibbles are the chunk's first 4 values
        values = np.concatenate([values & 15, values >> 4], axis=-1)
    full = values.reshape(tiles * LANES, -1)[start : start + rows]
    return (full.astype(np.int16) - int(recipe["offset"])).astype(dtype).reshape(shape)


#: One candidate: (constant name, its array, recipe fields, its first tile as packed alone).
Candidate = tuple[str, np.ndarray, dict[str, Any], np.ndarray]


def _block_candidates(node: Any, graph: Any, widths: set[int]) -> list[Candidate]:
    """A ``q.block_dense`` node's weight, scales and offsets, packed as its kernel packs them."""
    from backends.tvm.kernels_blocks import layout_for, pack

    refs = [v.producer.attrs["ref"] for v in node.inputs[1:]]
    q, *scales = (graph.constants[r] for r in refs)
    n, k = q.shape
    layout = layout_for(node.inputs[1].dtype, n, k, int(node.attrs["group"]), len(scales) > 1,
                        _SCALES.get(node.inputs[2].dtype, "float32"))  # fmt: skip
    packed = pack(layout, q, scales[0], scales[1] if len(scales) > 1 else None)
    parts = [{"part": "q", "bits": layout.bits, "offset": layout.offset}]
    parts += [{"part": "rows"}] * len(scales)
    return [(r, a, part, p[0]) for r, a, part, p in zip(refs, (q, *scales), parts, packed,
                                                          strict=True)]  # fmt: skip


def _dense_candidates(node: Any, graph: Any, widths: set[int]) -> list[Candidate]:
    """A float ``nn.dense`` weight ``[N, K]``, tiled as a kernel of each tile width packs it."""
    from backends.tvm.kernels import pack_dense_weight

    ref = node.inputs[1].producer.attrs["ref"]
    w = graph.constants[ref]
    if w.ndim != 2 or w.dtype != np.float32:
        return []
    return [(ref, w, {"part": "rows"}, pack_dense_weight(w[:t], t)[0]) for t in sorted(widths)]


#: op -> the constant operands (all of them constants) a kernel reads packed.
CANDIDATES = {"q.block_dense": _block_candidates, "nn.dense": _dense_candidates}


def derive_constants(graphs: Sequence[Any], lifted: Mapping[str, np.ndarray]
                     ) -> dict[str, dict[str, Any]]:
    """``{constant name: recipe}`` for the weights of ``graphs`` that ``unpack`` recomputes
    bit for bit from the ``lifted`` arrays (each recipe is checked so); a constant it
    cannot place is left out (stored as it is)."""
    index: dict[tuple, list[tuple[str, int]]] = {}
    for key, array in lifted.items():
        if array.ndim in (3, 4):
            for tile in range(array.shape[0]):
                index.setdefault(_slab_key(array[tile]), []).append((key, tile))
    widths = {int(a.shape[-1]) for a in lifted.values() if a.ndim == 3}
    recipes: dict[str, dict[str, Any]] = {}
    for graph in graphs:
        for node in graph.nodes:
            rule = CANDIDATES.get(node.op)
            consts = node.inputs[1:2] if node.op == "nn.dense" else node.inputs[1:]
            if rule is None or not all(v.is_const for v in consts):
                continue
            if {v.producer.attrs["ref"] for v in consts} <= set(recipes):
                continue
            for ref, want, part, first in rule(node, graph, widths):
                # An array a module reads as it is (a table it gathers from) is stored anyway.
                if ref not in recipes and TVM_KEY + digest(want) not in lifted:
                    found = _place(index.get(_slab_key(first), []), lifted, want, part)
                    if found is not None:
                        recipes[ref] = found
    return recipes


def _slab_key(slab: np.ndarray) -> tuple:
    return (slab.dtype.str, slab.shape, digest(slab))


def _place(candidates: list[tuple[str, int]], lifted: Mapping[str, np.ndarray],
           want: np.ndarray, part: dict[str, Any]) -> dict[str, Any] | None:
    """The first recipe among ``candidates`` (array, tile) that recomputes ``want``."""
    from backends.tvm.kernels_blocks import LANES

    for key, tile in candidates:
        lanes = LANES if part["part"] == "q" else lifted[key].shape[-1]
        if (tile * lanes + want.shape[0]) > lifted[key].shape[0] * lanes:
            continue
        recipe = {"kind": PACKED, "array": key, "row": tile * lanes, **part}
        got = unpack(recipe, lifted, want.dtype, want.shape)
        if got.tobytes() == np.ascontiguousarray(want).tobytes():
            return recipe
    return None
