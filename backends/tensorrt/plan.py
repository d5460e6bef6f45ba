"""The TensorRT build plan: what to ask the builder for, decided from the target and graph.

``make_plan`` picks the precision flags (fp16; int8 when the graph is quantized, with fp16
for its float islands where the GPU has it), 2:4 sparse weights (only where conv/dense
weights really are 2:4 sparse and the GPU has sparse tensor cores), the workspace limit,
the optimization profile for dynamic dimensions, and a DLA core if asked. The plan renders
as ``build_config.json`` (read by ``build_engine.py``) and as the equivalent ``trtexec``
command line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from compiler.errors import BackendError
from compiler.ir.graph import Graph, Node
from compiler.ir.types import is_int

if TYPE_CHECKING:
    from compiler.target import Target

ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.engine"
LAYERS_FILE = "layers.json"
CACHE_FILE = "timing.cache"
CONFIG_FILE = "build_config.json"

#: Default (min, opt, max) of a dynamic dimension when the user gives no ``shape_ranges``.
DEFAULT_RANGE = (1, 1, 32)


@dataclass(frozen=True)
class BuildPlan:
    """Everything the engine build needs, as plain data."""

    target: str
    compute_capability: str
    precision: str  # what the user asked for: fp32, fp16 or int8
    precisions: tuple[str, ...]  # builder flags: ("fp16",), ("int8", "fp16"), ()
    workspace_mb: int
    sparse_layers: tuple[str, ...] = ()
    sparse_weights: bool = False
    profiles: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    dla_core: int | None = None
    tf32: bool = True
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    def config(self, **paths: str) -> dict[str, Any]:
        """``build_config.json``: file names relative to the bundle folder unless given."""
        return {
            "onnx": paths.get("onnx", ONNX_FILE),
            "engine": paths.get("engine", ENGINE_FILE),
            "layers": paths.get("layers", LAYERS_FILE),
            "timing_cache": paths.get("timing_cache", CACHE_FILE),
            "target": self.target,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "precisions": list(self.precisions),
            "tf32": self.tf32,
            "sparse_weights": self.sparse_weights,
            "sparse_layers": list(self.sparse_layers),
            "workspace_mb": self.workspace_mb,
            "profiles": self.profiles,
            "dla_core": self.dla_core,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }

    def trtexec_args(self) -> list[str]:
        """``trtexec`` arguments building the same engine (TensorRT 10 flag names)."""
        args = ["trtexec", f"--onnx={ONNX_FILE}", f"--saveEngine={ENGINE_FILE}"]
        args += [f"--{p}" for p in ("fp16", "int8") if p in self.precisions]
        if self.sparse_weights:
            args.append("--sparsity=enable")
        if not self.tf32:
            args.append("--noTF32")
        args.append(f"--memPoolSize=workspace:{self.workspace_mb}M")
        args.append(f"--timingCacheFile={CACHE_FILE}")
        if self.profiles:
            for key, flag in (
                ("min", "--minShapes"),
                ("opt", "--optShapes"),
                ("max", "--maxShapes"),
            ):
                shapes = ",".join(
                    f"{name}:{'x'.join(str(d) for d in dims[key])}"
                    for name, dims in self.profiles.items()
                )
                args.append(f"{flag}={shapes}")
        if self.dla_core is not None:
            args += [f"--useDLACore={self.dla_core}", "--allowGPUFallback"]
        args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={LAYERS_FILE}"]
        return args

    def trtexec_command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.trtexec_args())


# ---- 2:4 structured sparsity ---------------------------------------------------------------
def is_2to4_sparse(weight: np.ndarray, conv: bool) -> bool:
    """True if every group of 4 consecutive input-channel weights has at least 2 zeros.

    TensorRT's sparse tensor cores take the input dimension in groups of four (conv weight
    [O, I, kh, kw]: along I for every output channel and tap; dense weight [N, K]: along K).
    A layer whose input dimension is not a multiple of 4 (a first conv over RGB) stays dense
    in TensorRT, as in the prune-2to4 pass.
    """
    w = np.asarray(weight)
    if w.ndim < 2 or w.size == 0 or w.shape[1] % 4:
        return False
    rows = np.moveaxis(w, 1, -1).reshape(-1, w.shape[1]) if conv else w  # [..., I]
    groups = rows.reshape(rows.shape[0], -1, 4)
    return bool(np.all(np.count_nonzero(groups == 0, axis=-1) >= 2))


def sparse_layers(graph: Graph) -> list[str]:
    """Conv/dense nodes whose constant weight is 2:4 sparse (a pruning pass made it so)."""
    found = []
    for node in graph.nodes_of("nn.conv1d", "nn.conv2d", "nn.dense"):
        weight = graph.const_value(node.inputs[1])
        if weight is not None and is_2to4_sparse(weight, conv=node.op != "nn.dense"):
            found.append(node.outputs[0].name)
    return found


# ---- precision -----------------------------------------------------------------------------
def is_quantized(graph: Graph) -> bool:
    return any(n.op.startswith("q.") for n in graph.nodes)


def integer_compute(node: Node) -> bool:
    """Nodes that TensorRT runs in int8 in an explicitly quantized (Q/DQ) network."""
    if node.op.startswith("q."):
        return node.op not in ("q.dequantize",)
    return (
        bool(node.inputs) and node.inputs[0].type.quant is not None and is_int(node.inputs[0].dtype)
    )


def choose_precision(graph: Graph, target: Target, options: dict[str, Any]) -> tuple[str, tuple]:
    """(asked precision, builder precision flags)."""
    gpu = target.gpu
    assert gpu is not None
    asked = options.get("precision") or ("int8" if is_quantized(graph) else None)
    if asked is None:
        asked = target.numerics.precision if target.numerics.precision != "mixed" else "fp16"
    if asked == "int8" and not is_quantized(graph):
        raise BackendError(
            "int8 needs a quantized graph: run the quantize pass (compile(precision='int8'))"
        )
    if asked not in ("fp32", "fp16", "int8"):
        raise BackendError(f"the TensorRT backend builds fp32, fp16 or int8, not {asked!r}")
    if asked != "fp32" and asked not in gpu.precisions:
        raise BackendError(f"target {target.name} has no {asked} (it has {list(gpu.precisions)})")
    flags: list[str] = []
    if asked == "int8":
        flags.append("int8")
    float_islands = options.get("float_precision", "fp16")
    if asked == "fp16" or (
        asked == "int8" and float_islands == "fp16" and "fp16" in gpu.precisions
    ):
        flags.append("fp16")
    return asked, tuple(flags)


# ---- dynamic shapes ------------------------------------------------------------------------
def profiles_for(graph: Graph, ranges: dict[str, Any] | None) -> dict[str, dict[str, list[int]]]:
    """min/opt/max shapes of every input with symbolic dimensions."""
    ranges = dict(ranges or {})
    profiles: dict[str, dict[str, list[int]]] = {}
    for value in graph.inputs:
        if value.type.is_static:
            continue
        dims: dict[str, list[int]] = {"min": [], "opt": [], "max": []}
        for d in value.type.shape:
            for key, n in zip(dims, dim_range(d, ranges), strict=True):
                dims[key].append(n)
        profiles[value.name] = dims
    return profiles


def _symbol_range(name: str, ranges: dict[str, Any]) -> tuple[int, int, int]:
    lo, opt, hi = (int(n) for n in ranges.get(name, DEFAULT_RANGE))
    if not 1 <= lo <= opt <= hi:
        raise BackendError(f"shape range for {name!r} must be 1 <= min <= opt <= max")
    return lo, opt, hi


def dim_range(d: int | str, ranges: dict[str, Any]) -> tuple[int, int, int]:
    """min/opt/max of one dimension: a size, a symbol (``ranges`` or the default), or a sum
    of products the shape rules derived (``past+8``, ``2*seq``), evaluated at each end (all
    sizes are positive, so the sums and products grow with their symbols)."""
    if isinstance(d, int):
        return d, d, d
    if d in ranges or not any(op in d for op in "+*"):
        return _symbol_range(d, ranges)
    ends = [0, 0, 0]
    for term in d.split("+"):
        product = [1, 1, 1]
        for factor in term.split("*"):
            sizes = (int(factor),) * 3 if factor.isdigit() else _symbol_range(factor, ranges)
            product = [p * n for p, n in zip(product, sizes, strict=True)]
        ends = [e + p for e, p in zip(ends, product, strict=True)]
    return ends[0], ends[1], ends[2]


def make_plan(
    graph: Graph, target: Target, options: dict[str, Any], outputs: list[str] | None = None
) -> BuildPlan:
    """The build plan for ``graph`` on ``target`` with backend ``options``."""
    gpu = target.gpu
    if gpu is None:
        raise BackendError(f"target {target.name} has no [gpu] table")
    asked, flags = choose_precision(graph, target, options)
    sparse = sparse_layers(graph)
    want_sparse = options.get("sparsity", "auto")
    use_sparse = bool(sparse) and gpu.sparsity and want_sparse in ("auto", True)
    dla = options.get("dla_core")
    if dla is not None and not 0 <= int(dla) < gpu.dla_cores:
        raise BackendError(f"target {target.name} has {gpu.dla_cores} DLA core(s), not {dla}")
    workspace = int(options.get("workspace_mb", gpu.workspace_mb))
    if workspace > gpu.memory_gb * 1024:  # the builder would fail to allocate it
        raise BackendError(
            f"workspace_mb={workspace} exceeds {target.name}'s {gpu.memory_gb} GB of memory"
        )
    return BuildPlan(
        target=target.name,
        compute_capability=gpu.compute_capability,
        precision=asked,
        precisions=flags,
        workspace_mb=max(1, workspace),
        sparse_layers=tuple(sparse),
        sparse_weights=use_sparse,
        profiles=profiles_for(graph, options.get("shape_ranges")),
        dla_core=None if dla is None else int(dla),
        tf32="tf32" in gpu.precisions and bool(options.get("tf32", True)),
        inputs=tuple(v.name for v in graph.inputs),
        outputs=tuple(outputs or [v.name for v in graph.outputs]),
    )
