"""The converter table of the torch.export frontend and what a converter works with.

``converts("aten.add.Tensor", ...)`` registers a converter ``(ctx, node) -> IR value(s)``;
``ImportContext`` gives it the node's arguments by ATen schema name (``ctx.args``) and
helpers that emit IR (casts, rank-0 scalar constants, constants). A converter raises
``Reject("why")`` for a form it cannot express; the frontend collects those per node.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.ir import Graph, TensorType, Value
from compiler.ir.types import Dim, Shape

if TYPE_CHECKING:
    import torch
    from torch.fx import Node as FxNode

log = logging.getLogger(__name__)

_FOLD_LIMIT = 1 << 24  # elements; folding bigger results would bloat the constant table

Converter = Callable[["ImportContext", "FxNode"], Any]
CONVERTERS: dict[str, Converter] = {}


def converts(*ops: str) -> Callable[[Converter], Converter]:
    """Register a converter for aten overloads (``aten.add.Tensor``) or packets (``aten.add``)."""

    def register(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return register


class Reject(Exception):
    """A converter declines a node (an attribute or form it cannot express); says why."""


POISON = object()  # env entry of a node that could not be converted


def torch_dtype_name(dtype: torch.dtype) -> str:
    """The IR dtype of a torch dtype; Reject if the IR has none (complex, fp8, ...)."""
    import torch

    table = {
        torch.float32: "f32",
        torch.float16: "f16",
        torch.bfloat16: "bf16",
        torch.float64: "f64",
        torch.int64: "i64",
        torch.int32: "i32",
        torch.int16: "i16",
        torch.int8: "i8",
        torch.uint8: "u8",
        torch.bool: "bool",
    }
    if dtype not in table:
        raise Reject(f"dtype {dtype} has no IR dtype")
    return table[dtype]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU NumPy copy of ``tensor`` in the array dtype the IR stores it as.

    A copy, not a view: the IR treats constants as immutable, the model's weights are not.
    """
    import torch

    t = tensor.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return np.array(t.numpy(), copy=True, order="C")


