"""An elastic-width/depth supernet over a conv chain, once-for-all style (Cai et al., 2020).

``Chain`` describes a plain CNN as stages (conv, optional batch norm, ReLU, optional max
pool) and a linear head on the flattened result: the shape of the FPGA-sized CNNs this is
for (the zoo's digits CNN). ``chain_of(model)`` reads it off a module's layers in order and
checks it computes the same outputs (else ``TapeoutError``: the model is not such a chain).

``supernet(chain)`` shares the chain's weights across subnets: a stage runs with the first
``w`` of its output channels (the channels are first sorted by importance, the L1 norm of
their filters, so that every prefix keeps the most important ones), and a stage whose input
and output shapes agree can be skipped (elastic depth). ``subnet(chain, arch)`` copies the
slices into a plain ``ChainNet`` module that exports and compiles like any torch model.
torch is imported inside functions only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.errors import TapeoutError


@dataclass(frozen=True)
class Arch:
    """A subnet: output channels per stage, and the stages skipped."""

    widths: tuple[int, ...]
    skip: tuple[int, ...] = ()

    def label(self) -> str:
        return "-".join("skip" if i in self.skip else str(w) for i, w in enumerate(self.widths))


@dataclass
class Chain:
    """A conv chain's modules: per stage (conv, batch norm or None, max pool or None), head."""

    stages: list[tuple[Any, Any, Any]]
    head: Any

    def widths(self) -> tuple[int, ...]:
        return tuple(int(conv.out_channels) for conv, _, _ in self.stages)

    def skippable(self) -> list[int]:
        """Stages whose output has their input's shape (same channels, stride 1, 'same'
        padding, no pool): running without them leaves every later shape unchanged."""
        out = []
        for i, (conv, _, pool) in enumerate(self.stages):
            k = conv.kernel_size[0]
            same = conv.padding == (k // 2, k // 2) and conv.stride == (1, 1)
            if i > 0 and pool is None and conv.in_channels == conv.out_channels and same:
                out.append(i)
        return out


def chain_of(model: Any, sample: np.ndarray) -> Chain:
    """The chain ``model`` is (its leaf modules in order), checked on ``sample`` inputs."""
    import torch
    from torch import nn

    stages: list[tuple[Any, Any, Any]] = []
    head = None
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and head is None:
            stages.append((module, None, None))
        elif isinstance(module, nn.BatchNorm2d) and stages and stages[-1][1] is None:
            stages[-1] = (stages[-1][0], module, None)
        elif isinstance(module, nn.MaxPool2d) and stages and stages[-1][2] is None:
            stages[-1] = (stages[-1][0], stages[-1][1], module)
        elif isinstance(module, nn.Linear) and head is None and stages:
            head = module
        elif len(list(module.children())) == 0 and not isinstance(module, nn.ReLU | nn.Flatten):
            raise TapeoutError(f"nas: {type(module).__name__} is not part of a conv chain")
    if not stages or head is None:
        raise TapeoutError("nas needs a chain of Conv2d (+BatchNorm2d, ReLU, MaxPool2d) + Linear")
    chain = Chain(stages, head)
    net = supernet(chain).eval()
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(sample[:8], dtype=np.float32))
        if not torch.allclose(net(x), model(x), atol=1e-4, rtol=1e-4):
            raise TapeoutError(
                "nas: the model is not a plain conv chain (conv, batch norm, relu, max pool, "
                "then flatten and one linear layer): rebuilding it that way changes its outputs"
            )
    return chain


def sort_channels(chain: Chain) -> None:
    """Reorder each stage's output channels by filter L1 norm, most important first (and the
    next layer's inputs to match): then a width-``w`` subnet keeps the ``w`` best."""
    import torch

    with torch.no_grad():
        for i, (conv, bn, _) in enumerate(chain.stages):
            order = torch.argsort(conv.weight.abs().sum(dim=(1, 2, 3)), descending=True)
            conv.weight.copy_(conv.weight[order])
            if conv.bias is not None:
                conv.bias.copy_(conv.bias[order])
            if bn is not None:
                for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                    t.copy_(t[order])
            nxt = chain.stages[i + 1][0] if i + 1 < len(chain.stages) else None
            if nxt is not None:
                nxt.weight.copy_(nxt.weight[:, order])
            else:
                w = chain.head.weight
                per = w.shape[1] // len(order)
                w.copy_(w.view(w.shape[0], len(order), per)[:, order].reshape(w.shape))


def _stage(x: Any, stage: tuple[Any, Any, Any], c_in: int, c_out: int, norm: Any) -> Any:
    import torch.nn.functional as F

    conv, bn, pool = stage
    bias = conv.bias[:c_out] if conv.bias is not None else None
    x = F.conv2d(x, conv.weight[:c_out, :c_in], bias, conv.stride, conv.padding)
    if bn is not None:
        x = norm(x, bn, c_out)
    x = F.relu(x)
    return pool(x) if pool is not None else x


def _head(x: Any, head: Any, c_max: int) -> Any:
    import torch.nn.functional as F

    n, c = x.shape[0], x.shape[1]
    w = head.weight.view(head.weight.shape[0], c_max, -1)[:, :c].reshape(head.weight.shape[0], -1)
    return F.linear(x.reshape(n, -1), w, head.bias)


