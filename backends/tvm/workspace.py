"""Intermediate tensors made once per loaded model instead of once per call (``workspace``).

Relax's static memory planner (``StaticPlanBlockMemory``) gives every intermediate tensor of
``main`` an offset in a few storage blocks, but the VM still makes them on every call: one
``vm.builtin.alloc_storage`` per block, one ``vm.builtin.alloc_tensor`` per intermediate, one
``vm.builtin.reshape`` per view of one, and one ``vm.builtin.null_value`` for each of them
once it is dead (``KillAfterLastUse``). A SmolLM2 decode step made about 1,000 such calls
for its 450 kernel calls.

``HoistWorkspace``, placed right after the planner, moves every binding of ``main`` whose
result is the same on every call (an ``alloc_storage`` of a constant size, an
``alloc_tensor`` at a constant offset of such a storage, a ``reshape`` of such a tensor to a
constant shape) into a function ``WORKSPACE_FUNC`` without parameters that returns them,
and makes them trailing parameters of ``main``. Trailing parameters (after ``num_input``)
with static shapes are not checked by the VM per call, and parameters are never killed.
The artifact calls ``WORKSPACE_FUNC`` once per VM and appends its results to every call of
``main`` (``backends.tvm.weights.BoundVM``). The VM's per-call checks of the inputs' static
shapes (two builtin calls per input: 128 for a SmolLM2 step with its 60 cache arrays) go
too: the artifact checks its inputs in Python before every call, and each kernel checks the
shapes of its operands.

Why it is safe: the planner never places a result of ``main`` in planned storage (results
stay ``builtin.alloc_tensor``, allocated per call), so nothing a call returns aliases the
workspace; what one call leaves in it the next overwrites before reading, as the planner
already assumed within one call. A VM that runs two calls at once would share it, and a
Relax VM is not re-entrant anyway.
"""

from __future__ import annotations

from typing import Any

#: The function of the built module that makes the workspace.
WORKSPACE_FUNC = "main_workspace"

#: Ops whose result is the same on every call when their operands are (planned storage and
#: the tensors and views placed in it).
_INVARIANT_OPS = ("relax.memory.alloc_storage", "relax.memory.alloc_tensor", "relax.reshape")


def _is_constant_operand(arg: Any) -> bool:
    """A literal operand: a static shape, an integer, a string, a dtype or a constant."""
    import tvm
    from tvm import relax

    if isinstance(arg, relax.ShapeExpr):
        return all(isinstance(v, tvm.tirx.IntImm) for v in arg.values)
    return isinstance(arg, tvm.tirx.IntImm | tvm.ir.expr.StringImm | tvm.ir.expr.GenericConst)


def _invariant(binding: Any, hoisted: set[Any]) -> bool:
    """Whether ``binding`` computes the same value on every call, given the ``hoisted``
    vars before it."""
    import tvm
    from tvm import relax

    value = binding.value
    if not isinstance(binding, relax.VarBinding):
        return False
    # A call's results as a tuple, and its fields again (CallTIRRewrite's form of a call
    # with several results).
    if isinstance(value, relax.Var):  # CallTIRRewrite binds a call's result to a new var
        return value in hoisted
    if isinstance(value, relax.Tuple):
        return all(f in hoisted for f in value.fields)
    if isinstance(value, relax.TupleGetItem):
        return value.tuple_value in hoisted
    if not isinstance(value, relax.Call):
        return False
    if not isinstance(value.op, tvm.ir.Op) or value.op.name not in _INVARIANT_OPS:
        return False
    return all(a in hoisted if isinstance(a, relax.Var) else _is_constant_operand(a)
               for a in value.args)  # fmt: skip


def split_main(func: Any) -> tuple[Any, Any]:
    """``(main, workspace function)`` for the planned ``main`` function ``func`` (the
    workspace may be empty)."""
    from tvm import relax

    body = func.body
    hoisted: list[Any] = []
    seen: set[Any] = set()
    blocks = []
    for block in body.blocks:
        kept = []
        for binding in block.bindings:
            if _invariant(binding, seen):
                hoisted.append(binding)
                seen.add(binding.var)
            else:
                kept.append(binding)
        blocks.append(relax.BindingBlock(kept))
    # The planner never places a result of main in planned storage (see the docstring).
    assert not set(relax.analysis.free_vars(body.body)) & seen, "a result is in the workspace"
    used = set(relax.analysis.free_vars(relax.SeqExpr(blocks, body.body)))
    outputs = [b.var for b in hoisted if b.var in used]
    # The workspace function defines its own vars: a var belongs to one function.
    fresh = {b.var: relax.Var(b.var.name, b.var.ty) for b in hoisted}
    bindings = [relax.VarBinding(fresh[b.var], _renamed(b.value, fresh)) for b in hoisted]
    result = relax.Tuple([fresh[v] for v in outputs])
    init = relax.Function([], relax.SeqExpr([relax.BindingBlock(bindings)], result),
                          relax.TupleType([v.ty for v in outputs]), True)  # fmt: skip
    init = init.with_attr("global_symbol", WORKSPACE_FUNC)
    main = relax.Function([*func.params, *outputs], relax.SeqExpr(blocks, body.body),
                          func.ret_ty, func.is_pure, func.attrs)  # fmt: skip
    # No parameter counts as an input whose static shape the VM checks per call: the
    # artifact checks every input's shape and dtype before the call (``Artifact.run``,
    # ``TvmArtifact._call_lent``), and each kernel its operands.
    return main.with_attr("num_input", 0), init


def _renamed(value: Any, fresh: dict[Any, Any]) -> Any:
    """``value`` (an invariant binding's) reading the workspace function's vars."""
    from tvm import relax

    if isinstance(value, relax.Var):
        return fresh[value]
    if isinstance(value, relax.Tuple):
        return relax.Tuple([fresh[f] for f in value.fields])
    if isinstance(value, relax.TupleGetItem):
        return relax.TupleGetItem(fresh[value.tuple_value], value.index)
    args = [fresh.get(a, a) for a in value.args]
    return relax.Call(value.op, args, value.attrs, value.ty_args)


def hoist_workspace() -> Any:
    """The module pass: ``main`` split by ``split_main``, the workspace function added."""
    import tvm

    @tvm.transform.module_pass(opt_level=0, name="HoistWorkspace")
    def run(mod: Any, _ctx: Any) -> Any:
        main, init = split_main(mod["main"])
        mod = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
        mod["main"] = main
        mod[WORKSPACE_FUNC] = init
        return mod

    return run
