"""The dtypes TVM cannot compute in on a CPU, lowered at the module boundary on a carrier.

TVM 0.27 has ``bfloat16`` and ``float8_e4m3fn``/``float8_e5m2`` types, but LLVM's CPU
casts to the float8 types neither round nor saturate (500.0 becomes -0.0, NaN becomes 1.5),
the ``fnuz`` variants are read with the wrong bias and ``float4_e2m1fn`` has no cast at all.
So the CPU backend computes on the type the IR holds these values in
(``compiler.ir.types.NUMPY_DTYPES``), exactly as the reference interpreter does: bf16,
float8 and float4 values travel in float32, 2- and 4-bit integers unpacked in int8/uint8.
``backends.tvm.lower.TVM_DTYPES`` maps each to its carrier, so ``run()`` hands the module the
interpreter's own arrays.

Every rule then lowers a node that touches such a value on its *wide view*: the same node
with the narrow dtypes replaced by their carriers (``wide_view``), which is what the
interpreter computes (NumPy on the storage type), and each narrow float result is rounded to
its type afterwards (``round_to``), as the interpreter's ``as_type`` rounds every result.
The rounding is written on the float32 bits in TE (round to nearest even, then the
overflow the format has: NaN, inf or saturation; the ``fnuz`` formats have no -0), so it
equals ml_dtypes' conversion bit for bit. Casts *to* a narrow type have their own meaning
(ONNX's ``saturate``, the sub-byte integers' wrap) and their own lowering (``_cast``).

The same wide view computes float16 ops that LLVM has no x86 kernel for (exp, erf, the
softmaxes, ...) in float32 and casts the result back, as NumPy (the interpreter) computes a
float16 ufunc and as onnxruntime does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from backends.tvm.lower import LowerContext, Rule, tvm_dtype
from compiler.ir.graph import Graph, Node
from compiler.ir.types import INT_RANGES, NARROW_FLOAT_DTYPES, SUB_BYTE_INTS, is_float

#: Narrow IR dtype -> the IR dtype it is computed in (its NumPy storage type).
CARRIERS: dict[str, str] = {
    "bf16": "f32",
    **dict.fromkeys(NARROW_FLOAT_DTYPES, "f32"),
    "i4": "i8",
    "i2": "i8",
    "u4": "u8",
    "u2": "u8",
}


@dataclass(frozen=True)
class FloatFormat:
    """A narrow float format as the rounding needs it (the values of ml_dtypes' types)."""

    mantissa_bits: int
    min_exponent: int  # of the smallest normal number, unbiased
    max_finite: float
    overflow: str  # what a rounded magnitude above max_finite becomes: nan, inf, saturate
    nan: int  # the float32 magnitude bits a NaN (or an overflow to NaN) becomes
    nan_sign: str  # and its sign: the input's (keep), always set (set) or flipped (flip)
    unsigned_zero: bool = False  # the fnuz formats: -0 is their NaN, so zeros are +0


_QNAN, _SIGN = 0x7FC00000, 0x80000000
FORMATS: dict[str, FloatFormat] = {
    "f8e4m3fn": FloatFormat(3, -6, 448.0, "nan", _QNAN, "keep"),
    # fnuz: the one NaN is the bit pattern of -0, which reads back as a negative NaN.
    "f8e4m3fnuz": FloatFormat(3, -7, 240.0, "nan", _QNAN, "set", unsigned_zero=True),
    "f8e5m2": FloatFormat(2, -14, 57344.0, "inf", _QNAN, "keep"),
    "f8e5m2fnuz": FloatFormat(2, -15, 57344.0, "nan", _QNAN, "set", unsigned_zero=True),
    # float4 has neither inf nor NaN: it saturates, and ml_dtypes turns NaN into a zero of
    # the opposite sign.
    "f4e2m1": FloatFormat(1, 0, 6.0, "saturate", 0, "flip"),
}

#: Float16 ops computed in float32 (LLVM has no x86 float16 kernel for them).
WIDEN_F16 = frozenset({
    "math.exp", "math.log", "math.erf", "math.pow", "math.tanh", "nn.sigmoid", "nn.silu",
    "nn.gelu", "nn.softmax", "nn.log_softmax", "math.asin", "math.acos", "math.atan",
    "math.sinh", "math.cosh", "math.asinh", "math.acosh", "math.atanh", "math.mod",
    "math.floor_mod",
    # NumPy's float16 matmul accumulates in float32 and rounds once; TVM's would round
    # every partial sum to float16.
    "nn.matmul",
})  # fmt: skip

#: Ops whose meaning depends on the bits of the narrow type, not its value.
BIT_OPS = frozenset({"tensor.bitcast"})


# ---- the wide view of a node -------------------------------------------------------------
def _wide_dtypes(node: Node) -> dict[str, str]:
    """dtype -> the dtype ``node`` is lowered in, for each of its dtypes that changes."""
    if node.op.startswith("q."):
        return {}  # quantized ops saturate to their own integer range themselves
    dtypes = {v.dtype for v in [*node.inputs, *node.outputs]}
    wide = {d: CARRIERS[d] for d in dtypes if d in CARRIERS}
    if node.op in WIDEN_F16 and "f16" in dtypes:
        wide["f16"] = "f32"
    return wide


@contextmanager
def wide_view(node: Node, ctx: LowerContext | None = None) -> Iterator[dict[str, str]]:
    """Within the block, ``node``'s values have their wide types (and, with ``ctx``, float16
    operands are float32 expressions); everything is restored afterwards."""
    wide = _wide_dtypes(node)
    values = {id(v): v for v in [*node.inputs, *node.outputs] if v.dtype in wide}
    saved_types = {key: v.type for key, v in values.items()}
    saved_exprs: dict[int, Any] = {}
    saved_converted: dict[tuple[int, str], Any] = {}
    try:
        if ctx is not None:
            for v in node.inputs:
                if v.dtype == "f16" and "f16" in wide and not v.is_const:
                    saved_exprs.setdefault(id(v), ctx.exprs[id(v)])
                    ctx.exprs[id(v)] = _astype(ctx, ctx.exprs[id(v)], "float32")
                    for pair in [k for k in ctx.converted if k[0] == id(v)]:
                        saved_converted[pair] = ctx.converted.pop(pair)
        for v in values.values():
            v.type = v.type.with_dtype(wide[v.dtype], v.type.quant)
        yield wide
    finally:
        for key, v in values.items():
            v.type = saved_types[key]
        if ctx is not None:
            ctx.exprs.update(saved_exprs)
            for pair in [k for k in ctx.converted if k[0] in saved_exprs]:
                del ctx.converted[pair]
            ctx.converted.update(saved_converted)


def _astype(ctx: LowerContext, expr: Any, dtype: str) -> Any:
    from tvm import relax

    return ctx.emit(relax.op.astype(expr, dtype))


def _finish(node: Node, ctx: LowerContext, outs: Sequence[Any], wide: dict[str, str]) -> list:
    """Each result brought back to its node's type: narrow floats rounded, float16 cast."""
    done = []
    for value, expr in zip(node.outputs, outs, strict=True):
        if value.dtype in FORMATS or value.dtype == "bf16":
            # Opaque: a chain of fused rounding kernels grows LLVM's input exponentially.
            expr = ctx.emit_te(
                round_to, expr, value.dtype, name=f"round_{value.dtype}", opaque=True
            )
        elif value.dtype == "f16" and "f16" in wide:
            expr = _astype(ctx, expr, "float16")
        done.append(expr)
    return done


def widened(rule: Rule) -> Rule:
    """``rule`` checking and lowering each node on its wide view."""

    def check(node: Node, graph: Graph) -> str | None:
        if not _wide_dtypes(node):
            return rule.reason(node, graph)
        if node.op in BIT_OPS:
            return f"{node.op} of a narrow type (its bits are not its carrier's)"
        with wide_view(node):
            return rule.reason(node, graph)

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        if not _wide_dtypes(node):
            return rule.lower(node, ctx)
        with wide_view(node, ctx) as wide:
            outs = rule.lower(node, ctx)
        return _finish(node, ctx, outs, wide)

    return dataclasses.replace(rule, lower=lower, check=check)


def narrow_rules(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The merged table with every rule taking the narrow dtypes (and float16 where LLVM
    lacks a kernel) on their carriers, and casts to a narrow type lowered here."""
    out = {op: widened(rule) for op, rule in rules.items()}
    if "tensor.cast" in out:
        out["tensor.cast"] = _narrow_cast(out["tensor.cast"])
    if "nn.softmax" in out:
        out["nn.softmax"] = _stepwise_softmax(out["nn.softmax"])
    return out


# ---- casts to a narrow type ----------------------------------------------------------------
def _narrow_cast(rule: Rule) -> Rule:
    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        to = node.outputs[0].dtype
        if to not in FORMATS and to not in SUB_BYTE_INTS:
            return rule.lower(node, ctx)
        x = ctx.arg(node.inputs[0])
        if to in SUB_BYTE_INTS:
            fn: Callable[..., Any] = (
                float_to_sub_byte if is_float(node.inputs[0].dtype) else wrap_int
            )
            out = tvm_dtype(node.outputs[0])
            return [ctx.emit_te(fn, x, to, out, name=f"cast_{to}", opaque=True)]
        saturate = bool(node.attrs.get("saturate", True))
        return [ctx.emit_te(cast_to_float, x, to, saturate, name=f"cast_{to}", opaque=True)]

    return dataclasses.replace(rule, lower=lower)


# ---- softmax, rounded at every step -----------------------------------------------------------
def _stepwise_softmax(rule: Rule) -> Rule:
    """Softmax in float16 and the narrow floats as the interpreter computes it (NumPy on
    float16 or ml_dtypes arrays): the difference, the exponentials, their sum and the
    quotient are each rounded to the type. Rounding only the result would differ from it
    by a step of the type on some probabilities, which the conformance tolerance (1e-3 for
    float16) does not allow."""

    def lower(node: Node, ctx: LowerContext) -> Sequence[Any]:
        from tvm import relax

        dtype = node.outputs[0].dtype
        if dtype != "f16" and dtype not in FORMATS and dtype != "bf16":
            return rule.lower(node, ctx)
        R = relax.op
        rank = node.inputs[0].type.rank
        axis = int(ctx.attrs(node)["axis"]) % rank

        def step(expr: Any) -> Any:
            if dtype == "f16":
                return _astype(ctx, _astype(ctx, expr, "float16"), "float32")
            return ctx.emit_te(round_to, expr, dtype, name=f"round_{dtype}", opaque=True)

        x = ctx.arg(node.inputs[0])
        # float16 widened; a bf16 graph input is held unrounded, and the interpreter reads
        # it into an ml_dtypes array first
        x = _astype(ctx, x, "float32") if dtype == "f16" else step(x)
        top = ctx.emit(R.max(x, [axis], True))
        top = ctx.emit(R.where(R.isfinite(top), top, relax.const(0.0, "float32")))
        e = step(ctx.emit(R.exp(step(ctx.emit(R.subtract(x, top))))))
        if dtype == "f16":  # NumPy sums float16 in float32 (pairwise), rounding once
            total = step(ctx.emit(R.sum(e, [axis], True)))
        else:  # ml_dtypes adds one element at a time, rounding each partial sum
            # Opaque: fused with its producer, the exponentials inlined into the chain made
            # LLVM's build run for minutes.
            total = ctx.emit_te(sequential_sum, e, axis, dtype, name=f"sum_{dtype}", opaque=True)
        y = ctx.emit(R.divide(e, total))
        if dtype == "f16":
            return [_astype(ctx, y, "float16")]
        return [ctx.emit_te(round_to, y, dtype, name=f"round_{dtype}", opaque=True)]

    return dataclasses.replace(rule, lower=lower)


# ---- tensor expressions ----------------------------------------------------------------------
def _u32(v: int) -> Any:
    from tvm import tirx

    return tirx.const(v, "uint32")


def _bits(x: Any) -> Any:
    from tvm import tirx

    return tirx.reinterpret("uint32", x)


def _float(bits: Any) -> Any:
    from tvm import tirx

    return tirx.reinterpret("float32", bits)


def _float32_bits(value: float) -> int:
    import numpy as np

    return int(np.array(value, np.float32).view(np.uint32))


def round_bf16(x: Any) -> Any:
    """The float32 value ``x`` rounded to bfloat16 as the interpreter's ``as_type`` does:
    ``(bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000`` in wrapping uint32 arithmetic."""
    from tvm import tirx

    bits = tirx.Var("bits", "uint32")  # bound once: a chain of roundings stays linear
    lsb = (bits >> _u32(16)) & _u32(1)
    return _float(tirx.Let(bits, _bits(x), (bits + _u32(0x7FFF) + lsb) & _u32(0xFFFF0000)))


def round_format(x: Any, fmt: FloatFormat) -> Any:
    """The float32 value ``x`` rounded to nearest even in ``fmt``, as float32 (ml_dtypes'
    float32 -> narrow -> float32, bit for bit)."""
    from tvm import tirx

    bits = tirx.Var("bits", "uint32")  # bound once (a Let) around the body below
    sign = bits & _u32(0x80000000)
    mag = bits & _u32(0x7FFFFFFF)
    shift = 23 - fmt.mantissa_bits
    # Normal results: drop the low mantissa bits, ties to even; a carry may bump the exponent.
    normal = (mag + _u32((1 << (shift - 1)) - 1) + ((mag >> _u32(shift)) & _u32(1))) & _u32(
        0xFFFFFFFF ^ ((1 << shift) - 1)
    )
    # Subnormal results: the significand (with its hidden bit) shifted to the format's
    # smallest step 2^(min_exponent - mantissa_bits), ties to even. float32's own subnormals
    # are far below half that step, and any shift beyond 25 leaves 0 as well.
    exponent = (mag >> _u32(23)).astype("int32") - 127
    steps = tirx.min(fmt.min_exponent - exponent + shift, 26).astype("uint32")
    significand = (mag & _u32(0x7FFFFF)) | _u32(0x800000)
    half = (_u32(1) << (steps - _u32(1))) - _u32(1)
    k = (significand + half + ((significand >> steps) & _u32(1))) >> steps
    step = tirx.const(2.0 ** (fmt.min_exponent - fmt.mantissa_bits), "float32")
    sub = _bits(k.astype("float32") * step)
    rounded = tirx.Select(exponent >= fmt.min_exponent, normal, sub)
    top = _u32(_float32_bits(fmt.max_finite))
    over = {"nan": _u32(_QNAN), "inf": _u32(0x7F800000), "saturate": top}[fmt.overflow]
    rounded = tirx.Select(rounded > top, over, rounded)
    signed = rounded | sign
    if fmt.unsigned_zero:
        signed = tirx.Select(rounded == _u32(0), _u32(0), signed)
    nan_sign = {"keep": sign, "set": _u32(_SIGN), "flip": sign ^ _u32(_SIGN)}[fmt.nan_sign]
    nan = _u32(fmt.nan) | nan_sign
    if fmt.overflow == "nan":  # an overflow is the format's NaN
        signed = tirx.Select(rounded == _u32(_QNAN), nan, signed)
    return _float(tirx.Let(bits, _bits(x), tirx.Select(mag > _u32(0x7F800000), nan, signed)))


def round_to(x: Any, dtype: str) -> Any:
    """``x`` (float32) rounded elementwise to narrow float ``dtype``, held in float32."""
    from tvm import te

    if dtype == "bf16":
        return te.compute(x.shape, lambda *i: round_bf16(x(*i)), name="round_bf16")
    fmt = FORMATS[dtype]
    return te.compute(x.shape, lambda *i: round_format(x(*i), fmt), name=f"round_{dtype}")


def sequential_sum(x: Any, axis: int, dtype: str, unroll: int = 64) -> Any:
    """The sum along ``axis`` (kept, length 1) of float32 ``x`` in narrow float ``dtype``:
    ``((x0 + x1) + x2) + ...``, each partial sum rounded, as NumPy reduces an ml_dtypes
    array. Up to ``unroll`` terms the chain is written out, so no schedule can reorder it;
    a longer axis is a reduction whose combiner rounds (in order unless a schedule splits
    it, which then differs by rounding steps only)."""
    from tvm import te, tirx

    n = int(x.shape[axis])
    shape = tuple(1 if d == axis else x.shape[d] for d in range(len(x.shape)))

    def rnd(v: Any) -> Any:
        return round_bf16(v) if dtype == "bf16" else round_format(v, FORMATS[dtype])

    def at(i: Sequence[Any], k: Any) -> Any:
        return x(*(k if d == axis else v for d, v in enumerate(i)))

    if n <= unroll:

        def body(*i: Any) -> Any:
            # Let(t1, rnd(x0 + x1), Let(t2, rnd(t1 + x2), ... t_n-1)): each partial sum is
            # bound once, so the expression grows linearly with the axis.
            partials = [tirx.Var(f"t{k}", "float32") for k in range(n)]
            total: Any = partials[-1]
            for k in range(n - 1, 0, -1):
                total = tirx.Let(partials[k], rnd(partials[k - 1] + at(i, k)), total)
            return tirx.Let(partials[0], at(i, 0), total)

        return te.compute(shape, body, name=f"sum_{dtype}")
    adder = te.comm_reducer(lambda a, b: rnd(a + b), lambda t: tirx.const(0.0, t), name="add_r")
    k = te.reduce_axis((0, n), name="k")
    return te.compute(shape, lambda *i: adder(at(i, k), axis=k), name=f"sum_{dtype}")


def cast_to_float(x: Any, dtype: str, saturate: bool) -> Any:
    """ONNX Cast to a float8/float4 type (``numerics.cast_to_narrow_float``): to float32,
    clipped to +-the largest finite value when ``saturate`` (NaN stays NaN), rounded."""
    from tvm import te, tirx

    top = tirx.const(FORMATS[dtype].max_finite, "float32")
    fmt = FORMATS[dtype]

    def body(*i: Any) -> Any:
        v = x(*i).astype("float32")
        if saturate:  # tirx.min/max would drop a NaN: keep it explicitly
            v = tirx.Select(tirx.isnan(v), v, tirx.max(tirx.min(v, top), -top))
        return round_format(v, fmt)

    return te.compute(x.shape, body, name=f"cast_{dtype}")


def float_to_sub_byte(x: Any, dtype: str, carrier: str) -> Any:
    """ONNX Cast from float to a 2- or 4-bit integer as ml_dtypes converts (the
    interpreter's ``cast_to_sub_byte_int``): truncation toward zero, and 0 where the
    truncated value is out of range or NaN."""
    from tvm import te, tirx

    lo, hi = INT_RANGES[dtype]

    def body(*i: Any) -> Any:
        v = tirx.trunc(x(*i).astype("float32"))
        inside = (v >= tirx.const(lo, "float32")) & (v <= tirx.const(hi, "float32"))
        return tirx.Select(inside, v, tirx.const(0, "float32")).astype(carrier)

    return te.compute(x.shape, body, name=f"cast_{dtype}")


def wrap_int(x: Any, dtype: str, carrier: str) -> Any:
    """ONNX Cast from an integer to a 2- or 4-bit integer: the higher bits are discarded
    (two's complement wrap, ``(x - lo) % span + lo``; span is a power of two)."""
    from tvm import te, tirx

    lo, hi = INT_RANGES[dtype]
    mask = tirx.const(hi - lo, "int64")

    def body(*i: Any) -> Any:
        v = x(*i).astype("int64")
        return (((v - tirx.const(lo, "int64")) & mask) + tirx.const(lo, "int64")).astype(carrier)

    return te.compute(x.shape, body, name=f"cast_{dtype}")
