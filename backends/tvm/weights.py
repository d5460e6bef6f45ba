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

from collections.abc import Callable, Mapping
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
