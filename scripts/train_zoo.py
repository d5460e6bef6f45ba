"""Train the zoo's two small models and write their shipped artifacts.

    python scripts/train_zoo.py

Writes, under compiler/data/:
  digits_cnn.npz   trained DigitsCNN state_dict (scikit-learn 8x8 digits)
  jet_mlp.npz      trained JetMLP state_dict (synthetic jet data, see tests/datasets.py)
  digits_cnn.onnx  DigitsCNN as ONNX (opset 17, input `x` [1,1,8,8], output `logits`)

Everything is seeded and runs on CPU in well under a minute, so rerunning it reproduces the
files (up to floating-point differences between torch versions and CPUs).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a script, not a package: make `tests.*` importable

from tests.cases import DATA_DIR, build_digits_cnn, build_jet_mlp  # noqa: E402
from tests.datasets import Split, digits_split, jet_split  # noqa: E402

log = logging.getLogger("train_zoo")


def train(
    model: nn.Module, data: Split, epochs: int, batch: int, lr: float, seed: int = 0
) -> nn.Module:
    """Plain Adam + cross-entropy on (x_train, y_train); returns the model in eval mode."""
    torch.manual_seed(seed)
    x_train, y_train = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            loss = F.cross_entropy(model(x_train[rows]), y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, data: Split) -> float:
    """Float test accuracy of `model` on (x_test, y_test)."""
    logits = model(torch.from_numpy(data[2]))
    return float((logits.argmax(dim=1).numpy() == data[3]).mean())


def save_state(model: nn.Module, name: str) -> Path:
    """Write the state_dict as `compiler/data/<name>.npz` (float32 / int64 arrays)."""
    path = DATA_DIR / f"{name}.npz"
    np.savez(path, **{key: value.detach().numpy() for key, value in model.state_dict().items()})
    return path


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export with the TorchScript-based exporter (`dynamo=False`): one self-contained file,
    plain Conv/BatchNormalization/Relu/MaxPool/Flatten/Gemm nodes, names `x` -> `logits`."""
    example = (torch.zeros(1, 1, 8, 8),)
    torch.onnx.export(
        model,
        example,
        str(path),
        input_names=["x"],
        output_names=["logits"],
        opset_version=17,
        dynamo=False,
        do_constant_folding=False,
    )


def main() -> None:
    """Train both models, report accuracy, write the npz files and the ONNX example."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(4, torch.get_num_threads()))

    jobs: list[tuple[str, Any, Any, dict[str, Any]]] = [
        ("digits_cnn", build_digits_cnn, digits_split, dict(epochs=20, batch=64, lr=3e-3)),
        ("jet_mlp", build_jet_mlp, jet_split, dict(epochs=20, batch=256, lr=3e-3)),
    ]
    for name, build, dataset, options in jobs:
        start, data = time.perf_counter(), dataset()
        model = train(build(trained=False), data, **options)
        path = save_state(model, name)
        log.info(
            "%-10s test accuracy %.4f  (%d params, %.0f KB, %.1f s)",
            name,
            accuracy(model, data),
            sum(p.numel() for p in model.parameters()),
            path.stat().st_size / 1024,
            time.perf_counter() - start,
        )
        if name == "digits_cnn":
            export_onnx(model, DATA_DIR / "digits_cnn.onnx")


if __name__ == "__main__":
    main()
