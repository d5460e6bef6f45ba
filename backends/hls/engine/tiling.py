"""Tiling: split each conv/dense step so that every tile fits the engine's buffers.

A tile is ``T_OH`` output rows (full width) x ``T_OC`` output channels, accumulated over
``T_IC`` input channels at a time (groups == 1; a grouped conv takes its groups' channels
whole). It needs, per ping-pong half (``tapeout/engine.h``):

    in  = rows(T_OH) * wp * T_IC              rows(t) = (t - 1) * SH + (KH - 1) * DH + 1
    w   = T_OC * KH * KW * T_IC               wp = (OW - 1) * SW + (KW - 1) * DW + 1
    acc = T_OH * OW * T_OC                    (int32)

Among the tilings that fit, ``choose_tiles`` takes the one with the least DDR traffic
(``traffic``), then the fewest tiles. When none fits, ``BackendError`` names the layer and
the buffer that is short even for the smallest tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backends.hls.engine.config import EngineConfig
from backends.hls.engine.schedule import Step
from compiler.errors import BackendError


@dataclass(frozen=True)
class Tiling:
    oh: int
    oc: int
    ic: int


def _rows(step: Step, toh: int) -> int:
    return (toh - 1) * step.get("SH") + (step.get("KH") - 1) * step.get("DH") + 1


def padded_width(step: Step) -> int:
    return (step.get("OUT_W") - 1) * step.get("SW") + (step.get("KW") - 1) * step.get("DW") + 1


def _span(step: Step, toc: int) -> int:
    """Input channels an output-channel tile of ``toc`` reads."""
    groups = step.get("GROUPS")
    if groups == 1:
        return step.get("IN_C")
    cin_g, cout_g = step.get("IN_C") // groups, step.get("OUT_C") // groups
    return math.ceil(toc / cout_g) * cin_g


def needs(step: Step, t: Tiling) -> dict[str, int]:
    """Elements each buffer must hold for tiling ``t``."""
    groups = step.get("GROUPS")
    nic = t.ic if groups == 1 else _span(step, t.oc)
    wlen = t.ic if groups == 1 else step.get("IN_C") // groups
    return {
        "in_buf": _rows(step, t.oh) * padded_width(step) * nic,
        "w_buf": t.oc * step.get("KH") * step.get("KW") * wlen,
        "acc_buf": t.oh * step.get("OUT_W") * t.oc,
        "max_oc": t.oc,
    }


def traffic(step: Step, t: Tiling) -> int:
    """DDR bytes the step moves with tiling ``t`` (weights, parameters, input, output).

    Weights stay on chip across row tiles when one input-channel tile covers the input;
    otherwise they are fetched again for every row tile. The input is fetched once per
    output-channel tile (its rows with the window's halo), except for grouped convs, whose
    output-channel tiles read disjoint channels.
    """
    oh, ow, oc = step.get("OUT_H"), step.get("OUT_W"), step.get("OUT_C")
    ic, iw, groups = step.get("IN_C"), step.get("IN_W"), step.get("GROUPS")
    n_oh, n_oc = math.ceil(oh / t.oh), math.ceil(oc / t.oc)
    n_ic = math.ceil(ic / t.ic) if groups == 1 else 1
    weights = 0 if step.weights is None else int(step.weights.size)
    w_bytes = weights * (n_oh if n_ic > 1 else 1)
    rows = min(_rows(step, t.oh), step.get("IN_H"))
    in_bytes = n_oh * rows * iw * ic * (n_oc if groups == 1 else 1)
    out_bytes = oh * ow * oc * (2 if step.get("RES") >= 0 else 1)
    params = 4 * oc * (3 if step.get("PER_CHANNEL") else 1)
    return w_bytes + in_bytes + out_bytes + params


def _candidates(total: int, lane: int, unit: int = 1) -> list[int]:
    """Tile sizes worth trying: the whole, and near-equal splits rounded up to the lane width
    (multiples of ``unit``, so that a grouped conv's tiles hold whole groups)."""
    step = math.lcm(max(1, lane), unit) if unit > 1 else max(1, lane)
    sizes = {total}
    for parts in range(1, 129):
        size = math.ceil(math.ceil(total / parts) / step) * step
        sizes.add(max(unit, min(total, size)))
    return sorted(sizes, reverse=True)


def _max_rows(step: Step, cfg: EngineConfig, toc: int, tic: int) -> int:
    """The most output rows per tile that fit with ``toc`` x ``tic`` (0: none)."""
    oh = step.get("OUT_H")
    by_acc = cfg.acc_buf // max(1, step.get("OUT_W") * toc)
    probe = needs(step, Tiling(1, toc, tic))
    per_row = probe["in_buf"] // _rows(step, 1)  # elements per input row of the tile
    fit_rows = cfg.in_buf // max(1, per_row)
    base = (step.get("KH") - 1) * step.get("DH") + 1
    by_in = (fit_rows - base) // step.get("SH") + 1 if fit_rows >= base else 0
    return max(0, min(oh, by_acc, by_in))


def choose_tiles(step: Step, cfg: EngineConfig) -> Tiling:
    """The fitting tiling with the least DDR traffic; sets the step's T_* fields."""
    groups = step.get("GROUPS")
    cout_g = step.get("OUT_C") // groups
    oc_options = _candidates(step.get("OUT_C"), cfg.ocp, cout_g if groups > 1 else 1)
    ic_options = _candidates(step.get("IN_C"), cfg.icp) if groups == 1 else [0]
    best: tuple[int, int, Tiling] | None = None
    for toc in oc_options:
        if toc > cfg.max_oc:
            continue
        for tic in ic_options:
            tic = tic or step.get("IN_C") // groups
            if needs(step, Tiling(1, toc, tic))["w_buf"] > cfg.w_buf:
                continue
            toh = _max_rows(step, cfg, toc, tic)
            if toh == 0:
                continue
            t = Tiling(toh, toc, tic)
            tiles = math.ceil(step.get("OUT_H") / toh) * math.ceil(step.get("OUT_C") / toc)
            key = (traffic(step, t), tiles, t)
            if best is None or key[:2] < best[:2]:
                best = key
    if best is None:
        raise BackendError(_refusal(step, cfg, oc_options[-1], ic_options[-1]))
    tiling = best[2]
    step.fields.update(T_OH=tiling.oh, T_OC=tiling.oc, T_IC=tiling.ic)
    return tiling


def _refusal(step: Step, cfg: EngineConfig, toc: int, tic: int) -> str:
    tic = tic or step.get("IN_C") // step.get("GROUPS")
    smallest = Tiling(1, toc, tic)
    need = needs(step, smallest)
    have = {"in_buf": cfg.in_buf, "w_buf": cfg.w_buf, "acc_buf": cfg.acc_buf, "max_oc": cfg.max_oc}
    short = [f"{k} needs {need[k]} > {have[k]}" for k in need if need[k] > have[k]]
    where = f" at {step.loc!r}" if step.loc else ""
    return (
        f"layer {step.name} ({step.kind}{where}) fits no tiling of engine {cfg.name}: even the "
        f"smallest tile (1 output row x {toc} output channels x {tic} input channels) is too "
        f"large: {'; '.join(short)} elements (padded input width {padded_width(step)}, kernel "
        f"{step.get('KH')}x{step.get('KW')})"
    )


def tile_all(steps: list[Step], cfg: EngineConfig) -> None:
    """Tiles for every MAC step (side units stream and need none)."""
    for step in steps:
        if step.op == "conv":
            choose_tiles(step, cfg)