def op_name(node: FxNode) -> str:
    """``aten.add.Tensor`` for aten overloads, the function name for anything else."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", "") or ""
    return str(target) if "OpOverload" in type(target).__name__ else f"{module}.{name}".lstrip(".")


class SymbolNames:
    """Renders torch symbolic sizes (``s75``, ``2*s75``) as IR dims named after the Dims."""

    _OK = re.compile(r"^[A-Za-z0-9_'*+]+$")

    def __init__(self, names: dict[str, str]):
        self.names = names

    def dim(self, d: Any) -> Dim:
        import torch

        if isinstance(d, int):
            return d
        if isinstance(d, torch.SymInt):
            concrete = d.node.maybe_as_int()
            if concrete is not None:
                return int(concrete)
            expr = d.node.expr
            text = str(expr).replace(" ", "")
            for sym in sorted(expr.free_symbols, key=lambda s: -len(str(s))):
                text = re.sub(rf"\b{sym}\b", self.names.get(str(sym), str(sym)), text)
            if self._OK.match(text):
                return text
            first = sorted(self.names.get(str(s), str(s)) for s in expr.free_symbols)[0]
            return f"{first}'"
        raise Reject(f"size {d!r} is neither an int nor a symbolic int")

    def shape(self, sizes: Sequence[Any]) -> Shape:
        return tuple(self.dim(d) for d in sizes)


class ImportContext:
    """What a converter sees: the node's bound arguments, the IR graph and emit helpers."""

    def __init__(self, graph: Graph, symbols: SymbolNames):
        self.graph = graph
        self.symbols = symbols
        self.env: dict[Any, Any] = {}
        self.node: FxNode | None = None
        self.loc: str = ""
        self.args: dict[str, Any] = {}
        self._folded: dict[int, np.ndarray] = {}
        #: Values emitted for the current node (so its result can take the node's name).
        self.created: list[Value] = []

    # ---- arguments ---------------------------------------------------------------------
    def bind(self, node: FxNode) -> dict[str, Any]:
        """Arguments by schema name, defaults filled in (fx nodes stay fx nodes)."""
        schema = getattr(node.target, "_schema", None)
        if schema is None:
            return {str(i): a for i, a in enumerate(node.args)} | dict(node.kwargs)
        bound: dict[str, Any] = {}
        for i, arg in enumerate(schema.arguments):
            if i < len(node.args) and not arg.kwarg_only:
                bound[arg.name] = node.args[i]
            elif arg.name in node.kwargs:
                bound[arg.name] = node.kwargs[arg.name]
            elif arg.has_default_value():
                bound[arg.name] = arg.default_value
            else:
                bound[arg.name] = None
        return bound

    def is_tensor(self, arg: Any) -> bool:
        from torch.fx import Node

        return isinstance(arg, Node) and isinstance(self.env.get(arg), Value)

    def value(self, arg: Any) -> Value:
        """The IR value of a tensor argument."""
        if not self.is_tensor(arg):
            raise Reject(f"expected a tensor operand, got {arg!r}")
        return self.env[arg]

    def optional(self, arg: Any) -> Value | None:
        return None if arg is None else self.value(arg)

    def scalar_of(self, arg: Any) -> Any:
        """A Python scalar argument, or the dim expression of a symbolic one."""
        from torch.fx import Node

        if isinstance(arg, Node):
            entry = self.env.get(arg)
            if isinstance(entry, Value):
                raise Reject("a tensor where a scalar was expected")
            return entry
        return arg

    def ints(self, arg: Any, what: str = "size") -> list[int]:
        """A list of static ints (a single int becomes a one-element list)."""
        items = arg if isinstance(arg, list | tuple) else [arg]
        out = []
        for item in items:
            d = self.scalar_of(item)
            if not isinstance(d, int) or isinstance(d, bool):
                raise Reject(f"{what} {d!r} is not a static integer")
            out.append(d)
        return out

    # ---- the node's own output ---------------------------------------------------------
    def meta(self, arg: Any = None) -> Any:
        node = self.node if arg is None else arg
        assert node is not None
        return node.meta.get("val")

    def out_dtype(self) -> str:
        val = self.meta()
        if isinstance(val, list | tuple):
            val = val[0]
        return torch_dtype_name(val.dtype)

    def out_shape(self) -> Shape:
        return self.symbols.shape(self.meta().shape)

    def result_dtype(self, a: Any, b: Any) -> str:
        """torch's type promotion of two operands (tensors or Python scalars)."""
        import torch

        def dummy(x: Any) -> Any:
            if self.is_tensor(x):
                val = self.meta(x)
                return torch.empty(() if val.dim() == 0 else (0,), dtype=val.dtype)
            return self.scalar_of(x)

        return torch_dtype_name(torch.result_type(dummy(a), dummy(b)))

    # ---- emitting ----------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any] | None = None) -> Value:
        return self.emit_multi(op, inputs, attrs)[0]

    def emit_multi(
        self, op: str, inputs: Sequence[Value], attrs: dict[str, Any] | None = None
    ) -> list[Value]:
        from compiler.ir.ops import get_op

        attrs = attrs or {}
        hint = self.node.name if self.node is not None else op.split(".")[-1]
        opdef = get_op(op)
        names = [hint] * opdef.num_outputs(opdef.with_defaults(attrs))
        outputs = self.graph.add_node(op, list(inputs), attrs, names=names, loc=self.loc).outputs
        self.created.extend(outputs)
        return outputs

    def const(self, data: Any, hint: str, dtype: str | None = None) -> Value:
        """A constant named after ``hint``, of IR ``dtype`` (bf16 is stored as float32)."""
        from compiler.ir.types import NUMPY_DTYPES

        array = np.asarray(data)
        if dtype is None:
            return self.graph.add_const(hint, array, loc=self.loc)
        array = array.astype(NUMPY_DTYPES[dtype])
        t = TensorType(dtype, tuple(int(d) for d in array.shape))
        return self.graph.add_const(hint, array, type=t, loc=self.loc)

    def scalar(self, number: Any, dtype: str) -> Value:
        """A rank-0 constant of ``dtype`` (Python scalars in binary ops become these)."""
        if not isinstance(number, int | float | bool):
            raise Reject(f"scalar operand {number!r} is not a number known at export time")
        return self.const(number, "scalar", dtype)

    def cast(self, value: Value, dtype: str) -> Value:
        if value.dtype == dtype:
            return value
        return self.emit("tensor.cast", [value], {"to": dtype})

    def operand(self, arg: Any, dtype: str) -> Value:
        """A tensor argument cast to ``dtype``, or a scalar argument as a rank-0 constant."""
        if self.is_tensor(arg):
            return self.cast(self.value(arg), dtype)
        return self.scalar(self.scalar_of(arg), dtype)

    def const_data(self, value: Value) -> np.ndarray | None:
        """The data of ``value`` if it depends on constants only (evaluated by the interpreter)."""
        if value.is_const:
            return self.graph.const_value(value)
        producer = value.producer
        if producer is None:
            return None
        if id(value) not in self._folded:
            from compiler.interpreter import IMPLS, Context
            from compiler.ir.types import NUMPY_DTYPES

            args = [self.const_data(v) for v in producer.inputs]
            if any(a is None for a in args) or producer.op not in IMPLS:
                return None
            try:
                outs = IMPLS[producer.op](Context(self.graph), producer, args)  # type: ignore[arg-type]
            except Exception:  # e.g. a bound that needs symbol values: not a constant then
                return None
            for out, data in zip(producer.outputs, outs, strict=True):
                self._folded[id(out)] = np.asarray(data).astype(NUMPY_DTYPES[out.dtype])
        return self._folded[id(value)]


