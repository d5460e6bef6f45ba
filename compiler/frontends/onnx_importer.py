"""The ONNX import state: what each ONNX tensor name stands for, and node conversion.

``Importer`` maps every ONNX tensor name to an IR ``Value`` or to data known at import (a
NumPy array; object dtype when it holds symbolic dimensions such as ``batch``). Known data
becomes an IR constant only when a real op uses it. ``Importer.convert`` folds a node whose
inputs are all known (NumPy folders in ``onnx_ops``, else ``onnx.reference``), or runs its
converter, which sees the node as an ``OnnxNode``; a converter that cannot express a node
raises ``Reject`` and the import goes on, collecting every such node for one
``UnsupportedOpsError``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import FrontendError, ShapeError, Unsupported
from compiler.ir import Graph, TensorType, Value, clean_name
from compiler.ir.types import Dim, dtype_of_numpy

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: ONNX TensorProto element type -> IR dtype (the ones the IR has).
ONNX_DTYPES: dict[int, str] = {
    1: "f32",
    2: "u8",
    3: "i8",
    4: "u16",
    5: "i16",
    6: "i32",
    7: "i64",
    9: "bool",
    10: "f16",
    11: "f64",
    12: "u32",
    13: "u64",
    16: "bf16",
    17: "f8e4m3fn",
    18: "f8e4m3fnuz",
    19: "f8e5m2",
    20: "f8e5m2fnuz",
    21: "u4",
    22: "i4",
    23: "f4e2m1",
    25: "u2",
    26: "i2",
}

#: Ops never evaluated at import even when every input is known: random ops must stay random,
#: control flow is inlined by its converter, and a weight's DequantizeLinear keeps its scale
#: on the IR type instead of being folded into float weights.
NO_FOLD: frozenset[str] = frozenset(
    {
        "DequantizeLinear",
        "If",
        "Loop",
        "Scan",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)

_FOLD_LIMIT = 1 << 24  # elements; folding a bigger result would bloat the constant table


def _check_required_inputs(proto: onnx.NodeProto, opset: int, loc: str) -> None:
    """A FrontendError when an input the op's schema requires is missing ('' or absent): no
    converter or folder has to guess what a model without its data operand means."""
    import onnx.defs

    try:
        schema = onnx.defs.get_schema(proto.op_type, opset, proto.domain or "")
    except onnx.defs.SchemaError:
        return  # an op onnx does not know: its converter (or the unsupported list) decides
    single = onnx.defs.OpSchema.FormalParameterOption.Single
    for i, formal in enumerate(schema.inputs):
        if formal.option == single and (i >= len(proto.input) or not proto.input[i]):
            raise FrontendError(
                f"ONNX {proto.op_type} node {loc!r}: required input {i} ({formal.name!r}) "
                "is missing"
            )


class Reject(Exception):
    """A converter declines a node (an attribute or form it cannot express); says why."""


class _NoBody(Reject):
    """No converter, and no function body to expand either (do not try it twice)."""


Known = np.ndarray  # a tensor's value known at import (object dtype: holds symbolic dims)
Output = Value | np.ndarray  # what a converter returns per ONNX output


def ir_dtype(elem_type: int, what: str) -> str:
    """The IR dtype of an ONNX element type; Reject naming ``what`` if the IR has none."""
    if elem_type not in ONNX_DTYPES:
        import onnx

        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type else "UNDEFINED"
        raise Reject(f"{what} has element type {name}, which the IR has no dtype for")
    return ONNX_DTYPES[elem_type]


def symbol_name(text: str) -> str:
    """A symbolic dimension name the IR text can hold (``[A-Za-z0-9_]``, not all digits)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text) or "dim"
    return "d" + name if name.isdigit() else name


def is_symbolic(array: np.ndarray) -> bool:
    return array.dtype == object


def normalize_known(array: Any) -> np.ndarray:
    """Symbolic data as an object array (NumPy hands back a lone name as a str array), and an
    object array whose entries turned out all integers as int64 again."""
    array = np.asarray(array)
    if array.dtype.kind == "U":
        array = array.astype(object)
    if array.dtype == object and not any(isinstance(v, str) for v in array.flat):
        return array.astype(np.int64)
    return array


