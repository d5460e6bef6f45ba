"""Our CPU schedule rules: what an untuned build runs instead of TVM's naive loop nests.

TVM 0.27's default CPU pipeline schedules nothing, and DLight's CPU rules cover only GEMV
and row reductions (softmax, layer norm). The rules here cover the rest:

* ``KernelRule``: the reductions of ``backends.tvm.kernels`` (``tapeout_conv2d``,
  ``tapeout_dense``, ``tapeout_bmm``), register-blocked the way hand-written CPU GEMM kernels
  are: the output channel block (one or two vectors, contiguous in the packed weight) is the
  vectorized innermost loop, a few output columns (or rows) are unrolled around it so that
  ``rows x vectors`` accumulators stay in registers, the reduction runs outside that block,
  and the outer spatial loops run in parallel. The accumulator tile is a ``local`` cache
  written back once, with the epilogue (bias, residual, activation) inlined into the write.
* ``RowRule``: layer norm and softmax over the last axis (``backends.tvm.kernels_row``): rows
  in parallel, each row's sums as vector partial sums.
* ``ReduceRowsRule``: a plain reduction over the last axis whose result an elementwise
  epilogue reads back per element (RMS norm as ``x * rsqrt(mean(x^2) + eps)``, TVM's own
  softmax): each row's reduction runs once, before the row's epilogue.
* ``FallbackRule``: everything else (elementwise chains, layout transforms, pooling, small
  reductions): inline producers, then a parallel outer loop and a vectorized inner loop.

A kernel that touches fewer than ``SERIAL_WORK`` elements (or multiply-adds) runs on the
calling thread: a parallel loop is a fork and a join of the thread pool, a few microseconds
on an idle machine and a whole time slice when another process holds a core, while copying
or normalizing a token's 576 floats takes well under a microsecond, and a decode step's
attention over 160 cached tokens (3 KV heads x 3 query rows x 160 x 64, ~90k multiply-adds)
about as long as one barrier. An LLM decode step runs ~25 such kernels per layer; only its
matrix-vector products (SmolLM2: 0.1-1 M multiply-adds each) are worth a barrier. Measured
under load (SmolLM2 Q4_1, 2 threads, 25 processes): these kernels took 60% of a step before,
0.5% after.

DLight's GEMV and Reduction rules run between the two. The tile sizes come from the target
file (vector width, register count), not from measurements; ``--tune`` searches further.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends.tvm.kernels import KERNEL_KINDS, PREFIX
from backends.tvm.kernels_vnni import VNNI_KINDS


@dataclass(frozen=True)
class CpuParams:
    """What the schedules need to know about the CPU: vector width and register count."""

    vector_bits: int = 256
    vector_regs: int = 16
    vnni: bool = False  # AVX-512 VNNI: int8 conv/dense through vpdpbusd

    def lanes(self, dtype_bits: int = 32) -> int:
        return max(self.vector_bits // dtype_bits, 1)

    @property
    def max_accumulators(self) -> int:
        # Keep registers for the weight vectors and the broadcast input operand.
        return 24 if self.vector_regs >= 32 else 12


def cpu_params(target: Any) -> CpuParams:
    """From a ``compiler.target.Target`` (or None: AVX2-sized defaults)."""
    cpu = getattr(target, "cpu", None)
    if cpu is None:
        return CpuParams()
    vnni = bool(cpu.has_vnni) and "+avx512vnni" in cpu.mattr and cpu.vector_bits >= 512
    return CpuParams(cpu.vector_bits, int(cpu.vector_regs), vnni)


#: Below this many elements (or multiply-adds), a kernel runs serially (see the docstring).
SERIAL_WORK = 1 << 17


def _schedule_error() -> type[Exception]:
    from tvm.s_tir.schedule import ScheduleError

    return ScheduleError


def _blocks(sch: Any) -> list[Any]:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _name(sch: Any, block: Any) -> str:
    return str(sch.get(block).name_hint)


def _extent(sch: Any, loop: Any) -> int:
    ext = sch.get(loop).extent
    try:
        return int(ext)
    except (TypeError, ValueError):
        return -1


def _is_spatial(sch: Any, block: Any) -> bool:
    return all(int(iv.iter_type) == 0 for iv in sch.get(block).iter_vars)


def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is <= ``limit`` (at least 1)."""
    for d in range(min(n, max(limit, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


def inline_all(sch: Any, keep: set[str]) -> None:
    """Inline every spatial block that can be, except those named in ``keep``."""
    err = _schedule_error()
    changed = True
    while changed:
        changed = False
        for block in _blocks(sch):
            name = _name(sch, block)
            if name in keep or not _is_spatial(sch, block) or not sch.get_consumers(block):
                continue
            try:
                sch.compute_inline(block)
                changed = True
            except err:
                continue


def _work(sch: Any, block: Any) -> int:
    """The iterations of a block's loop nest (elements written, or multiply-adds)."""
    total = 1
    for loop in sch.get_loops(block):
        total *= max(_extent(sch, loop), 1)
    return total


def parallel_vectorize(sch: Any, block: Any, lanes: int, min_parallel: int = 2) -> None:
    """Fuse a spatial block's loops; vectorize ``lanes`` of them and parallelize the rest.
    A small block keeps its loop nest (plain indices, no div/mod of a fused loop) and runs
    serially with its last loop vectorized."""
    loops = sch.get_loops(block)
    if not loops:
        return
    if _work(sch, block) < SERIAL_WORK:
        _vectorize_last(sch, block, lanes)
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    extent = _extent(sch, fused)
    if extent <= 0:
        return
    if extent % lanes == 0 and extent >= lanes:
        outer, inner = sch.split(fused, [None, lanes])
        sch.vectorize(inner)
        if extent // lanes >= min_parallel:
            sch.parallel(outer)
    elif extent >= min_parallel:
        sch.parallel(fused)


def parallel_reduction(sch: Any, block: Any, lanes: int) -> None:
    """A reduction block (pooling, mean, argmax): the leading spatial loops run in parallel;
    when the innermost spatial loop is the contiguous last dimension (NHWC channels), it
    moves inside the reduction and is vectorized."""
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    if len(loops) != len(kinds) or 0 not in kinds:
        return
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k != 0]
    last = spatial[-1]
    inner = None
    ordered = kinds == sorted(kinds, key=lambda k: k != 0)
    if ordered and reduce and _extent(sch, last) % lanes == 0:
        so, inner = sch.split(last, [None, lanes])
        spatial = [*spatial[:-1], so]
    sch.reorder(*spatial, *reduce, *([inner] if inner is not None else []))
    small = _work(sch, block) < SERIAL_WORK
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    if _extent(sch, fused) > 1 and not small:
        sch.parallel(fused)
    if inner is not None:
        sch.vectorize(inner)
        if reduce:
            sch.decompose_reduction(block, reduce[0])


class KernelRule:
    """Register-blocked schedule of the ``tapeout_conv2d/dense/bmm`` reductions."""

    def __init__(self, params: CpuParams, lanes_for_f64: bool = False):
        self.params = params
        self.lanes_for_f64 = lanes_for_f64  # params already halved for float64

    def main_block(self, sch: Any) -> tuple[Any, str] | None:
        for block in _blocks(sch):
            name = _name(sch, block)
            for kind in KERNEL_KINDS + VNNI_KINDS:
                if name.startswith(PREFIX + kind):
                    return block, kind
        return None

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        from tvm import s_tir

        sch = s_tir.Schedule(func)
        found = self.main_block(sch)
        if found is None:
            return None
        block, kind = found
        if _bits(sch, block) == 64 and not self.lanes_for_f64:
            # float64 (an f64 island's batched matmul): half the lanes per vector register;
            # the tilings count lanes of 32 bits, so halve the vector width they see
            from dataclasses import replace

            half = replace(self.params, vector_bits=self.params.vector_bits // 2)
            return KernelRule(half, lanes_for_f64=True).apply(func, target, tunable)
        pads = {_name(sch, b) for b in _blocks(sch) if _name(sch, b).startswith(PREFIX + "pad")}
        inline_all(sch, keep=pads | {_name(sch, block)})
        block, kind = self.main_block(sch) or found
        tile = {
            "conv2d": self._conv_tiles,
            "gconv2d": self._conv_tiles,
            "dense": self._dense_tiles,
            "bmm": self._bmm_tiles,
            "vconv2d": self._vconv_tiles,
            "vdense": self._vdense_tiles,
        }
        outer, tile_loop, vec, unroll, reduce_start = tile[kind](sch, block)
        self._finish(
            sch, block, outer, tile_loop, vec, unroll, reduce_start, tensorize=kind in VNNI_KINDS
        )
        for pad in pads:
            try:
                _rows_parallel(sch, sch.get_sblock(pad), self.params.lanes())
            except _schedule_error():
                pass
        return sch

    # -- tilings: return (parallel loops, tile loop, vector loop, unrolled loop, first reduce)
    def _width(self, block_width: int) -> int:
        vectors = max(block_width // self.params.lanes(), 1)
        return max(self.params.max_accumulators // vectors, 1)

    def _oc_block(self, sch: Any, block: Any) -> int:
        # The weight is the second read buffer; its last dimension is the channel block
        # (all output channels for the grouped conv, whose weight is not blocked).
        width = int(sch.get(block).reads[1].source.shape[-1])
        lanes = self.params.lanes()
        if width <= 2 * lanes:
            return width
        return 2 * lanes if width % (2 * lanes) == 0 else _divisor_at_most(width, lanes)

    def _conv_tiles(self, sch: Any, block: Any) -> tuple:
        n, oh, ow, oc, rh, rw, rc = sch.get_loops(block)
        b = self._oc_block(sch, block)
        oco, oci = sch.split(oc, [None, b])
        wb = _divisor_at_most(_extent(sch, ow), self._width(b))
        owo, owi = sch.split(ow, [None, wb])
        sch.reorder(n, oco, oh, owo, rh, rw, rc, owi, oci)
        return [n, oco, oh], owo, oci, owi, rh

    def _dense_tiles(self, sch: Any, block: Any) -> tuple:
        i, j, rk = sch.get_loops(block)
        b = self._oc_block(sch, block)
        jo, ji = sch.split(j, [None, b])
        mb = _divisor_at_most(_extent(sch, i), self._width(b))
        io, ii = sch.split(i, [None, mb])
        sch.reorder(io, jo, rk, ii, ji)
        return [io, jo], jo, ji, ii, rk

    def _bmm_tiles(self, sch: Any, block: Any) -> tuple:
        bt, i, j, rk = sch.get_loops(block)
        lanes = self.params.lanes()
        n = _extent(sch, j)
        b = 2 * lanes if n % (2 * lanes) == 0 else (lanes if n % lanes == 0 else n)
        jo, ji = sch.split(j, [None, b])
        mb = _divisor_at_most(_extent(sch, i), self._width(b))
        io, ii = sch.split(i, [None, mb])
        sch.reorder(bt, io, jo, rk, ii, ji)
        return [bt, io, jo], jo, ji, ii, rk

    def _vconv_tiles(self, sch: Any, block: Any) -> tuple:
        n, oh, ow, oc, rh, rw, rc, rk = sch.get_loops(block)
        vectors = 2 if _extent(sch, oc) % 32 == 0 else 1
        oco, oci = sch.split(oc, [None, 16 * vectors])
        oci_o, oci_i = sch.split(oci, [None, 16])
        wb = _divisor_at_most(_extent(sch, ow), self.params.max_accumulators // vectors)
        owo, owi = sch.split(ow, [None, wb])
        sch.reorder(n, oco, oh, owo, rh, rw, rc, owi, oci_o, oci_i, rk)
        return [n, oco, oh], owo, oci_i, owi, rh

    def _vdense_tiles(self, sch: Any, block: Any) -> tuple:
        i, j, rc, rk = sch.get_loops(block)
        vectors = 2 if _extent(sch, j) % 32 == 0 else 1
        jo, ji = sch.split(j, [None, 16 * vectors])
        ji_o, ji_i = sch.split(ji, [None, 16])
        mb = _divisor_at_most(_extent(sch, i), self.params.max_accumulators // vectors)
        io, ii = sch.split(i, [None, mb])
        sch.reorder(io, jo, rc, ii, ji_o, ji_i, rk)
        return [io, jo], jo, ji_i, ii, rc

    def _finish(
        self,
        sch: Any,
        block: Any,
        outer: list,
        tile: Any,
        vec: Any,
        unroll: Any,
        reduce: Any,
        tensorize: bool = False,
    ) -> None:
        err = _schedule_error()
        acc = sch.cache_write(block, 0, "local")
        full = _write_shape(sch, acc)
        sch.reverse_compute_at(acc, tile)
        for consumer in list(sch.get_consumers(acc)):
            # Inlining a consumer that covers fewer elements (the crop of a padded channel
            # block) would write out of bounds: compute it at the tile instead.
            try:
                if _write_shape(sch, consumer) == full:
                    sch.reverse_compute_inline(consumer)
                    continue
            except err:
                pass
            sch.reverse_compute_at(consumer, tile)
            _vectorize_last(sch, consumer, self.params.lanes())
        par = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if _work(sch, block) >= SERIAL_WORK and _extent(sch, par) > 1:
            sch.parallel(par)
        if not tensorize:
            sch.vectorize(vec)
        sch.unroll(unroll)
        _vectorize_last(sch, acc, self.params.lanes())
        init = sch.decompose_reduction(block, reduce)
        _vectorize_last(sch, init, self.params.lanes())
        if tensorize:
            from backends.tvm.intrinsics import vnni_local

            sch.tensorize(vec, vnni_local())


def _rows_parallel(sch: Any, block: Any, lanes: int) -> None:
    """A padded NHWC copy: rows (n, y) in parallel, each row's (x, channel) run vectorized.
    Fusing every loop instead would let a vector straddle two rows when the channels are
    few (an image's 3 or 4), and LLVM then gathers each byte."""
    loops = sch.get_loops(block)
    if len(loops) != 4:
        parallel_vectorize(sch, block, lanes)
        return
    n, y, x, c = loops
    sch.parallel(sch.fuse(n, y))
    inner = sch.fuse(x, c)
    if _extent(sch, inner) % lanes == 0:
        _, vec = sch.split(inner, [None, lanes])
        sch.vectorize(vec)


def _write_shape(sch: Any, block: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in sch.get(block).writes[0].source.shape)


def _vectorize_last(sch: Any, block: Any, lanes: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    ext = _extent(sch, loops[-1])
    if ext > 1 and ext % lanes == 0:
        if ext > lanes:
            _, inner = sch.split(loops[-1], [None, lanes])
            sch.vectorize(inner)
        else:
            sch.vectorize(loops[-1])


def _inlined_sink(sch: Any) -> tuple[Any, list[Any]] | None:
    """After inlining every producer that can be: the one block nothing reads (it must be
    spatial) and its loops; None where there are several, or it reduces."""
    inline_all(sch, keep=set())
    sinks = [b for b in _blocks(sch) if not sch.get_consumers(b)]
    if len(sinks) != 1 or not _is_spatial(sch, sinks[0]):
        return None
    return sinks[0], sch.get_loops(sinks[0])


class _Rule:
    """What the rules below share: the target's ``params``, and DLight's ``apply``, which
    makes a schedule of ``func`` for ``schedule`` to fill; ``schedule`` returns it, or None
    to decline."""

    def __init__(self, params: CpuParams):
        self.params = params

    def apply(self, func: Any, target: Any, tunable: bool) -> Any:
        from tvm import s_tir

        return self.schedule(s_tir.Schedule(func))

    def schedule(self, sch: Any) -> Any:
        raise NotImplementedError


class RowRule(_Rule):
    """Layer norm and softmax over the last axis (``backends.tvm.kernels_row``): one parallel
    loop over rows; in it, each row's reductions (vector partial sums, then their total) and
    the output row, vectorized. Whatever Relax fused around them (a quantize after, a scale
    or mask before) is inlined."""

    def schedule(self, sch: Any) -> Any:
        from backends.tvm.kernels_row import ROW_PART

        if not any(_name(sch, b).startswith(ROW_PART) for b in _blocks(sch)):
            return None
        try:
            sink, loops = _inlined_sink(sch) or (None, [])
            if len(loops) < 2:
                return None
            row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
            part = next(b for b in _blocks(sch) if _name(sch, b).startswith(ROW_PART))
            lanes = self.params.lanes(_bits(sch, part))  # the float type the row computes in
            _vectorize_last(sch, sink, lanes)
            if _extent(sch, row) > 1 and _work(sch, sink) >= SERIAL_WORK:
                sch.parallel(row)  # before the reductions move in: they leave it non-compact
            producers = [b for b in _blocks(sch) if _name(sch, b) != _name(sch, sink)]
            for block in reversed(producers):
                sch.compute_at(block, row, preserve_unit_loops=False)
            for block in _blocks(sch):
                if _name(sch, block).startswith(ROW_PART):
                    inner = sch.get_loops(block)[-2:]  # (partial lane, reduction)
                    sch.reorder(inner[1], inner[0])
                    sch.vectorize(inner[0])
                    sch.decompose_reduction(block, inner[1])
        except _schedule_error():
            return None
        return sch


class ReduceRowsRule(_Rule):
    """A reduction over the last axis with an elementwise epilogue that reads its result
    back (RMS norm lowered from plain ops, TVM's softmax when a row's length is not a
    multiple of the vector): rows (all but the last axis) in one loop, in parallel when the
    kernel is large; in it, the row's reductions and what they read, then the row's output,
    vectorized. DLight's CPU reduction rule put the reduction under the epilogue's loop over
    *elements*, so it ran once per element (576 times per RMS norm of SmolLM2). The sums
    keep their serial order."""

    def schedule(self, sch: Any) -> Any:
        try:
            if all(_is_spatial(sch, b) for b in _blocks(sch)):
                return None
            sink, loops = _inlined_sink(sch) or (None, [])
            if len(loops) < 2 or len(loops) != len(_write_shape(sch, sink)):
                return None
            producers = [b for b in _blocks(sch) if _name(sch, b) != _name(sch, sink)]
            before = {_name(sch, b): _work(sch, b) for b in producers}
            row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
            _vectorize_last(sch, sink, self.params.lanes(_bits(sch, sink)))
            if _extent(sch, row) > 1 and _work(sch, sink) >= SERIAL_WORK:
                sch.parallel(row)
            for block in reversed(producers):
                sch.compute_at(block, row, preserve_unit_loops=False)
            for block in _blocks(sch):
                name = _name(sch, block)
                if name in before and _work(sch, block) > before[name]:
                    return None  # a row would recompute part of it: not a row reduction
                if name in before and _is_spatial(sch, block):
                    _vectorize_last(sch, block, self.params.lanes(_bits(sch, block)))
        except _schedule_error():
            return None
        return sch


def _bits(sch: Any, block: Any) -> int:
    """The element width of the block's output (the vector lane count follows it)."""
    return max(int(sch.get(block).writes[0].source.dtype.bits), 8)


class FallbackRule(_Rule):
    """Parallel outer loop and vector inner loop for whatever no other rule took."""

    def schedule(self, sch: Any) -> Any:
        try:
            inline_all(sch, keep=set())
        except _schedule_error():
            return None
        err = _schedule_error()
        for block in _blocks(sch):
            try:
                if _is_spatial(sch, block):
                    parallel_vectorize(sch, block, self.params.lanes())
                else:
                    parallel_reduction(sch, block, self.params.lanes())
            except err:
                continue
        return sch


class ZeroSizeRule(_Rule):
    """A kernel over a zero-size tensor (Phi-3 slices ``x[..., 16:]`` of a 16-wide head) has
    loops of extent 0: it is left as it is, since it does no work and every tiling would
    divide by its extent."""

    def schedule(self, sch: Any) -> Any:
        try:
            blocks = _blocks(sch)
        except _schedule_error():
            return None
        if any(_extent(sch, loop) == 0 for block in blocks for loop in sch.get_loops(block)):
            return sch
        return None


def default_rules(params: CpuParams) -> list[Any]:
    """Ours first (zero-size kernels before all), then DLight's CPU rules, then the
    fallback."""
    from tvm.s_tir import dlight

    return [
        _as_dlight(ZeroSizeRule(params)),
        _as_dlight(KernelRule(params)),
        _as_dlight(RowRule(params)),
        dlight.cpu.GEMV(),
        _as_dlight(ReduceRowsRule(params)),
        dlight.cpu.Reduction(),
        _as_dlight(FallbackRule(params)),
    ]


def _as_dlight(rule: Any) -> Any:
    from tvm.s_tir.dlight.base import ScheduleRule

    return ScheduleRule.from_callable(type(rule).__name__)(rule.apply)
