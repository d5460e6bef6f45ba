"""Knowledge distillation (and plain fine-tuning) on the CPU: ``compiler.distill``.

    student = compiler.torchside.module.to_torch(pruned_graph)
    result = compiler.distill(teacher, student, (x_train, y_train), epochs=20)
    graph = student.to_graph()

The student minimizes ``alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(t / T) ||
softmax(s / T))`` (Hinton et al., 2015; the ``T^2`` keeps the soft gradients' scale independent
of the temperature). Without labels it uses the soft term only; without a teacher
(``teacher=None``, as ``compiler.torchside.prune.fine_tune`` does) the labelled term only.

``data`` is ``(x, y)`` arrays or tensors, ``x`` alone, or any iterable of ``(x, y)`` / ``x``
batches (a ``DataLoader``). Training is seeded, shuffles each epoch, uses Adam with a cosine
learning-rate decay and shows a progress bar (rich) unless ``progress=False``.

``threads=1`` (the default) runs torch on one thread for the duration of the call and restores
the setting after: the models this is for (FPGA- and edge-sized) are far too small for
intra-op parallelism to pay, and on a busy 2-core machine two threads per process made
training 30x slower than one. ``threads=None`` keeps torch's own setting. torch is imported
lazily: ``import compiler`` does not need it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import TapeoutError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Batch = tuple[Any, Any | None]


@dataclass
class DistillResult:
    """Loss per epoch, accuracy on ``eval_data`` (when given) and the time spent."""

    losses: list[float] = field(default_factory=list)
    accuracy: float | None = None
    seconds: float = 0.0
    steps: int = 0


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (None: leave it alone)."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tensor(x: Any, dtype: Any = None) -> torch.Tensor:
    import torch

    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def _split(data: Any) -> tuple[Any, Any | None] | None:
    """``(x, y)`` or ``(x, None)`` for in-memory data; None for an iterable of batches."""
    if isinstance(data, tuple | list) and len(data) in (1, 2) and hasattr(data[0], "shape"):
        return data[0], (data[1] if len(data) == 2 else None)
    if hasattr(data, "shape"):
        return data, None
    return None


def batches(data: Any, batch_size: int, shuffle: bool, seed: int) -> Iterator[Batch]:
    """Float32 input and int64 label batches (labels None when absent)."""
    import torch

    split = _split(data)
    if split is None:
        for item in data:
            x, y = (item[0], item[1]) if isinstance(item, tuple | list) else (item, None)
            yield _tensor(x, torch.float32), None if y is None else _tensor(y, torch.int64)
        return
    x, y = _tensor(split[0], torch.float32), split[1]
    y_t = None if y is None else _tensor(y, torch.int64)
    order = (
        torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(len(x))
    )
    for start in range(0, len(x), batch_size):
        index = order[start : start + batch_size]
        yield x[index], None if y_t is None else y_t[index]


def _steps_per_epoch(data: Any, batch_size: int) -> int | None:
    split = _split(data)
    if split is not None:
        return -(-len(split[0]) // batch_size)
    return len(data) if hasattr(data, "__len__") else None


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * CE + (1 - alpha) * T^2 * KL``, dropping whichever term has no inputs."""
    import torch.nn.functional as F

    if labels is None and teacher_logits is None:
        raise TapeoutError("distillation needs labels, a teacher, or both")
    if teacher_logits is None:
        assert labels is not None
        return F.cross_entropy(student_logits, labels)
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if labels is None:
        return soft
    return alpha * F.cross_entropy(student_logits, labels) + (1.0 - alpha) * soft


@dataclass(frozen=True)
class TrainConfig:
    """How ``distill`` trains (its keyword arguments)."""

    epochs: int = 10
    temperature: float = 4.0
    alpha: float = 0.5
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    progress: bool = True
    seed: int = 0


def distill(
    teacher: torch.nn.Module | None,
    student: torch.nn.Module,
    data: Any,
    epochs: int = 10,
    temperature: float = 4.0,
    alpha: float = 0.5,
    *,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    eval_data: tuple[Any, Any] | None = None,
    progress: bool = True,
    seed: int = 0,
    threads: int | None = 1,
) -> DistillResult:
    """Train ``student`` (in place) to match ``teacher`` and the labels; see the module doc."""
    if not 0.0 <= alpha <= 1.0:
        raise TapeoutError(f"alpha must be in [0, 1], got {alpha}")
    if temperature <= 0:
        raise TapeoutError(f"temperature must be positive, got {temperature}")
    config = TrainConfig(epochs, temperature, alpha, lr, batch_size, weight_decay, progress, seed)
    with torch_threads(threads):
        result = _train(teacher, student, data, config)
    if eval_data is not None:
        result.accuracy = accuracy(student, *eval_data, threads=threads)
    log.info("trained %d steps in %.1f s, losses %s", result.steps, result.seconds, result.losses)
    return result


def _train(
    teacher: torch.nn.Module | None, student: torch.nn.Module, data: Any, config: TrainConfig
) -> DistillResult:
    import torch

    torch.manual_seed(config.seed)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = _steps_per_epoch(data, config.batch_size)
    total = None if per_epoch is None else per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total) if total else None
    if teacher is not None:
        teacher.eval()
    student.train()
    result = DistillResult()
    start = time.perf_counter()
    with _ProgressBar(config.progress, total, "distill" if teacher else "fine-tune") as advance:
        for epoch in range(config.epochs):
            running, count = 0.0, 0
            for x, y in batches(data, config.batch_size, shuffle=True, seed=config.seed + epoch):
                with torch.no_grad():
                    t_logits = teacher(x) if teacher is not None else None
                loss = distill_loss(student(x), t_logits, y, config.temperature, config.alpha)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                running, count = running + loss.item() * len(x), count + len(x)
                result.steps += 1
                advance(f"epoch {epoch + 1}/{config.epochs} loss {running / count:.4f}")
            result.losses.append(running / max(count, 1))
    student.eval()
    result.seconds = time.perf_counter() - start
    return result


class _ProgressBar:
    """A rich progress bar when enabled; ``advance(description)`` moves it one step."""

    def __init__(self, enabled: bool, total: int | None, what: str):
        self.enabled, self.total, self.what = enabled, total, what
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda description: None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.what, total=self.total)
        return lambda description: self.bar.update(task, advance=1, description=description)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def accuracy(model: Any, x: Any, y: Any, batch_size: int = 512, threads: int | None = 1) -> float:
    """Top-1 accuracy of a torch module on ``(x, y)`` (eval mode, no gradients)."""
    import torch

    model.eval()
    correct = 0
    labels = np.asarray(y.numpy() if hasattr(y, "numpy") else y)
    with torch.no_grad(), torch_threads(threads):
        for i, (xb, _) in enumerate(batches((x,), batch_size, shuffle=False, seed=0)):
            pred = model(xb).argmax(dim=-1).numpy()
            correct += int(np.sum(pred == labels[i * batch_size : i * batch_size + len(pred)]))
    return correct / len(labels)
