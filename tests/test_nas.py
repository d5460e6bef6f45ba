"""``compiler.nas``: the elastic supernet and the plain model the search returns.

A tiny seeded run on the digits CNN (two widths per stage, one epoch each): the supernet at
full width computes the original model, subnets slice it consistently, and the returned plain
model compiles for the FPGA (kv260, within its budget) and the CPU (TVM) and matches the
reference interpreter there.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import compiler
from compiler.errors import TapeoutError
from compiler.hwsearch.nas import NasResult, arch_space
from compiler.hwsearch.supernet import Arch, chain_of, macs, sort_channels, subnet, supernet
from compiler.interpreter import interpret
from tests.cases import get_case
from tests.datasets import digits_split


@pytest.fixture(scope="module")
def nas_result() -> NasResult:
    x_train, y_train, x_test, y_test = digits_split()
    return compiler.nas(
        get_case("digits_cnn").build(),
        "kv260",
        {"max_accuracy_drop": 100},
        x_test[:100],
        y_test[:100],
        train=(x_train[:300], y_train[:300]),
        width_choices=(0.5, 1.0),
        supernet_epochs=1,
        finetune_epochs=1,
        max_priced=3,
        max_finetunes=1,
        screen_drop=100,
    )


def test_supernet_slices_the_model() -> None:
    """Sorted channels and the full arch compute the original; a subnet equals its slice."""
    model = get_case("digits_cnn").build()
    x = torch.from_numpy(digits_split()[2][:16])
    chain = chain_of(copy.deepcopy(model), x.numpy())
    sort_channels(chain)
    net = supernet(chain).eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-4, rtol=1e-4)
        arch = Arch((8, 16, 32), skip=(2,))
        net.arch = arch
        torch.testing.assert_close(subnet(chain, arch)(x), net(x), atol=1e-4, rtol=1e-4)
    assert chain.skippable() == [2]
    # conv1 8x8x8x9, conv2 8x8x16x8x9, (conv3 skipped), fc 16*4*4*10
    assert macs(chain, arch, 8, 8) == 64 * 8 * 9 + 64 * 16 * 8 * 9 + 16 * 16 * 10
    archs = arch_space(chain, (0.5, 1.0))
    assert len(archs) == len(set(archs)) == 2 * 2 * 2 + 2 * 2  # widths x (with, without conv3)


def test_non_chain_model_is_refused() -> None:
    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
            self.fc = torch.nn.Linear(64, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(torch.relu(self.conv(x)) + x, 1))

    with pytest.raises(TapeoutError, match="not a plain conv chain"):
        chain_of(Residual(), np.ones((2, 1, 8, 8), np.float32))


def test_nas_model_compiles_for_fpga(nas_result: NasResult) -> None:
    r = nas_result
    assert r.cost.fits and r.cost.latency_ns <= r.baseline_cost.latency_ns
    x_train, _, x_test, _ = digits_split()
    example = (torch.from_numpy(x_test[:1]),)
    art = compiler.compile(r.model, "kv260", example, x_train[:256])
    assert art.summary["latency_ns"] == r.cost.latency_ns and art.summary["dsp"] == r.cost.dsp


@pytest.mark.tvm
def test_nas_model_compiles_for_cpu(nas_result: NasResult) -> None:
    x_train, _, x_test, _ = digits_split()
    example = (torch.from_numpy(x_test[:1]),)
    art = compiler.compile(nas_result.model, "cpu", example, x_train[:256])
    x = x_test[:1]
    np.testing.assert_allclose(art.run(x)[0], interpret(art.graph, x)[0], rtol=1e-5, atol=1e-5)