@functools.cache
def _classes() -> tuple[type, type]:
    import torch
    from torch import nn

    class Supernet(nn.Module):
        """The chain's modules with an active subnet (``arch``); see the module doc."""

        def __init__(self, chain: Chain) -> None:
            super().__init__()
            self.chain = chain
            self.layers = nn.ModuleList([m for s in chain.stages for m in s if m is not None])
            self.head = chain.head
            self.arch = Arch(chain.widths())
            # Batch-norm statistics per (arch, stage): a subnet's channels see other inputs
            # than the full net's, so each subnet gets its own (OFA's BN recalibration).
            self.stats: dict[tuple[Arch, int], tuple[torch.Tensor, torch.Tensor]] = {}
            self._record = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c_in = int(x.shape[1])
            for i, stage in enumerate(self.chain.stages):
                if i in self.arch.skip:
                    continue
                c_out = self.arch.widths[i]
                x, c_in = _stage(x, stage, c_in, c_out, self._norm(i)), c_out
            return _head(x, self.head, self.chain.stages[-1][0].out_channels)

        def _norm(self, i: int) -> Any:
            import torch.nn.functional as F

            def norm(x: torch.Tensor, bn: Any, c: int) -> torch.Tensor:
                key = (self.arch, i)
                if self._record:
                    var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
                    self.stats[key] = (mean.detach(), var.detach())
                if self.training:
                    return F.batch_norm(
                        x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps
                    )
                mean, var = self.stats.get(key, (bn.running_mean[:c], bn.running_var[:c]))
                return F.batch_norm(x, mean, var, bn.weight[:c], bn.bias[:c], False, 0.0, bn.eps)

            return norm

        def recalibrate(self, arch: Arch, x: torch.Tensor) -> None:
            """Record ``arch``'s batch-norm statistics on inputs ``x`` (training data)."""
            self.arch, self._record = arch, True
            try:
                with torch.no_grad():
                    self.eval()(x)
            finally:
                self._record = False

    class ChainNet(nn.Module):
        """A plain CNN: per stage conv (+ batch norm), ReLU (+ max pool); flatten; linear."""

        def __init__(self, convs: list[Any], norms: list[Any], pools: list[Any], head: Any):
            super().__init__()
            self.convs, self.head = nn.ModuleList(convs), head
            self.norms = nn.ModuleList([n if n is not None else nn.Identity() for n in norms])
            self.pools = nn.ModuleList([p if p is not None else nn.Identity() for p in pools])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for conv, norm, pool in zip(self.convs, self.norms, self.pools, strict=True):
                x = pool(torch.relu(norm(conv(x))))
            return self.head(torch.flatten(x, 1))

    return Supernet, ChainNet


def supernet(chain: Chain) -> Any:
    """The elastic module sharing ``chain``'s weights (set ``.arch`` to pick a subnet)."""
    return _classes()[0](chain)


def macs(chain: Chain, arch: Arch, height: int, width: int) -> int:
    """Multiply-accumulates of one sample through subnet ``arch`` (the cheap size proxy)."""
    total, c_in, h, w = 0, int(chain.stages[0][0].in_channels), height, width
    for i, (conv, _, pool) in enumerate(chain.stages):
        if i in arch.skip:
            continue
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        total += h * w * arch.widths[i] * c_in * kh * kw
        c_in = arch.widths[i]
        if pool is not None:
            k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
            s = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
            h, w = (h - k) // s + 1, (w - k) // s + 1
    return total + c_in * h * w * int(chain.head.out_features)


def subnet(chain: Chain, arch: Arch, net: Any = None) -> Any:
    """A plain ``ChainNet`` holding copies of the weight slices of ``arch`` (and the batch-norm
    statistics ``net`` recorded for it, if any)."""
    from torch import nn

    convs, norms, pools = [], [], []
    c_in = int(chain.stages[0][0].in_channels)
    last = c_in
    for i, (conv, bn, pool) in enumerate(chain.stages):
        if i in arch.skip:
            continue
        c_out = arch.widths[i]
        new = nn.Conv2d(
            c_in, c_out, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
        )
        new.weight.data = conv.weight.data[:c_out, :c_in].clone()
        if conv.bias is not None and new.bias is not None:
            new.bias.data = conv.bias.data[:c_out].clone()
        norm = None
        if bn is not None:
            norm = nn.BatchNorm2d(c_out, eps=bn.eps)
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).data = getattr(bn, name).data[:c_out].clone()
            if net is not None and (arch, i) in net.stats:
                mean, var = net.stats[(arch, i)]
                norm.register_buffer("running_mean", mean.clone())
                norm.register_buffer("running_var", var.clone())
        convs.append(new)
        norms.append(norm)
        pools.append(pool)
        c_in = last = c_out
    h = chain.head
    c_max = chain.stages[-1][0].out_channels
    head = nn.Linear(h.in_features // c_max * last, h.out_features)
    head.weight.data = (
        h.weight.data.view(h.out_features, c_max, -1)[:, :last].reshape(h.out_features, -1).clone()
    )
    head.bias.data = h.bias.data.clone()
    return _classes()[1](convs, norms, pools, head).eval()


def folded_subnet(plain: Any, graph: Any) -> Any:
    """A ``ChainNet`` like ``plain`` without batch norms, its conv and linear weights those of
    ``graph`` (``plain`` imported, batch norms folded, then trained further)."""
    import torch
    from torch import nn

    from passes._prune import weight_layers

    nodes = weight_layers(graph)
    layers = [*plain.convs, plain.head]
    if len(nodes) != len(layers):
        raise TapeoutError(f"folded graph has {len(nodes)} weight layers for {len(layers)}")
    for layer, node in zip(layers, nodes, strict=True):
        w = graph.const_value(node.inputs[1])
        b = graph.const_value(node.inputs[2]) if len(node.inputs) > 2 else None
        layer.weight.data = torch.from_numpy(np.array(w, dtype=np.float32))
        if b is not None:
            layer.bias = nn.Parameter(torch.from_numpy(np.array(b, dtype=np.float32)))
    plain.norms = nn.ModuleList([nn.Identity() for _ in plain.convs])
    return plain.eval()
