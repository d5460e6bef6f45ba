"""The rest of the artifact folder: Tcl/Makefile/README from templates, golden data, report.

Text skeletons are real files in ``templates/`` (``run_hls.tcl``, ``Makefile.tmpl``,
``README.md.tmpl``) filled with ``string.Template.substitute``
(a missing key fails loudly). Golden data are inputs and the reference interpreter's outputs
on the same quantized graph, written raw for the C++ testbench.
"""

from __future__ import annotations

import shutil
import string
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.c_names import comment_text
from backends.hls.design import Design
from backends.hls.resources import Model
from backends.hls.reuse import Evaluation, budget_of
from compiler.interpreter import interpret
from compiler.ir.graph import Graph
from compiler.report import format_table, precision_of

if TYPE_CHECKING:
    from compiler.target import Target

INCLUDE = Path(__file__).resolve().parent / "include" / "tapeout"


def template(name: str, **values: Any) -> str:
    text = resources.files("backends.hls").joinpath("templates", name).read_text()
    return string.Template(text).substitute(values)


def copy_kernels(out: Path) -> None:
    """The kernel library into ``firmware/tapeout/`` and the testbench's file helpers into
    ``tb/``, so the folder is self-contained."""
    dest = out / "firmware" / "tapeout"
    dest.mkdir(parents=True, exist_ok=True)
    for header in sorted(INCLUDE.glob("*.h")):
        shutil.copyfile(header, dest / header.name)
    (out / "tb").mkdir(exist_ok=True)
    shutil.copyfile(INCLUDE.parent / "tb" / "tb_io.h", out / "tb" / "tb_io.h")


# ---- golden data ----------------------------------------------------------------------------
def random_inputs(design: Design, samples: int, seed: int = 0) -> list[np.ndarray]:
    """Inputs spanning each input's quantized range, with exact ties and saturation."""
    rng = np.random.default_rng(seed)
    arrays = []
    for edge in design.inputs:
        t = edge.value.type
        shape = (samples, *[int(d) for d in t.shape[1:]]) if t.rank >= 2 else (samples,)
        buf = edge.port.buffer
        lo, hi = (
            np.iinfo(np.dtype(buf.ctype.replace("_t", ""))).min,
            np.iinfo(np.dtype(buf.ctype.replace("_t", ""))).max,
        )
        if edge.scale is None:
            arrays.append(rng.integers(int(lo), int(hi) + 1, size=shape).astype(t.np_dtype))
            continue
        grid = rng.uniform(float(lo) - 4, float(hi) + 4, size=shape)
        ties = np.floor(grid) + 0.5
        steps = np.floor(grid)
        pick = rng.integers(0, 4, size=shape)
        q = np.where(pick == 0, ties, np.where(pick == 1, steps, grid))
        arrays.append(((q - edge.zero_point) * edge.scale).astype(np.float32))
    return arrays