def fold(ctx: ImportContext, node: FxNode) -> Any:
    """Evaluate ``node`` with torch on constant operands; Reject if it cannot be."""
    if not try_fold(ctx, node):
        raise Reject("operands are not constants known at export time")
    return ctx.env[node]


def try_fold(ctx: ImportContext, node: FxNode) -> bool:
    """Run the op on constant operands and store the result as constants; False if not."""
    import torch
    from torch.fx import Node

    def real(arg: Any) -> Any:
        if isinstance(arg, Node):
            entry = ctx.env.get(arg)
            if isinstance(entry, Value):
                data = ctx.const_data(entry)
                if data is None:
                    raise Reject("not constant")
                return torch.from_numpy(np.array(data))
            if isinstance(entry, int | float | bool):
                return entry
            raise Reject("symbolic")
        if isinstance(arg, list | tuple):
            return type(arg)(real(a) for a in arg)
        return arg

    val = node.meta.get("val")
    vals: list[Any] = list(val) if isinstance(val, list | tuple) else [val]
    if not all(isinstance(v, torch.Tensor) for v in vals) or not callable(node.target):
        return False
    if torch.Tag.nondeterministic_seeded in getattr(node.target, "tags", ()):
        return False  # a random op folded once would give the same "random" tensor every run
    if any(not all(isinstance(d, int) for d in v.shape) for v in vals):
        return False
    if sum(v.numel() for v in vals) > _FOLD_LIMIT:
        return False
    try:
        args, kwargs = real(list(node.args)), {k: real(v) for k, v in node.kwargs.items()}
        with torch.no_grad():
            out = node.target(*args, **kwargs)
        outs = out if isinstance(out, list | tuple) else [out]
        consts = [ctx.const(to_numpy(o), node.name, torch_dtype_name(o.dtype)) for o in outs]
    except Exception as e:  # folding is an attempt: any failure means "not foldable"
        log.debug("cannot fold %s: %s", node.name, e)
        return False
    ctx.env[node] = consts if isinstance(out, list | tuple) else consts[0]
    return True
