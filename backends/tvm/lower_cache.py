# mypy: disable-error-code="valid-type,name-defined"
"""In-place KV-cache writes for an LLM step graph (the ``cache_writes`` option).

A step graph of ``compiler.llm`` returns the chunk's new keys and values as outputs, and the
caller copies them into its cache arrays: per decode token of a 30-layer model that is 60
result tensors the VM allocates, 60 wrappers and 60 slice copies in Python, more than the
small kernels of the step cost. With ``cache_writes``, ``main`` takes one more input,
``slot`` (``int64[1]``, the first free cache slot), and ends with one kernel per cache that
writes the new rows at slots ``slot .. slot + chunk`` of the cache input itself (Relax
``call_tir_inplace``; the caller lends its arrays, ``TvmArtifact.run_inplace``); it returns
the other outputs (the logits) and the written caches, which alias the inputs.

The writes come after every other binding, so every read of a cache in the step (the
attention over ``concat(past, new)``) sees it as it was given. ``find_cache_pairs`` says which
outputs are written where: an output that is the second operand of a ``concat`` along the
slots (axis 2 of a rank-4 value) whose first operand is a graph input.
"""

from __future__ import annotations

from typing import Any

from compiler.ir.graph import Graph

#: Name of the extra input of ``main`` that holds the first cache slot to write.
SLOT_INPUT = "cache_slot"


def find_cache_pairs(graph: Graph) -> list[tuple[int, int]]:
    """``(output index, input index)`` for each output that extends a cache input."""
    inputs = {id(v): i for i, v in enumerate(graph.inputs)}
    pairs: list[tuple[int, int]] = []
    taken: set[int] = set()
    for index, value in enumerate(graph.outputs):
        for user, operand in value.uses:
            if user.op != "tensor.concat" or operand != 1 or len(user.inputs) != 2:
                continue
            past = user.inputs[0]
            rank = value.type.rank
            if rank != 4 or int(user.attrs["axis"]) % 4 != 2 or id(past) not in inputs:
                continue
            same = past.dtype == value.dtype and past.type.shape[:2] == value.type.shape[:2]
            if same and past.type.shape[3] == value.type.shape[3] and inputs[id(past)] not in taken:
                pairs.append((index, inputs[id(past)]))
                taken.add(inputs[id(past)])
                break
    return pairs


def cache_write_func(cache: tuple[int, ...], chunk: int, dtype: str) -> Any:
    """The PrimFunc ``(K [B,H,S,D], N [B,H,C,D], Slot int64[1])`` writing ``N`` into ``K`` at
    slots ``Slot[0] .. Slot[0] + C`` (nothing when that range is outside the cache, so a bad
    slot can never write past the caller's array)."""
    from tvm.script import tirx as T

    B, H, S, D = cache
    C = chunk

    @T.prim_func(s_tir=True)
    def func(
        K: T.Buffer((B, H, S, D), dtype),
        N: T.Buffer((B, H, C, D), dtype),
        Slot: T.Buffer((1,), "int64"),
    ) -> None:
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for b, h in T.grid(B, H):
            with T.sblock("rows"):
                T.reads(N[b, h, 0:C, 0:D], Slot[0:1])
                T.writes(K[b, h, 0:S, 0:D])
                if Slot[0] >= T.int64(0) and Slot[0] + T.int64(C) <= T.int64(S):
                    for c in range(C):
                        for d in T.vectorized(D):
                            K[b, h, T.Cast("int32", Slot[0]) + c, d] = N[b, h, c, d]

    return func


def emit_cache_writes(
    ctx: Any, graph: Graph, pairs: list[tuple[int, int]], slot: Any, params: list[Any]
) -> list[Any]:
    """One in-place write per pair, emitted last; the written caches (aliases of the inputs)."""
    from tvm import relax

    from backends.tvm.lower import TVM_DTYPES, static_shape

    written = []
    for out_index, in_index in pairs:
        value, past = graph.outputs[out_index], graph.inputs[in_index]
        shape, chunk = static_shape(past), static_shape(value)[2]
        dtype = TVM_DTYPES[past.dtype]
        name = f"tapeout_cache_write_{'x'.join(map(str, shape))}_c{chunk}_{dtype}"
        func = cache_write_func(shape, chunk, dtype).with_attr("global_symbol", name)
        # op_pattern 8 (opaque): never fused with the producer of the new rows.
        gv = ctx.bb.add_func(func.with_attr("op_pattern", 8), name)
        call = relax.call_tir_inplace(
            gv, relax.Tuple([params[in_index], ctx.arg(value), slot]), 0,
            relax.TensorType(shape, dtype),
        )  # fmt: skip
        written.append(ctx.emit(call, f"{past.name}_written"))
    ctx.kernels["cache_write"] = ctx.kernels.get("cache_write", 0) + len(pairs)
    return written
