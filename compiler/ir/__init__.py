"""The graph IR: types, graph, op table (with the op facts next to it, op_facts.py), printer,
parser and verifier."""

from compiler.ir.graph import Graph, Node, Value, clean_name
from compiler.ir.ops import OPS, OpDef, get_op, infer_types
from compiler.ir.parser import parse
from compiler.ir.printer import print_graph
from compiler.ir.types import QuantParams, TensorType, f32
from compiler.ir.verifier import verify

__all__ = [
    "OPS",
    "Graph",
    "Node",
    "OpDef",
    "QuantParams",
    "TensorType",
    "Value",
    "clean_name",
    "f32",
    "get_op",
    "infer_types",
    "parse",
    "print_graph",
    "verify",
]