class OnnxNode:
    """What a converter sees: one ONNX node, its attributes, its inputs as values or data."""

    def __init__(self, importer: Importer, proto: onnx.NodeProto, loc: str):
        self.importer = importer
        self.proto = proto
        self.op_type: str = proto.op_type
        self.loc = loc
        self.opset = importer.opset
        self.inputs: list[str] = list(proto.input)
        self.outputs: list[str] = list(proto.output)
        self.graph = importer.graph
        self._attrs: dict[str, Any] | None = None

    # ---- attributes --------------------------------------------------------------------
    def attr(self, key: str, default: Any = None) -> Any:
        if self._attrs is None:
            self._attrs = {a.name: _attribute_value(a) for a in self.proto.attribute}
        return self._attrs.get(key, default)

    # ---- inputs ------------------------------------------------------------------------
    def has(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] != ""

    def known(self, index: int) -> Known | None:
        """The value of input ``index`` if it is known at import (absent input: None)."""
        return self.importer.known(self.inputs[index]) if self.has(index) else None

    def need_known(self, index: int, what: str) -> Known:
        """Input ``index``, which must be known at import; Reject naming ``what`` if not."""
        data = self.known(index)
        if data is None:
            raise Reject(f"{what} (input {index}) must be a constant, not computed at runtime")
        return data

    def ints(self, index: int, what: str, symbolic: bool = False) -> list[Any]:
        """A known integer vector input as a Python list (names only where ``symbolic``)."""
        data = self.need_known(index, what)
        if is_symbolic(data) and not symbolic:
            raise Reject(
                f"{what}: computed from symbolic dimensions {_symbols(data)}; specialize them "
                "with import_onnx(input_shapes=...)"
            )
        return [v if isinstance(v, str) else int(v) for v in data.reshape(-1).tolist()]

    def value(self, index: int, dtype: str | None = None) -> Value:
        """Input ``index`` as an IR value (known data becomes a constant), cast to ``dtype``."""
        if not self.has(index):
            raise Reject(f"input {index} is missing")
        name = self.inputs[index]
        if dtype is not None and (data := self.importer.known(name)) is not None:
            if dtype_of_numpy_or_none(data) != dtype:
                return self.constant(data.astype(TensorType(dtype, ()).np_dtype), name)
        value = self.importer.value(name)
        if dtype is not None and value.dtype != dtype:
            return self.emit("tensor.cast", [value], {"to": dtype}, hint=f"as_{dtype}")
        return value

    def type(self, index: int) -> TensorType:
        """The IR type of input ``index`` (of its data, when it is known)."""
        return self.importer.type_of(self.inputs[index])

    def shape(self, index: int) -> tuple[Dim, ...]:
        return self.type(index).shape

    def static_shape(self, index: int, what: str) -> tuple[int, ...]:
        shape = self.shape(index)
        if not all(isinstance(d, int) for d in shape):
            raise Reject(f"{what} needs a static shape, got {list(shape)}")
        return tuple(int(d) for d in shape)

    def used(self, index: int) -> bool:
        """Whether output ``index`` exists and something reads it."""
        return (
            index < len(self.outputs)
            and self.outputs[index] != ""
            and self.outputs[index] in self.importer.consumed
        )

    # ---- building ----------------------------------------------------------------------
    def name_hint(self, hint: str | None = None, index: int = 0) -> str:
        base = self.outputs[index] if index < len(self.outputs) else self.op_type
        return tensor_name(base) + (f"_{hint}" if hint else "")

    def emit(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: dict[str, Any] | None = None,
        out_types: Sequence[TensorType] | None = None,
        hint: str | None = None,
    ) -> Value:
        """Add one IR node (named after output 0, suffixed by ``hint`` for intermediates)."""
        return self.emit_multi(op, inputs, attrs, out_types, [self.name_hint(hint)])[0]

    def emit_multi(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: dict[str, Any] | None,
        out_types: Sequence[TensorType] | None,
        names: Sequence[str],
    ) -> list[Value]:
        node = self.graph.add_node(op, inputs, attrs, out_types, names=names, loc=self.loc)
        return node.outputs

    def constant(self, data: np.ndarray, hint: str, type: TensorType | None = None) -> Value:
        """A new IR constant holding ``data`` (named after ``hint``)."""
        data = np.asarray(data)
        if is_symbolic(data):
            raise Reject(f"a tensor depending on symbolic dimensions {_symbols(data)} is needed")
        return self.graph.add_const(tensor_name(hint), data, type, loc=self.loc)

    def derived(self, index: int, key: str, make: Callable[[np.ndarray], np.ndarray]) -> Value:
        """A constant computed from known input ``index`` once (a transposed weight, say)."""
        name = self.inputs[index]
        cache = self.importer.derived
        if (name, key) not in cache:
            data = make(self.need_known(index, "the weight"))
            cache[(name, key)] = self.constant(data, name)
        return cache[(name, key)]

    def scalar(self, number: float, dtype: str) -> Value:
        data = np.asarray(number, dtype=TensorType(dtype, ()).np_dtype)
        # The type is explicit: bf16 data is held in float32, which alone would read as f32.
        return self.constant(data, self.name_hint("c"), TensorType(dtype, ()))


