"""Lowering rules, part 5: sequence, signal and reinterpreting ops of the ONNX standard.

Recurrent cells (``nn.recurrent``) unrolled over the static sequence, the DFT (pocketfft's
FFT from ``lower_fft`` where it covers the length, else products with constant cosine/sine
matrices), bit casts, reversed sequences, KV-cache scatters and max
pooling with indices. Each rule mirrors ``compiler.interpreter_signal`` /
``interpreter_extra`` / ``interpreter_vision``. Ops whose result size depends on the data
(``tensor.unique``, ``tensor.compress``, ``nn.nms``) have no rule: a TVM build needs every
shape at compile time, and ``DATA_DEPENDENT`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends.tvm.kernels import expr_dtype
from backends.tvm.lower import LowerContext, Rule, static_shape, tvm_const, tvm_dtype
from backends.tvm.lower_fft import fft_along, fft_covers
from compiler.ir.graph import Graph, Node

#: Ops refused because their output size depends on the input values.
DATA_DEPENDENT: dict[str, str] = {
    op: f"{what} depends on the input values; a TVM build needs every shape at compile time"
    for op, what in (
        ("tensor.unique", "the number of distinct values"),
        ("tensor.compress", "the number of kept slices"),
        ("nn.nms", "the number of kept boxes"),
        ("tensor.nonzero", "the number of nonzero elements"),
    )
}


def _R() -> Any:
    from tvm import relax

    return relax.op


def _known(index: int, what: str) -> Callable[[Node, Graph], str | None]:
    def check(node: Node, graph: Graph) -> str | None:
        if index < len(node.inputs) and graph.const_value(node.inputs[index]) is None:
            return f"{what} is computed at runtime; TVM needs it at compile time"
        return None

    return check


# ---- bitcast ---------------------------------------------------------------------------------
def _bitcast_te(x: Any, to: str, from_bool: bool) -> Any:
    from tvm import te, tirx

    if to == "bool":  # a byte read as bool: any set bit is true
        return te.compute(x.shape, lambda *i: x(*i) != tirx.const(0, x.dtype), name="bitcast")
    if from_bool:  # a bool's byte is 0 or 1
        return te.compute(x.shape, lambda *i: x(*i).astype(to), name="bitcast")
    return te.compute(x.shape, lambda *i: tirx.reinterpret(to, x(*i)), name="bitcast")


def _bitcast(node: Node, ctx: LowerContext) -> Sequence[Any]:
    x, out = node.inputs[0], node.outputs[0]
    return [ctx.emit_te(_bitcast_te, ctx.arg(x), tvm_dtype(out), x.dtype == "bool")]


# ---- reverse_sequence, tensor_scatter --------------------------------------------------------
def _reverse_sequence(node: Node, ctx: LowerContext) -> Sequence[Any]:
    R = _R()
    x, lens = node.inputs
    a = ctx.attrs(node)
    rank = x.type.rank
    b_axis, t_axis = int(a["batch_axis"]) % rank, int(a["time_axis"]) % rank
    steps = static_shape(x)[t_axis]
    dt = tvm_dtype(lens)
    # The interpreter clips the lengths to [0, steps]; TVM's kernel would read outside.
    clipped = ctx.emit(R.clip(ctx.arg(lens), 0, steps)) if steps else ctx.arg(lens)
    clipped = ctx.emit(R.astype(clipped, dt))
    return [ctx.emit(R.reverse_sequence(ctx.arg(x), clipped, t_axis, b_axis))]


def _tensor_scatter_te(cache: Any, update: Any, idx: Any, axis: int, circular: bool) -> Any:
    """``cache`` with ``update`` written along ``axis`` from ``idx[b]`` (wrapping if
    ``circular``); positions a linear write misses keep the cache."""
    from tvm import te, tirx

    size, steps = int(cache.shape[axis]), int(update.shape[axis])

    def body(*i: Any) -> Any:
        start = idx[i[0]].astype("int64")
        offset = i[axis].astype("int64") - start
        if circular:
            offset = tirx.floormod(offset, size)
        inside = tirx.all(offset >= 0, offset < steps)
        safe = tirx.min(tirx.max(offset, 0), max(steps - 1, 0)).astype(expr_dtype(i[axis]))
        src = [safe if d == axis else v for d, v in enumerate(i)]
        if steps == 0:
            return cache(*i)
        return tirx.Select(inside, update(*src), cache(*i))

    return te.compute(cache.shape, body, name="tensor_scatter")


def _tensor_scatter(node: Node, ctx: LowerContext) -> Sequence[Any]:
    cache, update, idx = node.inputs
    a = ctx.attrs(node)
    axis = int(a["axis"]) % cache.type.rank
    args = (ctx.arg(cache), ctx.arg(update), ctx.arg(idx))
    return [ctx.emit_te(_tensor_scatter_te, *args, axis, a["mode"] == "circular")]


# ---- DFT -------------------------------------------------------------------------------------
def _dft_matrices(n_in: int, attrs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(cos, sin)`` [n_in, n_out] so that ``re' = re @ cos - im @ sin`` and
    ``im' = re @ sin + im @ cos``, in float64, and the output length along the axis.
    The input is zero-padded or cut to the transform's length by rows left out."""
    inverse, onesided, length = bool(attrs["inverse"]), bool(attrs["onesided"]), attrs["length"]
    if inverse and onesided:  # irfft: the Hermitian extension of the bins, real output
        size = int(length) if length is not None else 2 * (n_in - 1)
        bins = np.arange(min(n_in, size // 2 + 1))
        t = np.arange(size)
        weight = np.where((bins == 0) | (2 * bins == size), 1.0, 2.0)[:, None] / size
        angle = 2 * np.pi * np.outer(bins, t) / size
        cos, sin = weight * np.cos(angle), weight * np.sin(angle)
        return _pad_rows(cos, n_in), _pad_rows(sin, n_in), size
    size = int(length) if length is not None else n_in
    used = np.arange(min(n_in, size))
    out = np.arange(size // 2 + 1 if onesided and not inverse else size)
    sign = 1.0 if inverse else -1.0
    angle = sign * 2 * np.pi * np.outer(used, out) / size
    scale = 1.0 / size if inverse else 1.0
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    return _pad_rows(cos, n_in), _pad_rows(sin, n_in), len(out)


def _pad_rows(m: np.ndarray, rows: int) -> np.ndarray:
    """``m`` with zero rows added for input samples past the transform's length."""
    return np.concatenate([m, np.zeros((rows - m.shape[0], m.shape[1]))]) if rows > len(m) else m


def _dft_along(
    ctx: LowerContext,
    data: Any,
    shape: tuple[int, ...],
    axis: int,
    attrs: dict[str, Any],
    real_only: bool,
) -> Any:
    """Move ``axis`` last, multiply by the constant matrices in float64, move it back."""
    from tvm import relax

    R = _R()
    rank = len(shape)
    cos, sin, _ = _dft_matrices(shape[axis], attrs)
    perm = [d for d in range(rank - 1) if d != axis] + [axis, rank - 1]
    moved = ctx.emit(R.permute_dims(data, perm))  # [..., n, 1 or 2]
    re = ctx.emit(R.take(moved, tvm_const(0, "int64"), rank - 1))
    c, s = tvm_const(cos, "float64"), tvm_const(sin, "float64")
    out_re = ctx.emit(R.matmul(re, c))
    out_im = ctx.emit(R.matmul(re, s))
    if shape[-1] == 2:
        im = ctx.emit(R.take(moved, tvm_const(1, "int64"), rank - 1))
        out_re = ctx.emit(R.subtract(out_re, R.matmul(im, s)))
        out_im = ctx.emit(R.add(out_im, R.matmul(im, c)))
    parts = [out_re] if real_only else [out_re, out_im]
    y = ctx.emit(R.stack(relax.Tuple(parts), rank - 1))  # [..., n_out, 1 or 2]
    return ctx.emit(R.permute_dims(y, [perm.index(d) for d in range(rank)]))


def _dft(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """pocketfft's FFT in the signal's precision where ``lower_fft`` covers the transform
    (then it agrees with ``np.fft``), else the float64 DFT matrix. An axis given at runtime
    (ONNX opset 20's input) is allowed where every choice gives the same shape (the guard
    refuses a symbolic result): the transform along each candidate axis, the one asked for
    selected."""
    R = _R()
    x = node.inputs[0]
    a = ctx.attrs(node)
    shape = static_shape(x)
    rank = len(shape)
    real_only = node.outputs[0].type.shape[-1] == 1
    out_dtype = tvm_dtype(node.outputs[0])
    arg = ctx.arg(x)

    def along(axis: int) -> Any:
        plan = fft_covers(x.dtype, a, shape[axis])
        if plan is not None:
            return fft_along(ctx, arg, shape, axis, a, plan, out_dtype)
        data = ctx.emit(R.astype(arg, "float64"))
        return ctx.emit(R.astype(_dft_along(ctx, data, shape, axis, a, real_only), out_dtype))

    if len(node.inputs) == 1:
        return [along(int(a["axis"]) % rank)]
    axis = ctx.emit(R.reshape(R.astype(ctx.arg(node.inputs[1]), "int64"), ()))
    axis = ctx.emit(R.floor_mod(axis, tvm_const(rank, "int64")))
    y = along(0)
    for d in range(1, rank - 1):
        y = ctx.emit(R.where(R.equal(axis, tvm_const(d, "int64")), along(d), y))
    return [y]


# ---- TfIdfVectorizer -------------------------------------------------------------------------
def _tfidf_windows(length: int, attrs: dict[str, Any]) -> dict[int, np.ndarray]:
    """n -> the token positions [windows, n] of every n-gram window the interpreter counts:
    each start and skip distance; single tokens once, not once per skip distance."""
    # No window is longer than the row, nor skips further: clamp what a model may set to 2^31.
    min_n, max_n = int(attrs["min_n"]), min(int(attrs["max_n"]), length)
    windows: dict[int, list[list[int]]] = {}
    for skip in range(1, min(int(attrs["max_skip"]) + 1, max(length, 1)) + 1):
        first = min_n if skip == 1 else max(min_n, 2)
        for n in range(first, max_n + 1):
            for start in range(length - skip * (n - 1)):
                windows.setdefault(n, []).append([start + skip * j for j in range(n)])
    return {n: np.asarray(w, np.int64) for n, w in windows.items()}


def _tfidf(node: Node, ctx: LowerContext) -> Sequence[Any]:
    """Per n: the windows' tokens gathered (constant positions), compared with every pool
    n-gram, matches summed per gram and routed to its output index by a 0/1 matrix."""
    from compiler.interpreter_extra import ngram_ids

    R = _R()
    x = node.inputs[0]
    a = ctx.attrs(node)
    shape = static_shape(x)
    rows = ctx.arg(x) if len(shape) == 2 else ctx.emit(R.reshape(ctx.arg(x), (1, shape[0])))
    size = max(int(i) for i in a["indexes"]) + 1
    grams = ngram_ids(a)
    counts = None
    for n, positions in _tfidf_windows(shape[-1], a).items():
        mine = [(g, at) for g, at in grams.items() if len(g) == n]
        if not mine:
            continue
        pool = np.asarray([g for g, _ in mine], np.dtype(tvm_dtype(x)))[None, None]
        route = np.zeros((len(mine), size), np.float32)
        route[np.arange(len(mine)), [at for _, at in mine]] = 1
        tokens = ctx.emit(R.expand_dims(R.take(rows, tvm_const(positions, "int64"), 1), 2))
        same = ctx.emit(R.astype(R.equal(tokens, tvm_const(pool, tvm_dtype(x))), "int32"))
        hits = ctx.emit(R.astype(R.min(same, 3), "float32"))  # [B, windows, grams]
        part = ctx.emit(R.matmul(R.sum(hits, 1), tvm_const(route, "float32")))
        counts = part if counts is None else ctx.emit(R.add(counts, part))
    if counts is None:
        counts = ctx.emit(R.zeros((shape[0] if len(shape) == 2 else 1, size), "float32"))
    weights = np.asarray(a["weights"] or [], np.float32)
    if a["mode"] == "IDF":
        scale = tvm_const(weights, "float32") if weights.size else tvm_const(1.0, "float32")
        counts = ctx.emit(R.multiply(R.astype(R.greater(counts, tvm_const(0.0, "float32")),
                                              "float32"), scale))  # fmt: skip
    elif a["mode"] == "TFIDF" and weights.size:
        counts = ctx.emit(R.multiply(counts, tvm_const(weights, "float32")))
    return [ctx.emit(R.reshape(counts, static_shape(node.outputs[0])))]


# ---- max pooling with indices ------------------------------------------------------------------
def _pool_argmax_te(x: Any, given_best: Any, attrs: dict[str, Any], out: Sequence[int]) -> Any:
    """The window maxima (from -inf) and, per window, the flat input index of the first
    tap (row-major over the kernel) holding it; 0 where no tap beats -inf, as the
    interpreter's strict ``v > best`` leaves it."""
    from tvm import te, tirx

    kernel = [int(k) for k in attrs["kernel"]]
    n = len(kernel)
    strides = attrs["strides"] or [1] * n
    pads = attrs["pads"] or [0] * (2 * n)
    dils = attrs["dilations"] or [1] * n
    sizes = [int(d) for d in x.shape[2:]]
    channels = int(x.shape[1])
    taps = int(np.prod(kernel))
    neg = tirx.const(float("-inf"), x.dtype)

    def window(i: Sequence[Any], k: Sequence[Any]) -> tuple[list[Any], Any]:
        pos = [i[2 + d] * strides[d] - pads[d] + k[d] * dils[d] for d in range(n)]
        inside = tirx.all(*(p >= 0 for p in pos), *(p < sizes[d] for d, p in enumerate(pos)))
        safe = [tirx.min(tirx.max(p, 0), sizes[d] - 1) for d, p in enumerate(pos)]
        return safe, inside

    def value(i: Sequence[Any], k: Sequence[Any]) -> Any:
        safe, inside = window(i, k)
        return tirx.Select(inside, x(i[0], i[1], *safe), neg)

    top = te.comm_reducer(lambda a, b: tirx.max(a, b), lambda t: tirx.const(float("-inf"), t))
    first = te.comm_reducer(lambda a, b: tirx.min(a, b), lambda t: tirx.const(taps, t))
    shape = (*(int(d) for d in x.shape[:2]), *out)

    def best_body(*i: Any) -> Any:
        k = [te.reduce_axis((0, kk), f"k{d}") for d, kk in enumerate(kernel)]
        return top(value(i, k), axis=k)

    if given_best is None:  # the first kernel: the maxima
        return te.compute(shape, best_body, name="pool_max")
    best = given_best

    def ordinal_body(*i: Any) -> Any:
        k = [te.reduce_axis((0, kk), f"t{d}") for d, kk in enumerate(kernel)]
        ordinal = tirx.const(0, "int64")
        for d in range(n):
            ordinal = ordinal * kernel[d] + k[d].var.astype("int64")
        hit = tirx.all(value(i, k) == best(*i), best(*i) > neg)
        return first(tirx.Select(hit, ordinal, tirx.const(taps, "int64")), axis=k)

    ordinal = te.compute(shape, ordinal_body, name="pool_first")
    column_major = bool(attrs["storage_order"])

    def index_body(*i: Any) -> Any:
        o = ordinal(*i)
        k: list[Any] = []
        rest = o
        for d in reversed(range(n)):
            k.insert(0, tirx.floormod(rest, kernel[d]))
            rest = tirx.floordiv(rest, kernel[d])
        pos, _ = window([v.astype("int64") for v in i], k)
        order = list(reversed(range(n))) if column_major else list(range(n))
        flat = i[0].astype("int64") * channels + i[1].astype("int64")
        for d in order:
            flat = flat * sizes[d] + pos[d]
        return tirx.Select(o < taps, flat, tirx.const(0, "int64"))

    return te.compute(shape, index_body, name="pool_argmax")


def _max_pool_argmax(node: Node, ctx: LowerContext) -> Sequence[Any]:
    out = static_shape(node.outputs[0])[2:]
    x, a = ctx.arg(node.inputs[0]), ctx.attrs(node)
    # Two kernels: TVM's schedules take one reduction block per function.
    best = ctx.emit_te(_pool_argmax_te, x, None, a, out, name="pool_max", opaque=True)
    index = ctx.emit_te(_pool_argmax_te, x, best, a, out, name="pool_argmax", opaque=True)
    return [best, index]


def _float_only(node: Node, graph: Graph) -> str | None:
    if node.inputs[0].dtype not in ("f32", "f64"):
        return f"max pooling with indices of {node.inputs[0].dtype} (float32/float64 only)"
    return None


# ---- registration ----------------------------------------------------------------------------
def _rules() -> dict[str, Rule]:
    from backends.tvm.lower_recurrent import RECURRENT_RULES

    return {
        "tensor.bitcast": Rule(_bitcast),
        "tensor.reverse_sequence": Rule(_reverse_sequence),
        "tensor.tensor_scatter": Rule(_tensor_scatter),
        "math.dft": Rule(_dft),
        "nn.tfidf": Rule(_tfidf),
        "nn.max_pool_argmax": Rule(_max_pool_argmax, _float_only),
        **RECURRENT_RULES,
    }


def extend(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with this module's rules added."""
    return {**rules, **_rules()}
