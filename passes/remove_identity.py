"""remove-identity: drop ops that compute nothing at inference time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from compiler.ir.graph import Graph, Node
from compiler.rewrite import Reject, RewritePass
from passes._match import bypass

if TYPE_CHECKING:
    from compiler.context import PassContext


def _same_type(node: Node) -> bool:
    return node.inputs[0].type == node.output.type


#: op -> when a node of it is the identity on its operand.
IDENTITIES: dict[str, Callable[[Node], bool]] = {
    "nn.dropout": lambda node: True,  # inference: dropout passes its input through
    "tensor.identity": lambda node: True,
    "tensor.cast": _same_type,  # same dtype and same quantization parameters
    "tensor.expand": _same_type,  # broadcasting to the shape it already has
}


@dataclass(frozen=True)
class RemoveIdentity(RewritePass):
    """Bypass ``nn.dropout``, ``tensor.identity``, casts to the same type, no-op expands.

    Before::

        %d: f32[1,8] = nn.dropout(%x) {p=0.1}
        %c: f32[1,8] = tensor.cast(%d) {to="f32"}
        %y: f32[1,8] = nn.relu(%c)

    After::

        %y: f32[1,8] = nn.relu(%x)

    A cast fires only when the operand's type, quantization parameters included, is already
    the target type; an expand only when the shape does not change (symbolic dimensions must
    match by name). A graph output that is bypassed becomes the operand itself.
    """

    name: ClassVar[str] = "remove-identity"

    def rewrite(self, graph: Graph, node: Node, ctx: PassContext) -> bool | Reject | None:
        is_identity = IDENTITIES.get(node.op)
        if is_identity is None or not is_identity(node):
            return None
        return bypass(graph, node, node.inputs[0])
