"""``tapeout report`` and ``tapeout diff``: a saved report, and two builds layer by layer.

``diff`` matches layers by name (then by source location) and shows every column that
differs (precision, reuse factor, resources, latency, ...), then the summary figures that
differ, ``verify`` results included. Gates: ``max_increase={"latency_cycles": 5}`` fails when
B's figure is more than 5 % above A's, ``max_decrease={"verify.top1_compiled": 1}`` when it is
more than 1 % below; a key missing from either report fails its gate too (a gate that cannot
be checked must not pass).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compiler.errors import BackendError
from compiler.report import format_report, format_table

#: Columns that identify a layer rather than describe it.
_KEYS = ("name", "op", "loc")


def load_report(artifact: str | Path) -> dict[str, Any]:
    """The report an artifact folder saved (``report.json``, else its manifest's)."""
    folder = Path(artifact)
    for name, key in (("report.json", None), ("manifest.json", "report")):
        file = folder / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError) as e:
                raise BackendError(f"cannot read {file}: {e}") from None
            return data.get(key, {}) if key else data
    raise BackendError(f"{folder} is not a tapeout artifact (no report.json or manifest.json)")


def report_text(artifact: str | Path) -> str:
    return format_report(load_report(artifact))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _layer_diffs(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> str:
        return str(row.get("name") or row.get("loc"))

    rows_b = {key(r): r for r in b}
    rows_a = {key(r): r for r in a}
    out = []
    for k in [*rows_a, *(k for k in rows_b if k not in rows_a)]:
        ra, rb = rows_a.get(k), rows_b.get(k)
        if ra is None or rb is None:
            out.append({"layer": k, "change": "only in " + ("B" if ra is None else "A")})
            continue
        changed = {
            c: f"{ra.get(c)} -> {rb.get(c)}"
            for c in dict.fromkeys([*ra, *rb])
            if c not in _KEYS and ra.get(c) != rb.get(c)
        }
        if changed:
            out.append({"layer": k, "change": ", ".join(f"{c} {v}" for c, v in changed.items())})
    return out


def _gate(name: str, fa: dict[str, Any], fb: dict[str, Any], pct: float, up: bool) -> str | None:
    va, vb = _number(fa.get(name)), _number(fb.get(name))
    if va is None or vb is None:
        return f"{name}: not a number in both reports (A {fa.get(name)!r}, B {fb.get(name)!r})"
    change = (vb - va) / abs(va) * 100 if va else (0.0 if vb == va else float("inf") * (vb - va))
    if (up and change > pct) or (not up and -change > pct):
        word = "rose" if change > 0 else "fell"
        return f"{name} {word} {abs(change):.2f}% ({va:g} -> {vb:g}), limit {pct:g}%"
    return None


def diff(
    a: str | Path,
    b: str | Path,
    max_increase: dict[str, float] | None = None,
    max_decrease: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare the reports of artifacts ``a`` and ``b``; see the module docstring."""
    ra, rb = load_report(a), load_report(b)
    fa, fb = _flat(ra.get("summary") or {}), _flat(rb.get("summary") or {})
    summary = [
        {"figure": k, "A": fa.get(k), "B": fb.get(k)}
        for k in dict.fromkeys([*fa, *fb])
        if fa.get(k) != fb.get(k)
    ]
    failures = [
        f
        for gates, up in ((max_increase or {}, True), (max_decrease or {}, False))
        for name, pct in gates.items()
        if (f := _gate(name, fa, fb, pct, up)) is not None
    ]
    return {
        "a": str(a),
        "b": str(b),
        "targets": [ra.get("target"), rb.get("target")],
        "layers": _layer_diffs(ra.get("layers") or [], rb.get("layers") or []),
        "summary": summary,
        "failures": failures,
        "passed": not failures,
    }


def format_diff(result: dict[str, Any]) -> str:
    lines = [f"diff A={result['a']} ({result['targets'][0]}) B={result['b']} "
             f"({result['targets'][1]})", "", "layers that differ:"]  # fmt: skip
    lines.append(format_table(result["layers"]) if result["layers"] else "(none)")
    lines += ["", "summary figures that differ:"]
    lines.append(format_table(result["summary"]) if result["summary"] else "(none)")
    if result["failures"]:
        lines += ["", "GATE FAILED:"] + [f"  {f}" for f in result["failures"]]
    return "\n".join(lines)
