"""torch.export converters for the ops real architectures bring (``torch_ops_more``):
each small module is compiled for the reference target and compared with torch."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import compiler

torch = pytest.importorskip("torch")
F = torch.nn.functional


class Lambda(torch.nn.Module):  # type: ignore[misc,name-defined]
    def __init__(self, fn: Callable[..., Any]):
        super().__init__()
        self.fn = fn

    def forward(self, x: Any) -> Any:
        return self.fn(x)


def _position_ids(ids: Any) -> Any:
    """RoBERTa's position ids: a cumsum over the non-padding mask."""
    mask = ids.ne(1).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + 1


CASES: dict[str, tuple[Callable[..., Any], Callable[[], Any]]] = {
    "bilinear_x2": (
        lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
        lambda: torch.rand(1, 3, 4, 5),
    ),
    "bilinear_align_corners_to_size": (
        lambda x: F.interpolate(x, size=(7, 3), mode="bilinear", align_corners=True),
        lambda: torch.rand(1, 2, 3, 4),
    ),
    "cumsum_float": (lambda x: torch.cumsum(x, dim=-1), lambda: torch.rand(2, 5)),
    "position_ids": (_position_ids, lambda: torch.tensor([[0, 5, 6, 1, 1], [7, 1, 1, 1, 1]])),
    "instance_norm": (torch.nn.InstanceNorm2d(3, affine=True), lambda: torch.rand(2, 3, 5, 4)),
    "sort_then_gather": (
        lambda x: torch.gather(x, -1, torch.argsort(x, dim=-1, descending=True)),
        lambda: torch.rand(2, 6),
    ),
    "vector_norm_l2": (lambda x: torch.linalg.vector_norm(x, dim=-1), lambda: torch.randn(2, 6)),
    "vector_norm_inf": (
        lambda x: torch.linalg.vector_norm(x, ord=float("inf"), dim=(0, 1), keepdim=True),
        lambda: torch.randn(2, 6),
    ),
    "avg_pool_window_over_input": (
        torch.nn.AvgPool2d(7, ceil_mode=True),
        lambda: torch.rand(1, 4, 3, 3),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_matches_torch(name: str) -> None:
    fn, make_input = CASES[name]
    torch.manual_seed(0)
    x = make_input()
    module = (fn if isinstance(fn, torch.nn.Module) else Lambda(fn)).eval()
    want = module(x).detach().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        art = compiler.compile(module, target="reference", example_inputs=(x,))
    got = art.run(x.numpy())[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
