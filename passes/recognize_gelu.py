"""recognize-gelu: the erf and tanh spellings of GELU become ``nn.gelu``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph, Node, Value
from compiler.ir.types import is_float
from compiler.rewrite import Reject, RewritePass
from passes._match import close, morph, other_operand, producer, scalar, sole_user, split_const

if TYPE_CHECKING:
    from compiler.context import PassContext

SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
KAPPA = 0.044715
#: How many multiplications may separate ``1 + erf(...)`` from the final product.
_MAX_CHAIN = 4


def _by_const(graph: Graph, value: Value, op: str) -> tuple[Value, float] | None:
    """``value = op(v, c)`` (or ``op(c, v)`` for mul) with a scalar constant: (v, c)."""
    node = producer(value, op)
    split = split_const(graph, node) if node is not None else None
    if split is None or split[1].size != 1:
        return None
    if op == "math.div" and split[0] is not node.inputs[0]:  # type: ignore[union-attr]
        return None
    return split[0], float(split[1].reshape(()))


def _erf_operand(graph: Graph, erf: Node) -> Value | None:
    """x from ``erf(x / sqrt(2))`` or ``erf(x * 0.7071)``."""
    if (div := _by_const(graph, erf.inputs[0], "math.div")) and close(div[1], SQRT2):
        return div[0]
    if (mul := _by_const(graph, erf.inputs[0], "math.mul")) and close(mul[1], 1 / SQRT2):
        return mul[0]
    return None


def _is_cube_of(graph: Graph, value: Value, x: Value) -> bool:
    """``pow(x, 3)``, ``x * (x * x)`` or ``(x * x) * x``."""
    if (p := _by_const(graph, value, "math.pow")) is not None:
        return p[0] is x and p[1] == 3.0
    node = producer(value, "math.mul")
    if node is None or x not in node.inputs:
        return False
    square = producer(other_operand(node, x), "math.mul")
    return square is not None and square.inputs[0] is x and square.inputs[1] is x


def _tanh_operand(graph: Graph, tanh: Node) -> Value | None:
    """x from ``tanh(0.7979 * (x + 0.044715 * x^3))``."""
    outer = _by_const(graph, tanh.inputs[0], "math.mul")
    inner = producer(outer[0], "math.add") if outer and close(outer[1], SQRT_2_OVER_PI) else None
    if inner is None:
        return None
    for x, term in ((inner.inputs[0], inner.inputs[1]), (inner.inputs[1], inner.inputs[0])):
        cubic = _by_const(graph, term, "math.mul")
        if cubic and close(cubic[1], KAPPA) and _is_cube_of(graph, cubic[0], x):
            return x
    return None


def _one_plus(graph: Graph, node: Node) -> Value | None:
    """The output of ``1 + node`` when that is node's only use."""
    add = sole_user(graph, node.output)
    if add is None or add.op != "math.add":
        return None
    split = split_const(graph, add)
    if split is None or split[1].size != 1 or not close(float(split[1].reshape(())), 1.0):
        return None
    return add.output


def _half_x_times(graph: Graph, p: Value, x: Value) -> Node | Reject | None:
    """The node computing ``x * 0.5 * p`` in any association (or ``x * p / 2``)."""
    has_x, factor, cur = False, 1.0, p
    for _ in range(_MAX_CHAIN):
        user = sole_user(graph, cur)
        if user is None:
            return Reject("an intermediate of the GELU has other users") if cur.uses else None
        other = other_operand(user, cur)
        c = scalar(graph, other)
        if user.op == "math.div" and user.inputs[0] is cur and c:
            factor /= c
        elif user.op != "math.mul":
            return None
        elif c is not None:
            factor *= c
        elif other is x and not has_x:
            has_x = True
        elif (half := _by_const(graph, other, "math.mul")) and half[0] is x and not has_x:
            has_x, factor = True, factor * half[1]
        else:
            return None
        cur = user.output
        if has_x and close(factor, 0.5):
            return user if user.output.type == x.type else None
    return None


@dataclass(frozen=True)
class RecognizeGelu(RewritePass):
    """The exported forms of GELU -> ``nn.gelu`` (``approximate="tanh"`` for the tanh form).

    Before (erf form; ``/ 1.4142`` may be ``* 0.7071``, and the 0.5 and x factors may come in
    any order or association, or as ``/ 2``)::

        %h: f32[1,8] = math.div(%x, %sqrt2)
        %e: f32[1,8] = math.erf(%h)
        %p: f32[1,8] = math.add(%e, %one)
        %m: f32[1,8] = math.mul(%x, %p)
        %y: f32[1,8] = math.mul(%m, %half)

    After::

        %y: f32[1,8] = nn.gelu(%x)

    The tanh form is ``0.5 * x * (1 + tanh(0.79788 * (x + 0.044715 * x^3)))`` with ``x^3`` as
    ``pow(x, 3)`` or two multiplications. Constants match within 1e-4 relative. Must not fire
    when ``erf``/``tanh``, ``1 + ...`` or a partial product has another user (the
    recognized op would not replace it; the graph would compute both).
    """

    name: ClassVar[str] = "recognize-gelu"

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        if node.op == "math.erf":
            x, attrs = _erf_operand(graph, node), {}
        elif node.op == "math.tanh":
            x, attrs = _tanh_operand(graph, node), {"approximate": "tanh"}
        else:
            return None
        if x is None or not is_float(x.dtype):
            return None
        p = _one_plus(graph, node)
        if p is None:
            return Reject("erf/tanh result has other users") if len(node.output.uses) > 1 else None
        last = _half_x_times(graph, p, x)
        if not isinstance(last, Node):
            return last
        morph(graph, last, "nn.gelu", [x], attrs)
        return True
