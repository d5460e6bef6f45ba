"""A layer's q/k/v projections split into heads, with RoPE on q and k, as one kernel.

The projections that read one input run as one kernel over their rows together
(``split_siblings``): ``y [rows, N]``, then per projection a slice, and in a decoder graph
imported from Hugging Face (Llama, Qwen2, Mistral) the ops of its Python code::

    %view  = tensor.reshape(%q)           {shape=[B, C, H, D]}
    %x     = tensor.transpose(%view)      {perm=[0, 2, 1, 3]}
    %m1    = math.mul(%x, %cos)                          # cos, sin: [B or 1, 1, C, D]
    %lo    = tensor.slice(%x) {axes=[3], starts=[0],   ends=[D/2]}
    %hi    = tensor.slice(%x) {axes=[3], starts=[D/2], ends=[D]}
    %rot   = tensor.concat(math.neg(%hi), %lo) {axis=3}
    %q_rot = math.add(%m1, math.mul(%rot, %sin))

Relax fuses each projection's chain into a kernel of its own (q's RoPE, k's RoPE, v's slice:
3 kernel calls per layer). ``fuse_heads`` recognises, for each projection, the chain above
or only its reshape and transpose (the values), and emits one kernel with an output per
projection in ``[B, H, C, D]``, parked in ``ctx.ahead`` for the node that ends each chain
(the intermediate nodes still lower, unused, and Relax drops them). Each element is the
graph's ``x * cos + (±x') * sin`` with the same operations (a negation is exact), so the
results are those of the kernels it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from compiler.ir.graph import Node, Value


@dataclass(frozen=True)
class Heads:
    """One projection's part of ``y``: columns ``start .. start + heads * dim``, viewed as
    ``[batch, heads, chunk, dim]``; ``rope``: its (cos, sin) tables, and ``end``: the node
    whose output this part becomes."""

    start: int
    heads: int
    dim: int
    end: Node
    rope: tuple[Value, Value] | None


def _only_use(value: Value) -> Node | None:
    return value.uses[0][0] if len(value.uses) == 1 else None


def _shape(value: Value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.type.shape)


def _to_heads(node: Node) -> Node | None:
    """The transpose that makes ``node``'s output ``[B, C, H*D]`` into ``[B, H, C, D]``
    through a reshape; None when its only use is not that."""
    out = node.outputs[0]
    view = _only_use(out)
    if view is None or view.op != "tensor.reshape" or out.type.rank != 3:
        return None
    b, c, n = _shape(out)
    shape = _shape(view.outputs[0])
    if len(shape) != 4 or shape[:2] != (b, c) or shape[2] * shape[3] != n:
        return None
    perm = _only_use(view.outputs[0])
    if perm is None or perm.op != "tensor.transpose":
        return None
    if [int(p) for p in perm.attrs["perm"]] != [0, 2, 1, 3]:
        return None
    return perm


def _slice(node: Node, axis_len: int) -> tuple[int, int] | None:
    """``(start, end)`` of a unit-step slice along the last of 4 axes."""
    a = node.attrs
    if [int(x) % 4 for x in a.get("axes") or []] != [3] or any(int(s) != 1 for s in
                                                                a.get("steps") or [1]):  # fmt: skip
        return None
    start, end = int(a["starts"][0]), min(int(a["ends"][0]), axis_len)
    return start, end


def _table(value: Value, x: Value) -> bool:
    """Whether ``value`` is a float32 ``[B or 1, 1, C, D]`` table for ``x`` ``[B, H, C, D]``."""
    b, _, c, d = _shape(x)
    return value.dtype == "f32" and value.type.rank == 4 and _shape(value)[1:] == (1, c, d) \
        and _shape(value)[0] in (1, b)  # fmt: skip


def rope_chain(x: Value) -> tuple[Node, Value, Value] | None:
    """``(the final add, cos, sin)`` when the uses of ``x`` ``[B, H, C, D]`` are exactly the
    RoPE chain of the module docstring (every intermediate used only in it)."""
    d = _shape(x)[3]
    half = d // 2
    users = {n.op: n for n, _ in x.uses}
    if len(x.uses) != 3 or d % 2 or set(users) != {"math.mul", "tensor.slice"}:
        return None
    slices = [n for n, _ in x.uses if n.op == "tensor.slice"]
    spans = sorted((_slice(n, d), i) for i, n in enumerate(slices) if _slice(n, d) is not None)
    if len(slices) != 2 or [s for s, _ in spans] != [(0, half), (half, d)]:
        return None
    lo, hi = slices[spans[0][1]], slices[spans[1][1]]
    m1 = users["math.mul"]
    cos = m1.inputs[1] if m1.inputs[0] is x else m1.inputs[0]
    neg = _only_use(hi.outputs[0])
    cat = None if neg is None or neg.op != "math.neg" else _only_use(neg.outputs[0])
    if cat is None or cat.op != "tensor.concat" or int(cat.attrs["axis"]) % 4 != 3:
        return None
    if [v.producer for v in cat.inputs] != [neg, lo] or _only_use(lo.outputs[0]) is not cat:
        return None
    m2 = _only_use(cat.outputs[0])
    if m2 is None or m2.op != "math.mul":
        return None
    add = _only_use(m2.outputs[0])
    if add is None or add.op != "math.add" or _only_use(m1.outputs[0]) is not add:
        return None
    sin = m2.inputs[1] if m2.inputs[0] is cat.outputs[0] else m2.inputs[0]
    if {v.producer for v in add.inputs} != {m1, m2} or not (_table(cos, x) and _table(sin, x)):
        return None
    return add, cos, sin


def find_heads(nodes: Sequence[Node]) -> list[Heads | None] | None:
    """Each projection's ``Heads`` (None for one that is not split into heads), or None when
    no projection has RoPE (nothing to gain over Relax's own kernels)."""
    parts: list[Heads | None] = []
    start = 0
    for node in nodes:
        size = _shape(node.outputs[0])[-1]
        perm = _to_heads(node) if node.outputs[0].dtype == "f32" else None
        if perm is None:
            parts.append(None)
        else:
            x = perm.outputs[0]
            _, heads, _, dim = _shape(x)
            chain = rope_chain(x)
            end = perm if chain is None else chain[0]
            parts.append(Heads(start, heads, dim, end, None if chain is None else chain[1:]))
        start += size
    if not any(p is not None and p.rope is not None for p in parts):
        return None
    return parts


def heads_compute(y: Any, *tables: Any, parts: Sequence[Heads], batch: int, chunk: int) -> Any:
    """TE: one ``[batch, heads, chunk, dim]`` output per part of ``y`` ``[batch * chunk,
    N]``; a part with RoPE reads its (cos, sin) from ``tables``, in order."""
    from tvm import te

    outs: list[Any] = []
    it = iter(tables)
    for p in parts:
        rope = (next(it), next(it)) if p.rope is not None else None
        outs.append(te.compute((batch, p.heads, chunk, p.dim), _element(y, p, rope, chunk),
                               name=f"heads{len(outs)}"))  # fmt: skip
    return outs


def _element(y: Any, p: Heads, rope: tuple[Any, Any] | None, chunk: int) -> Any:
    """``(b, h, c, d) -> element`` of part ``p``: the graph's ``x * cos + cat * sin`` where
    ``cat = concat(-x[half:], x[:half])`` (its element: the partner, negated in the first
    half; a negation and a multiplication by -1 are the same exact float operation)."""
    from tvm import tirx

    def f(b: Any, h: Any, c: Any, d: Any) -> Any:
        row, col = b * chunk + c, p.start + h * p.dim
        x = y[row, col + d]
        if rope is None:
            return x
        cos, sin = rope
        tb = 0 if int(cos.shape[0]) == 1 else b
        half = p.dim // 2
        partner = y[row, col + tirx.indexmod(d + half, p.dim)]
        sign = tirx.Select(d < half, tirx.const(-1.0, "float32"), tirx.const(1.0, "float32"))
        return x * cos[tb, 0, c, d] + (partner * sign) * sin[tb, 0, c, d]

    return f


def fuse_heads(y: Any, nodes: Sequence[Node], ctx: Any) -> None:
    """Where ``find_heads`` finds RoPE: ``nodes``' parts of ``y`` as one kernel, each
    result parked in ``ctx.ahead`` for its chain's last node. (The nodes themselves still
    get their plain slices from ``split_siblings``: unused, Relax drops them.)"""
    from tvm import relax

    found = find_heads(nodes)
    if found is None:
        return
    parts = [p for p in found if p is not None]
    b, c, _ = _shape(nodes[0].outputs[0])
    # The tables are computed from the positions, in the graph after the projections (not
    # from the projections: those are busy).
    siblings = {id(n) for n in nodes} - ctx.busy
    ctx.busy |= siblings
    try:
        ready = all(ctx.ensure(t) for p in parts if p.rope is not None for t in p.rope)
    finally:
        ctx.busy -= siblings
    if not ready:
        return
    tables = [ctx.arg(t) for p in parts if p.rope is not None for t in p.rope]
    outs = ctx.emit_te(heads_compute, y, *tables, parts=parts, batch=b, chunk=c,
                       name="tapeout_rope_heads", opaque=True)  # fmt: skip
    for i, p in enumerate(parts):
        ctx.ahead[id(p.end)] = [ctx.emit(relax.TupleGetItem(outs, i))]
