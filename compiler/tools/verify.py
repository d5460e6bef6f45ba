"""``tapeout verify``: a compiled artifact's accuracy on the user's own data.

The artifact and the float model run on every sample of ``data`` (an ``.npz`` with one array
per model input, samples along the first axis); per output the report gives cosine, SQNR and
maximum absolute error of the artifact against float, and with labels the top-1 accuracy of
both and how often they agree. The result is stored in the artifact's report (``verify`` in
report.json's summary), so ``tapeout report`` and ``tapeout diff`` show it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compiler.debug import sqnr_db
from compiler.errors import InputError, TapeoutError
from compiler.ir.graph import Graph


def _arrays(data: Any, graph: Graph) -> list[np.ndarray]:
    if isinstance(data, dict):
        names = [v.name for v in graph.inputs]
        if all(n in data for n in names):
            return [np.asarray(data[n]) for n in names]
        data = list(data.values())
    arrays = [np.asarray(a) for a in (data if isinstance(data, list | tuple) else [data])]
    if len(arrays) != len(graph.inputs):
        raise InputError(
            f"data has {len(arrays)} array(s) for {len(graph.inputs)} model input(s) "
            f"({', '.join('%' + v.name for v in graph.inputs)})"
        )
    if len({len(a) for a in arrays}) != 1:
        raise InputError("data arrays have different sample counts (first axis)")
    return arrays


def _run_batched(
    run: Callable[..., list[np.ndarray]], graph: Graph, arrays: list[np.ndarray]
) -> list[np.ndarray]:
    """Run in batches of the graph's static batch size (64 for a symbolic one)."""
    batch = graph.inputs[0].type.shape[0] if graph.inputs[0].type.shape else 1
    step = batch if isinstance(batch, int) else 64
    count = len(arrays[0])
    if count % step:
        raise InputError(f"{count} samples do not split into batches of {step}")
    typed = [a.astype(v.type.np_dtype) for a, v in zip(arrays, graph.inputs, strict=True)]
    chunks = [run(*(a[i : i + step] for a in typed)) for i in range(0, count, step)]
    return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denom) if denom else (1.0 if not x.any() and not y.any() else 0.0)


def _finite(x: float) -> float | str:
    return round(x, 3) if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def verify(
    artifact: str | Path,
    data: Any,
    labels: np.ndarray | None = None,
    model: Any = None,
    store: bool = True,
) -> dict[str, Any]:
    """Accuracy of ``artifact`` against the float ``model`` (default: the model it was
    compiled from, when the artifact recorded its path) on ``data``; see the module doc."""
    import compiler
    from compiler.backend import write_manifest
    from compiler.interpreter import interpret

    art = compiler.load(artifact)
    source = model or art.summary.get("source_model")
    if source is None or (isinstance(source, str) and not Path(source).exists()):
        raise TapeoutError(
            f"verify needs the float model: pass --model (the artifact records {source!r})"
        )
    reference = compiler.import_model(source)
    arrays = _arrays(data, reference)
    got = _run_batched(art.run, art.graph, arrays)
    want = _run_batched(lambda *x: interpret(reference, *x), reference, arrays)
    outputs = [
        {
            "output": i,
            "cosine": round(_cosine(w, g), 6),
            "sqnr_db": _finite(sqnr_db(w, g)),
            "max_abs_error": float(np.max(np.abs(w.astype(np.float64) - g))) if w.size else 0.0,
        }
        for i, (w, g) in enumerate(zip(want, got, strict=True))
    ]
    result: dict[str, Any] = {"samples": len(arrays[0]), "model": str(source), "outputs": outputs}
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        if len(y) != len(arrays[0]):
            raise InputError(f"{len(y)} labels for {len(arrays[0])} samples")
        top_f, top_c = want[0].argmax(-1).reshape(-1), got[0].argmax(-1).reshape(-1)
        result["top1_float"] = float(np.mean(top_f == y))
        result["top1_compiled"] = float(np.mean(top_c == y))
        result["top1_agreement"] = float(np.mean(top_f == top_c))
    if store and art.path is not None:
        art.summary["verify"] = result
        write_manifest(Path(art.path), art)
    return result


def format_verify(result: dict[str, Any]) -> str:
    from compiler.report import format_table

    lines = [f"verify: {result['samples']} samples against {result['model']}"]
    lines.append(format_table(result["outputs"]))
    if "top1_float" in result:
        lines.append(
            f"top-1: float {result['top1_float']:.2%}, compiled {result['top1_compiled']:.2%}, "
            f"agreement {result['top1_agreement']:.2%}"
        )
    return "\n".join(lines)