def golden(graph: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The interpreter's outputs, one sample at a time (the graph has batch 1)."""
    n = inputs[0].shape[0] if inputs and inputs[0].ndim else 1
    per_sample = []
    for s in range(n):
        xs = [_sample(x, v.type.rank, s) for x, v in zip(inputs, graph.inputs, strict=True)]
        per_sample.append(interpret(graph, *xs))
    return [
        np.stack([outs[k].reshape(-1) for outs in per_sample]) for k in range(len(graph.outputs))
    ]


def _sample(x: np.ndarray, rank: int, s: int) -> np.ndarray:
    return x[s : s + 1] if rank >= 2 else x[s]


def write_golden(out: Path, graph: Graph, inputs: list[np.ndarray]) -> int:
    data = out / "tb" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(inputs):
        (data / f"input_{i}.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    outputs = golden(graph, inputs)
    for i, (y, v) in enumerate(zip(outputs, graph.outputs, strict=True)):
        (data / f"output_{i}.bin").write_bytes(y.astype(v.type.np_dtype).tobytes())
    return inputs[0].shape[0] if inputs else 0


# ---- report ---------------------------------------------------------------------------------
def _bits(design_layer: Any) -> str:
    main = design_layer.nodes[0] if design_layer.nodes else None
    if main is None or design_layer.kind == "layout":
        return design_layer.output.dtype
    prec = precision_of(main)
    acc = main.attrs.get("acc")
    out = design_layer.output.dtype
    if design_layer.kind in ("dense", "conv2d", "depthwise_conv2d"):
        ins = " x ".join(v.dtype for v in main.inputs[:2])
        return f"{ins} -> {out} (acc {acc or 'i32'})"
    return prec if out in prec else f"{prec} -> {out}"


def layer_rows(design: Design, ev: Evaluation) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for port in design.in_ports:
        rows.append(_port_row(port.name, "input", port.edge, ev.ports[port.name]))
    for layer in design.all_layers():
        est = ev.layers[layer.name]
        c = layer.cost
        rows.append(
            {
                "name": layer.name,
                "op": layer.op,
                "loc": comment_text(layer.loc, 60),
                "shape": " -> ".join(
                    "x".join(str(d) for d in b.shape) for b in [*layer.inputs[:1], layer.output]
                ),
                "bits": _bits(layer),
                "macs": c.macs * c.blocks,
                "params": c.weight_count,
                "zero_weights": c.weight_count - c.nonzero if c.macs else 0,
                "rf": layer.rf,
                "dsp": est.dsp,
                "bram18k": est.bram18k,
                "lut": est.lut,
                "ff": est.ff,
                "ii": est.ii,
                "latency": est.latency,
            }
        )
    for port in design.out_ports:
        rows.append(_port_row(port.name, "output", port.edge, ev.ports[port.name]))
    return rows


def _port_row(name: str, op: str, buf: Any, est: Any) -> dict[str, Any]:
    return {
        "name": name,
        "op": op,
        "loc": "",
        "shape": "x".join(map(str, buf.shape)),
        "bits": buf.dtype,
        "macs": 0,
        "params": 0,
        "zero_weights": 0,
        "rf": 1,
        "dsp": est.dsp,
        "bram18k": est.bram18k,
        "lut": est.lut,
        "ff": est.ff,
        "ii": est.ii,
        "latency": est.latency,
    }


def summary(
    design: Design, ev: Evaluation, model: Model, target: Target, samples: int
) -> dict[str, Any]:
    fpga = target.fpga
    assert fpga is not None
    budget = budget_of(fpga)
    used = {"dsp": ev.total.dsp, "bram18k": ev.total.bram18k, "lut": ev.total.lut}
    out: dict[str, Any] = {
        "top": design.top,
        "part": fpga.part,
        "family": fpga.family,
        "clock_mhz": fpga.clock_mhz,
        "interface": design.interface,
    }
    used["ff"], budget["ff"] = ev.total.ff, int(fpga.ff)
    for key in ("dsp", "bram18k", "lut", "ff"):
        out[key] = used[key]
        out[f"{key}_budget"] = budget[key]
        out[f"{key}_used_pct"] = round(100.0 * used[key] / max(budget[key], 1), 1)
    period = 1000.0 / fpga.clock_mhz
    out.update(
        {
            "latency_cycles": ev.latency,
            "latency_ns": round(ev.latency * period, 1),
            "interval_cycles": ev.interval,
            "samples_per_second": round(1e9 / (ev.interval * period)) if ev.interval else 0,
            "dsp_products_per_dsp": model.products_per_dsp,
            "macs": sum(x.cost.macs * x.cost.blocks for x in design.layers),
            "reuse_factors": {x.name: x.rf for x in design.layers if x.tunable},
            "tb_samples": samples,
        }
    )
    return out


def totals_text(s: dict[str, Any]) -> str:
    lines = [
        f"- DSP: {s['dsp']} of {s['dsp_budget']} ({s['dsp_used_pct']}%)",
        f"- BRAM18K: {s['bram18k']} of {s['bram18k_budget']} ({s['bram18k_used_pct']}%)",
        f"- LUT: {s['lut']} of {s['lut_budget']} ({s['lut_used_pct']}%)",
        f"- FF: {s['ff']} of {s['ff_budget']} ({s['ff_used_pct']}%)",
        f"- latency: {s['latency_cycles']} cycles = {s['latency_ns']} ns at {s['clock_mhz']} MHz "
        f"(sum over layers); interval {s['interval_cycles']} cycles (slowest layer)",
    ]
    return "\n".join(lines)


def project_files(
    design: Design, target: Target, rows: list[dict[str, Any]], s: dict[str, Any]
) -> dict[str, str]:
    fpga = target.fpga
    assert fpga is not None
    common = {
        "top": design.top,
        "graph": design.graph_name,
        "target": target.name,
        "part": fpga.part,
        "clock_mhz": _num(fpga.clock_mhz),
        "period_ns": _num(round(1000.0 / fpga.clock_mhz, 3)),
        "interface": fpga.interface,
    }
    ports = []
    for kind, edges in (("input", design.inputs), ("output", design.outputs)):
        for edge in edges:
            p = edge.port
            order = ", NHWC order" if p.nhwc else ""
            ports.append(
                f"- {kind} `{p.name}`: {p.edge.dtype}[{','.join(map(str, p.edge.shape))}]"
                f"{order} ({p.packet} per beat) for graph value `%{edge.value.name}` "
                f"({edge.value.dtype}){_edge_note(edge)}"
            )
    table = format_table(
        [
            {
                k: r[k]
                for k in (
                    "name",
                    "op",
                    "shape",
                    "bits",
                    "rf",
                    "dsp",
                    "bram18k",
                    "lut",
                    "ff",
                    "ii",
                    "latency",
                )
            }
            for r in rows
        ]
    )
    return {
        "run_hls.tcl": template("run_hls.tcl", **common),
        "Makefile": template("Makefile.tmpl", **common),
        "README.md": template(
            "README.md.tmpl",
            **common,
            ports="\n".join(ports),
            table="```\n" + table + "\n```",
            totals=totals_text(s),
            packing=s["dsp_products_per_dsp"],
        ),
    }


def _edge_note(edge: Any) -> str:
    kind = getattr(edge, "kind", None)
    if kind == "table":
        return ": float output through a 256-entry table (a float island after the last layer)"
    if kind == "dequantize":
        scales = edge.scales.tolist()
        shown = scales[0] if len(scales) == 1 else f"{len(scales)} per-channel scales"
        return f": dequantized on the host, scale {shown}"
    if getattr(edge, "scale", None) is not None:
        return f": quantized on the host, scale {edge.scale!r}, zero point {edge.zero_point}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
