"""The Pareto front of measured points (accuracy up, DSP down, latency down): table and plot.

The plot needs matplotlib (``pip install -e ".[plot]"``); without it ``plot_front`` logs
that it skipped the plot and returns None.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compiler.hwsearch.space import Point
from compiler.report import format_table

if TYPE_CHECKING:
    from compiler.hwsearch.loop import SearchResult

log = logging.getLogger(__name__)


def _axes(p: Point) -> tuple[float, float, float]:
    assert p.cost is not None and p.accuracy is not None
    return (-p.accuracy, float(p.cost.dsp), p.cost.latency_ns)


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on every axis and better on one."""
    x, y = _axes(a), _axes(b)
    return all(u <= v for u, v in zip(x, y, strict=True)) and x != y


def pareto_front(points: list[Point]) -> list[Point]:
    """The non-dominated measured points, fastest first."""
    done = [p for p in points if p.cost is not None and p.accuracy is not None]
    front = [p for p in done if not any(dominates(q, p) for q in done)]
    return sorted(front, key=lambda p: _axes(p)[2])


def rows(result: SearchResult) -> list[dict[str, Any]]:
    front = {id(p) for p in result.front()}
    out = []
    for p in sorted(result.measured, key=lambda p: p.cost.latency_ns if p.cost else 0.0):
        assert p.cost is not None and p.accuracy is not None and p.drop is not None
        mark = "chosen" if p is result.chosen else ("pareto" if id(p) in front else "")
        out.append(
            {
                "point": p.label(),
                "accuracy": f"{100 * p.accuracy:.2f}",
                "drop": f"{p.drop:+.2f}",
                "dsp": p.cost.dsp,
                "bram18k": p.cost.bram18k,
                "lut": p.cost.lut,
                "latency_ns": f"{p.cost.latency_ns:g}",
                "fits": "yes" if p.cost.fits else "no",
                "": mark,
            }
        )
    return out


def front_table(result: SearchResult) -> str:
    """Every measured point (fastest first), the front and the choice marked."""
    head = (
        f"search on {result.target}: float accuracy {100 * result.float_accuracy:.2f}%, "
        f"limit {result.max_drop:g} points, {len(result.path)} points priced, "
        f"{len(result.measured)} measured in {result.seconds:.0f} s"
    )
    return head + "\n" + format_table(rows(result))


def plot_front(result: SearchResult, path: Path) -> Path | None:
    """Accuracy against latency (colour: DSPs), the front joined; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot (pip install -e '.[plot]')")
        return None
    points = [p for p in result.measured if p.cost and p.accuracy is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    sc = ax.scatter(
        [p.cost.latency_ns for p in points if p.cost],
        [100 * (p.accuracy or 0) for p in points],
        c=[p.cost.dsp for p in points if p.cost],
        cmap="viridis",
    )
    front = result.front()
    ax.plot(
        [p.cost.latency_ns for p in front if p.cost],
        [100 * (p.accuracy or 0) for p in front],
        "k--",
        lw=0.8,
        label="Pareto front",
    )
    if result.chosen is not None and result.chosen.cost is not None:
        ax.plot(
            result.chosen.cost.latency_ns,
            100 * (result.chosen.accuracy or 0),
            "r*",
            ms=14,
            label="chosen",
        )
    ax.axhline(
        100 * result.float_accuracy - result.max_drop, color="grey", lw=0.6, label="accuracy limit"
    )
    fig.colorbar(sc, ax=ax, label="DSP")
    ax.set_xlabel(f"estimated latency on {result.target} (ns)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
