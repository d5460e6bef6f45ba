"""The graph IR: types, graph, op table (with the op facts next to it, op_facts.py), printer,
parser and verifier.

This package is the op table's loader: ``compiler.ir.ops`` is the leaf registry (``OPS`` and
``register_op``), each ``ops_*`` module registers its ops into it and imports nothing but the
leaf, and the import block below loads every op module once, in a fixed order. Any import of
``compiler.ir.ops`` runs this first, so the table is always whole when it is read.
"""

from compiler.ir import (  # noqa: F401  (each registers its ops into OPS; ops_core first)
    ops_core,
    ops_dynamic,
    ops_extra,
    ops_llm,
    ops_more,
    ops_nn,
    ops_quant,
    ops_signal,
    ops_tensor,
    ops_vision,
)
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
