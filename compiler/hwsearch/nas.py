"""``compiler.nas``: hardware-aware architecture search over an elastic supernet.

    result = compiler.nas(model, "kv260", {"max_accuracy_drop": 0.5}, x_test, y_test,
                          train=(x_train, y_train))
    result.model            # a plain torch module: compile it for fpga, cpu, ...

1. **Supernet** (``compiler.hwsearch.supernet``): the model's conv chain with channels sorted
   by importance, every stage elastic in width (``width_choices`` of its channels) and the
   stages that keep their input's shape elastic in depth (skippable).
2. **Train it** by distillation from the original model, sandwich style: each batch trains
   the largest subnet, the smallest and ``random_subnets`` random ones on the teacher's soft
   labels (so that every subnet's shared weights stay good).
3. **Search**: every subnet's supernet accuracy (torch, fast); those within ``screen_drop``
   points of the original are priced on the target (the HLS backend's estimate of the
   quantized subnet, reuse factors chosen to fit), the ``max_priced`` smallest (by MACs).
4. **Fine-tune** fitting candidates (a plain copy of the subnet, distilled from the original)
   and measure them quantized with the reference interpreter (bit-exact with the FPGA): a
   bisection over the candidates sorted by latency finds the fastest within
   ``max_accuracy_drop`` in at most ``max_finetunes`` fine-tunes.
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.errors import BudgetError
from compiler.hwsearch.cost import Cost
from compiler.hwsearch.engine import Evaluator, TrainSettings, layer_names
from compiler.hwsearch.fit import as_arrays, import_for_search
from compiler.hwsearch.space import Budget
from compiler.hwsearch.supernet import (
    Arch,
    Chain,
    chain_of,
    folded_subnet,
    macs,
    sort_channels,
    subnet,
    supernet,
)

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass
class Candidate:
    """A subnet, its supernet accuracy, and (once priced / measured) cost and accuracy."""

    arch: Arch
    supernet_accuracy: float
    cost: Cost | None = None
    accuracy: float | None = None  # quantized, after fine-tuning
    drop: float | None = None


@dataclass
class NasResult:
    """The chosen plain model and what the search saw."""

    model: Any
    arch: Arch
    accuracy: float
    drop: float
    cost: Cost
    baseline_cost: Cost
    float_accuracy: float
    candidates: list[Candidate] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def speedup(self) -> float:
        return self.baseline_cost.latency_ns / self.cost.latency_ns

    def table(self) -> str:
        from compiler.report import format_table

        rows = [
            {
                "subnet": c.arch.label(),
                "supernet_acc": f"{100 * c.supernet_accuracy:.2f}",
                "latency_ns": f"{c.cost.latency_ns:g}" if c.cost else "",
                "dsp": c.cost.dsp if c.cost else "",
                "fits": ("yes" if c.cost.fits else "no") if c.cost else "",
                "accuracy": f"{100 * c.accuracy:.2f}" if c.accuracy is not None else "",
                "": "chosen" if c.arch == self.arch else "",
            }
            for c in sorted(self.candidates, key=_speed)
            if c.cost is not None
        ]
        head = (
            f"nas: baseline {self.baseline_cost.latency_ns:g} ns, chosen {self.arch.label()} "
            f"{self.cost.latency_ns:g} ns ({self.speedup:.2f}x), accuracy "
            f"{100 * self.accuracy:.2f}% (drop {self.drop:.2f} points), {self.seconds:.0f} s"
        )
        return head + "\n" + format_table(rows)


def _speed(c: Candidate) -> tuple[float, int]:
    return (c.cost.latency_ns, c.cost.dsp) if c.cost else (float("inf"), 0)


def arch_space(chain: Chain, width_choices: tuple[float, ...]) -> list[Arch]:
    """Every subnet: a width per stage (fractions of its channels, at least 4) and every
    subset of the skippable stages."""
    per_stage = [
        sorted({max(min(4, w), int(np.ceil(f * w / 4) * 4)) for f in width_choices if f > 0})
        for w in chain.widths()
    ]
    skippable = chain.skippable()
    skips = [s for r in range(len(skippable) + 1) for s in itertools.combinations(skippable, r)]
    full = chain.widths()
    archs = {
        Arch(tuple(full[i] if i in sk else w for i, w in enumerate(ws)), tuple(sk))
        for ws in itertools.product(*per_stage)
        for sk in skips
    }
    return sorted(archs, key=lambda a: (a.skip, a.widths))


def train_supernet(
    net: Any,
    teacher: Any,
    archs: list[Arch],
    x: np.ndarray,
    epochs: int,
    random_subnets: int = 2,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> None:
    """Sandwich-rule distillation into the shared weights (see the module doc)."""
    import torch

    from compiler.torchside.distill import batches, distill_loss, torch_threads

    rng = np.random.default_rng(seed)
    largest = max(archs, key=lambda a: (sum(a.widths), -len(a.skip)))
    smallest = min(archs, key=lambda a: (sum(a.widths), -len(a.skip)))
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    teacher.eval()
    with torch_threads(1):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            for xb, _ in batches((x,), batch_size, shuffle=True, seed=seed + epoch):
                with torch.no_grad():
                    soft = teacher(xb)
                opt.zero_grad()
                picks = [largest, smallest] + [
                    archs[i] for i in rng.integers(0, len(archs), random_subnets)
                ]
                for arch in picks:
                    net.arch = arch
                    distill_loss(net(xb), soft, None, 4.0, 0.0).backward()
                opt.step()
    net.eval()


def _supernet_accuracy(
    net: Any, arch: Arch, x: np.ndarray, y: np.ndarray, calib: np.ndarray
) -> float:
    import torch

    from compiler.torchside.distill import accuracy

    net.recalibrate(arch, torch.from_numpy(calib))
    return accuracy(net, x, y)


def nas(
    model: Any,
    target: str,
    budget: Budget | dict[str, Any] | None = None,
    data: Any = None,
    labels: Any = None,
    *,
    train: tuple[Any, Any] | None = None,
    width_choices: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0),
    supernet_epochs: int = 40,
    finetune_epochs: int = 20,
    screen_drop: float = 5.0,
    max_finetunes: int = 6,
    max_priced: int = 48,
    seed: int = 0,
    progress: Say | None = None,
) -> NasResult:
    """Find the fastest subnet of ``model`` on ``target`` within the accuracy limit.

    ``model``: a torch conv chain (see ``compiler.hwsearch.supernet``); ``budget`` as for
    ``compiler.search``; ``data``/``labels`` measure accuracy, ``train`` (default: the same)
    trains the supernet and fine-tunes. Raises ``BudgetError`` when no subnet fits.
    """
    from compiler.target import load_target

    say = progress or (lambda message: None)
    start = time.perf_counter()
    tgt, limits = load_target(target), Budget.of(budget)
    x, y = as_arrays(data, labels, "nas data")
    tx, ty = as_arrays(*train, "nas train") if train is not None else (x, y)
    teacher = copy.deepcopy(model).eval()
    chain = chain_of(copy.deepcopy(model), x)
    sort_channels(chain)
    settings = TrainSettings(epochs=finetune_epochs, seed=seed)
    ev = Evaluator(
        import_for_search(teacher, x[:1]), tgt, limits, tx[:256], (x, y), (tx, ty), settings
    )
    baseline = ev.cost(ev.quantize(ev.graph, {n: 8 for n in ev.layers}))
    say(
        f"baseline: {baseline.latency_ns:g} ns, {baseline.dsp} DSP, float accuracy "
        f"{100 * ev.float_accuracy:.2f}%"
    )
    net = supernet(chain)
    archs = arch_space(chain, width_choices)
    net.train()
    train_supernet(net, teacher, archs, tx, supernet_epochs, lr=3e-3, seed=seed)
    calib = tx[np.random.default_rng(seed).permutation(len(tx))[:512]]
    cands = [Candidate(a, _supernet_accuracy(net, a, x, y, calib)) for a in archs]
    say(f"supernet trained; {len(cands)} subnets")
    keep = [c for c in cands if 100 * (ev.float_accuracy - c.supernet_accuracy) <= screen_drop]
    h, w = (int(d) for d in x.shape[2:4])
    keep = sorted(keep, key=lambda c: macs(chain, c.arch, h, w))[:max_priced]
    for c in keep:
        graph = _prepared(ev, import_for_search(subnet(chain, c.arch, net), x[:1]))
        c.cost = ev.cost(ev.quantize(graph, {}))
    fitting = sorted((c for c in keep if c.cost and c.cost.fits), key=_speed)
    say(f"{len(keep)} smallest subnets within {screen_drop:g} points priced, {len(fitting)} fit")
    measure = functools.partial(_measure, ev, chain, net, teacher, (tx, ty), settings, say)
    found = _bisect(fitting, measure, limits.max_accuracy_drop, max_finetunes)
    if found is None:
        tried = ", ".join(f"{c.arch.label()} ({c.drop:.2f})" for c in fitting if c.drop is not None)
        raise BudgetError(
            f"nas: no subnet fits {tgt.name} within {limits.max_accuracy_drop:g} points "
            f"({len(keep)} subnets within {screen_drop:g} points in the supernet priced, "
            f"{len(fitting)} fit the resources; fine-tuned and missed the accuracy: "
            f"{tried or 'none'})"
        )
    c, plain = found
    assert c.accuracy is not None and c.drop is not None and c.cost is not None
    seconds = time.perf_counter() - start
    return NasResult(
        plain, c.arch, c.accuracy, c.drop, c.cost, baseline, ev.float_accuracy, cands, seconds
    )


def _measure(
    ev: Evaluator,
    chain: Chain,
    net: Any,
    teacher: Any,
    train: tuple[np.ndarray, np.ndarray],
    settings: TrainSettings,
    say: Say,
    c: Candidate,
) -> Any:
    """Fine-tune candidate ``c`` as a plain model; fill in its quantized accuracy."""
    plain = _fine_tune(subnet(chain, c.arch, net), teacher, train, settings)
    graph = _prepared(ev, import_for_search(plain, ev.evaluation[0][:1]))
    # Then quantization-aware: batch norms folded, weights on the int8 grid the quantize pass
    # will choose, so what is measured below is what was trained.
    graph = ev.fine_tune(graph, {name: 8 for name in layer_names(graph)})
    plain = folded_subnet(plain, graph)
    quantized = ev.quantize(graph, {})
    c.accuracy = ev.accuracy(quantized)
    # Re-priced: training moves weights onto or off zero, which changes the DSP count.
    c.cost = ev.cost(quantized)
    c.drop = 100 * (ev.float_accuracy - c.accuracy) if c.cost.fits else float("inf")
    say(f"{c.arch.label()}: {c.cost.latency_ns:g} ns, drop {c.drop:.2f} points")
    return plain


def _bisect(
    fitting: list[Candidate], measure: Callable[[Candidate], Any], max_drop: float, tries: int
) -> tuple[Candidate, Any] | None:
    """The fastest candidate within ``max_drop`` after fine-tuning, by bisection over the
    candidates sorted by latency (accuracy grows with size; at most ``tries`` fine-tunes)."""
    best: tuple[Candidate, Any] | None = None
    lo, hi = 0, len(fitting) - 1
    while lo <= hi and tries > 0:
        mid = lo if best is None and lo == 0 else (lo + hi) // 2
        plain = measure(fitting[mid])
        tries -= 1
        drop = fitting[mid].drop
        if drop is not None and drop <= max_drop:
            best, hi = (fitting[mid], plain), mid - 1
        else:
            lo = mid + 1
    return best


def _prepared(ev: Evaluator, graph: Any) -> Any:
    """``graph`` through the target's passes before quantize (as ``ev.graph`` was)."""
    from compiler.context import PassContext
    from compiler.hwsearch.engine import split_pipeline
    from compiler.pass_manager import PassManager

    PassManager(split_pipeline(ev.target)[0]).run(graph, PassContext(target=ev.target))
    return graph


def _fine_tune(
    student: Any, teacher: Any, train: tuple[np.ndarray, np.ndarray], s: TrainSettings
) -> Any:
    from compiler.torchside.distill import distill

    distill(
        teacher,
        student,
        train,
        epochs=s.epochs,
        temperature=s.temperature,
        alpha=s.alpha,
        lr=s.lr,
        batch_size=64,
        progress=False,
        seed=s.seed,
    )
    return student.eval()
