"""recognize-gelu: every exporter spelling of erf-GELU and tanh-GELU -> nn.gelu."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.passes.ir_cases import check_rewrite, check_unchanged, rejections

CONSTS = {
    "sqrt2": np.float32(1.4142135),
    "inv_sqrt2": np.float32(0.70710677),
    "one": np.float32(1.0),
    "half": np.float32(0.5),
    "two": np.float32(2.0),
    "three": np.float32(3.0),
    "kappa": np.float32(0.044715),
    "beta": np.float32(math.sqrt(2 / math.pi)),
}
DECLS = "\n".join(f"      %{k}: f32[] = const @{k}" for k in CONSTS)

#: x -> %h, the erf operand.
SCALED = {
    "div-sqrt2": "%h: f32[2,8] = math.div(%x, %sqrt2)",
    "mul-inv-sqrt2": "%h: f32[2,8] = math.mul(%inv_sqrt2, %x)",
}
#: %p = 1 + erf(...) -> %y, the product with x and 0.5.
PRODUCTS = {
    "x-half-first (torch)": """
      %xh: f32[2,8] = math.mul(%x, %half)
      %y: f32[2,8] = math.mul(%xh, %p)""",
    "half-last (onnx)": """
      %xp: f32[2,8] = math.mul(%x, %p)
      %y: f32[2,8] = math.mul(%xp, %half)""",
    "half-times-p-first": """
      %ph: f32[2,8] = math.mul(%half, %p)
      %y: f32[2,8] = math.mul(%ph, %x)""",
    "divided-by-two": """
      %xp: f32[2,8] = math.mul(%p, %x)
      %y: f32[2,8] = math.div(%xp, %two)""",
}


def _after(attrs: str = "") -> str:
    return f"""
    graph @g(%x: f32[2,8]) -> (f32[2,8]) {{
      %y: f32[2,8] = nn.gelu(%x){attrs}
      return %y
    }}
    """


@pytest.mark.parametrize("scaled", sorted(SCALED))
@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_erf_forms(scaled: str, product: str) -> None:
    before = f"""
    graph @g(%x: f32[2,8]) -> (f32[2,8]) {{
{DECLS}
      {SCALED[scaled]}
      %e: f32[2,8] = math.erf(%h)
      %p: f32[2,8] = math.add(%one, %e)
      {PRODUCTS[product]}
      return %y
    }}
    """
    check_rewrite("recognize-gelu", before, _after(), CONSTS, exact=False)


CUBES = {
    "pow": "%c: f32[2,8] = math.pow(%x, %three)",
    "mul-mul": """
      %sq: f32[2,8] = math.mul(%x, %x)
      %c: f32[2,8] = math.mul(%sq, %x)""",
}


@pytest.mark.parametrize("cube", sorted(CUBES))
def test_tanh_form(cube: str) -> None:
    before = f"""
    graph @g(%x: f32[2,8]) -> (f32[2,8]) {{
{DECLS}
      {CUBES[cube]}
      %kc: f32[2,8] = math.mul(%kappa, %c)
      %in: f32[2,8] = math.add(%x, %kc)
      %a: f32[2,8] = math.mul(%in, %beta)
      %t: f32[2,8] = math.tanh(%a)
      %p: f32[2,8] = math.add(%t, %one)
      %xh: f32[2,8] = math.mul(%half, %x)
      %y: f32[2,8] = math.mul(%xh, %p)
      return %y
    }}
    """
    check_rewrite("recognize-gelu", before, _after(' {approximate="tanh"}'), CONSTS, exact=False)


def test_wrong_constant_does_not_match() -> None:
    before = f"""
    graph @g(%x: f32[2,8]) -> (f32[2,8]) {{
{DECLS}
      %h: f32[2,8] = math.div(%x, %two)
      %e: f32[2,8] = math.erf(%h)
      %p: f32[2,8] = math.add(%one, %e)
      %xh: f32[2,8] = math.mul(%x, %half)
      %y: f32[2,8] = math.mul(%xh, %p)
      return %y
    }}
    """
    check_unchanged("recognize-gelu", before, CONSTS)


def test_rejects_when_a_partial_product_is_used_elsewhere() -> None:
    before = f"""
    graph @g(%x: f32[2,8]) -> (f32[2,8], f32[2,8]) {{
{DECLS}
      %h: f32[2,8] = math.div(%x, %sqrt2)
      %e: f32[2,8] = math.erf(%h)
      %p: f32[2,8] = math.add(%one, %e)
      %xp: f32[2,8] = math.mul(%x, %p)
      %y: f32[2,8] = math.mul(%xp, %half)
      return %y, %xp
    }}
    """
    stats = check_unchanged("recognize-gelu", before, CONSTS)
    reasons = set(rejections(stats, "recognize-gelu"))
    assert reasons == {"an intermediate of the GELU has other users"}
