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
    """TVM tensors of ``arrays[key]`` for ``keys``, borrowed through DLPack (the memory map
    of the weights file, not a copy); a key the file lacks is a ``BackendError``."""
    import tvm

    missing = [k for k in keys if k not in arrays]
    if missing:
        raise BackendError(
            f"{where} lacks {len(missing)} of the {len(keys)} arrays model.so takes "
            f"(first: {missing[0]}): the artifact's files do not belong together"
        )
    return [tvm.runtime.from_dlpack(arrays[k]) for k in keys]


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
# A ``q.block_dense`` weight is in an LLM artifact twice: as the graph's constants (the
# interpreter's form: one 4-bit value per byte, scales per row) and packed for the kernel
# (``backends.tvm.kernels_blocks.pack``: two per byte, in tiles of 16 rows). Only the packed
# form is read when generating; the graph's form is needed only when the graph is parsed
# (the interpreter check of a loaded artifact). ``derive_block_constants`` finds, for each
# such graph constant, where its rows lie in a packed array; ``unpack_blocks`` recomputes
# it from there, and ``compile_llm`` stores the recipe instead of the array.

#: The ``kind`` of a recipe ``unpack_blocks`` follows (``compiler.llm.weights.DERIVED``).
BLOCKS = "tvm-blocks"
_SCALES = {"f16": "float16", "f32": "float32"}


def unpack_blocks(recipe: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                  dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The graph constant (``shape``, ``dtype``) that ``recipe`` places in a packed array
    of ``arrays``: ``part`` "q" (the weight, stored ``q + offset`` in ``bits``) or "s" (a
    scale or offset array tiled ``[tiles, blocks, 16]``), rows ``row ..`` of the array."""
    from backends.tvm.kernels_blocks import LANES

    rows, row = shape[0], int(recipe["row"])
    first = row // LANES
    packed = arrays[recipe["array"]][first : -(-(row + rows) // LANES)]
    tiles, start = packed.shape[0], row - first * LANES
    if recipe["part"] == "s":
        full = packed.transpose(0, 2, 1).reshape(tiles * LANES, -1)
        return np.ascontiguousarray(full[start : start + rows]).astype(dtype)
    values = packed.reshape(*packed.shape[:3], LANES, -1).transpose(0, 3, 1, 2, 4)
    if int(recipe["bits"]) == 4:  # low nibbles are the chunk's first 4 values
        values = np.concatenate([values & 15, values >> 4], axis=-1)
    full = values.reshape(tiles * LANES, -1)[start : start + rows]
    return (full.astype(np.int16) - int(recipe["offset"])).astype(dtype).reshape(shape)


def derive_block_constants(
    graphs: Sequence[Any], lifted: Mapping[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """``{constant name: recipe}`` for the operands of the ``q.block_dense`` nodes of
    ``graphs`` that ``unpack_blocks`` recomputes bit for bit from the ``lifted`` arrays
    (each recipe is checked so); a constant it cannot place is left out (stored)."""
    from backends.tvm.kernels_blocks import LANES, layout_for, pack

    index: dict[tuple, list[tuple[str, int]]] = {}
    for key, array in lifted.items():
        if array.ndim in (3, 4) and array.shape[-1] in (LANES, 4 * LANES):
            for tile in range(array.shape[0]):
                index.setdefault(_slab_key(array[tile]), []).append((key, tile))
    recipes: dict[str, dict[str, Any]] = {}
    for graph in graphs:
        for node in graph.nodes:
            if node.op != "q.block_dense" or not all(v.is_const for v in node.inputs[1:]):
                continue
            refs: list[str] = [v.producer.attrs["ref"] for v in node.inputs[1:]]
            if set(refs) <= set(recipes):
                continue
            q, *scales = (graph.constants[r] for r in refs)
            n, k = q.shape
            dtype = node.inputs[1].dtype
            layout = layout_for(dtype, n, k, int(node.attrs["group"]), len(scales) > 1,
                                _SCALES.get(node.inputs[2].dtype, "float32"))  # fmt: skip
            packed = pack(layout, q, scales[0], scales[1] if len(scales) > 1 else None)
            parts = [{"part": "q", "bits": layout.bits, "offset": layout.offset}]
            parts += [{"part": "s"}] * len(scales)
            for ref, want, part, mine in zip(refs, (q, *scales), parts, packed, strict=True):
                found = _place(index.get(_slab_key(mine[0]), []), lifted, want, part, LANES)
                if found is not None:
                    recipes[ref] = found
    return recipes


def _slab_key(slab: np.ndarray) -> tuple:
    return (slab.dtype.str, slab.shape, digest(slab))


def _place(candidates: list[tuple[str, int]], lifted: Mapping[str, np.ndarray],
           want: np.ndarray, part: dict[str, Any], lanes: int) -> dict[str, Any] | None:
    """The first recipe among ``candidates`` (array, tile) that recomputes ``want``."""
    for key, tile in candidates:
        recipe = {"kind": BLOCKS, "array": key, "row": tile * lanes, **part}
        if tile * lanes + want.shape[0] > lifted[key].shape[0] * lanes:
            continue
        got = unpack_blocks(recipe, lifted, want.dtype, want.shape)
        if got.tobytes() == np.ascontiguousarray(want).tobytes():
            return recipe
    return None