def dtype_of_numpy_or_none(data: np.ndarray) -> str | None:
    try:
        return "i64" if is_symbolic(data) else dtype_of_numpy(data.dtype)
    except TypeError:
        return None


def tensor_name(name: str) -> str:
    """The IR value name of an ONNX tensor (``/layer1/Conv_output_0`` -> ``layer1_Conv_...``)."""
    return clean_name(name.strip("/")) if name.strip("/") else clean_name(name)


def _symbols(data: np.ndarray) -> list[str]:
    return sorted({v for v in data.flat if isinstance(v, str)})


def _attribute_value(attr: onnx.AttributeProto) -> Any:
    import onnx
    from onnx import numpy_helper

    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    return value


class Importer:
    """The state of one import: the IR graph, and what every ONNX tensor name stands for."""

    def __init__(self, graph: Graph, opset: int, consumed: set[str]):
        self.graph = graph
        self.opset = opset
        self.consumed = consumed
        self.values: dict[str, Value] = {}
        self.data: dict[str, Known] = {}
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.derived: dict[tuple[str, str], Value] = {}
        self.poisoned: set[str] = set()
        self.unsupported: list[Unsupported] = []

    # ---- what a name stands for --------------------------------------------------------
    def known(self, name: str) -> Known | None:
        if name in self.data:
            return self.data[name]
        if name in self.initializers:
            from onnx import numpy_helper

            init = self.initializers.pop(name)
            try:
                self.data[name] = numpy_helper.to_array(init)
            except Exception as e:  # external data not found, wrong byte count, odd dtype
                raise FrontendError(
                    f"initializer {name!r} cannot be read: {type(e).__name__}: {e}"
                ) from None
            return self.data[name]
        value = self.values.get(name)
        return self.graph.const_value(value) if value is not None else None

    def value(self, name: str) -> Value:
        if name not in self.values:
            data = self.known(name)
            if data is None:
                raise FrontendError(f"ONNX tensor {name!r} is used before it is defined")
            if is_symbolic(data):
                raise Reject(
                    f"tensor {name!r} holds symbolic dimensions {_symbols(data)} and is used "
                    "as runtime data; specialize them with import_onnx(input_shapes=...)"
                )
            try:
                self.values[name] = self.graph.add_const(tensor_name(name), data)
            except TypeError as e:
                raise Reject(f"constant {name!r}: {e}") from None
        return self.values[name]

    def type_of(self, name: str) -> TensorType:
        if name in self.values:
            return self.values[name].type
        data = self.known(name)
        if data is None:
            raise FrontendError(f"ONNX tensor {name!r} is used before it is defined")
        dtype = dtype_of_numpy_or_none(data)
        if dtype is None:
            raise Reject(f"tensor {name!r} has NumPy dtype {data.dtype}, which the IR lacks")
        return TensorType(dtype, tuple(int(d) for d in data.shape))

    def bind(self, name: str, out: Output) -> None:
        if not name:
            return
        if isinstance(out, Value):
            self.values[name] = out
            self.data.pop(name, None)
        else:
            self.data[name] = normalize_known(out)

    # ---- converting --------------------------------------------------------------------
    def convert_nodes(self, nodes: Iterable[onnx.NodeProto], prefix: str = "") -> None:
        for index, proto in enumerate(nodes):
            self.convert(proto, proto.name or f"{prefix}{proto.op_type}_{index}")

    def convert(self, proto: onnx.NodeProto, loc: str) -> None:
        from compiler.frontends.onnx_ops import CONVERTERS

        op = proto.op_type if proto.domain in ("", "ai.onnx") else f"{proto.domain}.{proto.op_type}"
        if any(name in self.poisoned for name in proto.input if name):
            # Downstream of a reported node its input types are unknown, so its converter
            # cannot run; still report an op that has no converter at all, so that a user
            # meets every missing op of a chain at once, not one per fix.
            if (why := _missing_converter(proto)) is not None:
                self.unsupported.append(Unsupported(op, loc, why))
            self.poisoned.update(proto.output)
            return
        _check_required_inputs(proto, self.opset, loc)
        node = OnnxNode(self, proto, loc)
        try:
            folded = self._fold(node) if proto.domain in ("", "ai.onnx") else None
            outs: Sequence[Output]
            if folded is not None:
                outs = folded
            else:
                if (why := _missing_converter(proto)) is not None:
                    if self._expand(proto, loc):
                        return  # converted as the function body its schema defines
                    raise _NoBody(why)
                outs = CONVERTERS[proto.op_type](node)
            extra = [i for i in range(len(outs), len(proto.output)) if node.used(i)]
            if extra:
                raise Reject(f"output {extra[0]} ({proto.output[extra[0]]!r}) is not supported")
        except Reject as e:
            # A form the converter declines (LayerNormalization's statistics outputs, say)
            # may still be expressible through the op's function body; nodes the converter
            # emitted before declining are left unused and removed after the import.
            if not isinstance(e, _NoBody) and self._expand(proto, loc):
                return
            self.unsupported.append(Unsupported(op, loc, str(e)))
            self.poisoned.update(proto.output)
            return
        except ShapeError as e:
            raise ShapeError(f"ONNX {proto.op_type} node {loc!r}: {e}") from None
        except (ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError) as e:
            # A converter reading attributes or constants out of range (kernel_shape of length
            # 8, a stride of 0, a split count of 2^31): the model is invalid, say where.
            raise FrontendError(
                f"ONNX {op} node {loc!r}: invalid attributes or operands: "
                f"{type(e).__name__}: {e}"
            ) from None
        for name, out in zip(proto.output, outs, strict=False):
            self.bind(name, out)

    def _expand(self, proto: onnx.NodeProto, loc: str) -> bool:
        """Convert ``proto`` through its schema's function body, if it has one."""
        from compiler.frontends.onnx_functions import expand

        if proto.domain not in ("", "ai.onnx"):
            return False
        types: list[TensorType | None] = []
        for name in proto.input:
            try:
                types.append(self.type_of(name) if name else None)
            except Reject:
                types.append(None)
        nodes = expand(proto, self.opset, types, f"{loc}/")
        if nodes is None:
            return False
        self.consumed.update(x for node in nodes for x in node.input if x)
        self.convert_nodes(nodes)
        return True

    def inline(self, branch: onnx.GraphProto, prefix: str) -> list[Output]:
        """Convert a subgraph's nodes in place (the taken If branch); its outputs."""
        for init in branch.initializer:
            self.initializers[init.name] = init
        self.convert_nodes(branch.node, prefix)
        outs: list[Output] = []
        for output in branch.output:
            if output.name in self.poisoned:
                raise Reject("the taken branch has unsupported nodes")
            data = self.known(output.name)
            outs.append(data if data is not None else self.value(output.name))
        return outs

    def _fold(self, node: OnnxNode) -> list[Output] | None:
        """Outputs computed at import when every input is known, else None."""
        from compiler.frontends.onnx_ops import FOLDERS

        if node.op_type in NO_FOLD:
            return None
        inputs = [node.known(i) if node.has(i) else None for i in range(len(node.inputs))]
        if any(x is None for i, x in enumerate(inputs) if node.has(i)):
            return None
        if node.op_type in FOLDERS:
            outs = FOLDERS[node.op_type](node, inputs)
            if outs is not None:
                return list(outs)
        if any(x is not None and is_symbolic(x) for x in inputs):
            if node.op_type not in FOLDERS:
                raise Reject(
                    f"computes on symbolic dimensions {_symbols(_first_symbolic(inputs))}; "
                    "specialize them with import_onnx(input_shapes=...)"
                )
            return None
        if not inputs or sum(x.size for x in inputs if x is not None) > _FOLD_LIMIT:
            return None
        return _reference_fold(node, inputs)


def _missing_converter(proto: onnx.NodeProto) -> str | None:
    """Why no converter exists for ``proto``'s op (foreign domain, unknown op), or None."""
    from compiler.frontends.onnx_ops import CONVERTERS

    if proto.domain not in ("", "ai.onnx"):
        return f"domain {proto.domain!r} is not supported (only ai.onnx)"
    if proto.op_type not in CONVERTERS:
        return "no converter for this ONNX op"
    return None


def _first_symbolic(arrays: list[Known | None]) -> np.ndarray:
    return next(x for x in arrays if x is not None and is_symbolic(x))


def _reference_fold(node: OnnxNode, inputs: list[Known | None]) -> list[Output] | None:
    """Evaluate an op with no NumPy folder through ``onnx.reference`` (rare ops on constants)."""
    from onnx.reference import ReferenceEvaluator

    feeds = {n: x for n, x in zip(node.inputs, inputs, strict=True) if n}
    try:
        outs = ReferenceEvaluator(node.proto, opsets={"": node.opset}).run(None, feeds)
    except Exception as e:  # an op the reference evaluator lacks: convert it normally
        log.debug("could not fold %s %s: %s", node.op_type, node.loc, e)
        return None
    return [np.asarray(o) for o in outs]
