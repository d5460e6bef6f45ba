"""The CPU backend: tapeout graph -> Relax (BlockBuilder) -> TVM/LLVM -> ``model.so``.

``TvmBackend.compile`` lowers the graph op by op (``backends.tvm.lower``), fuses and
schedules it (``backends.tvm.build``: our rules plus DLight, or a MetaSchedule database when
``tune``/``tune_minutes`` is given, see ``backends.tvm.tune``), compiles it for the target
file's LLVM triple and CPU and exports a shared library. ``TvmArtifact.run`` loads it with
TVM's runtime and runs ``main`` on a Relax VirtualMachine.

Options (``compile(..., options)``): ``tune`` (int, MetaSchedule trials), ``tune_minutes``
(float, a time budget instead), ``cache_dir`` (where tuning databases live; default
``$TAPEOUT_CACHE/tvm`` or ``~/.cache/tapeout/tvm``), ``tune_progress`` (bool, the progress
bar; default True), ``rpc_tracker`` ("host:port") and ``rpc_key``: measure the tuning
candidates on the RPC servers registered with TVM's tracker under that key
(``backends.tvm.rpc``); ``exec_mode`` ("bytecode", the default, or "compiled": the VM code
of ``main`` compiled rather than interpreted, ``backends.tvm.build.EXEC_MODES``);
``cache_writes`` (bool, ``compiler.llm`` sets it): the step graph writes its new keys/values
into the KV-cache inputs in place (``backends.tvm.lower_cache``, ``run_inplace``);
``workspace`` (bool, ``compiler.llm`` sets it): the intermediate tensors of ``main`` are made
once per loaded VM instead of once per call (``backends.tvm.workspace``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from operator import is_
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.tvm.threads import ThreadChooser, candidate_threads, set_threads
from compiler.backend import Artifact
from compiler.errors import BackendError, InputError, ToolchainUnavailable, Unsupported
from compiler.interpreter import check_input, check_inputs
from compiler.ir.graph import Graph
from compiler.report import layer_rows
from compiler.specialize import check_guards, is_static

if TYPE_CHECKING:
    from compiler.target import Target

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "tapeout[tvm]"'
META_FILE = "tvm.json"


def _tensor(array: np.ndarray) -> Any:
    """A TVM tensor of ``array``, contiguous; a 0-d array stays 0-d (Trilu's k, a scalar
    input), which ``np.ascontiguousarray`` alone would make 1-d."""
    import tvm

    return tvm.runtime.tensor(np.ascontiguousarray(array).reshape(array.shape))


def _import_tvm() -> Any:
    """``import tvm``, without the ``import torch`` that tvm_ffi makes on its way in when
    torch is not loaded yet (its workaround of a symbol clash seen on Windows): here it
    only costs a process that runs a model about 200 MB of resident memory. TVM never
    sees a torch tensor from tapeout."""
    if "tvm" in sys.modules or "torch" in sys.modules:
        import tvm

        return tvm
    sys.modules["torch"] = None  # type: ignore[assignment]  # ``import torch`` fails
    try:
        import tvm
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return tvm


def require_runtime() -> Any:
    """What running a built ``model.so`` needs: TVM's runtime only when the process loaded
    it so (``TVM_USE_RUNTIME_LIB=1``, which ``tapeout generate`` sets), else ``require_tvm``."""
    from backends.tvm.build import configure_threads

    configure_threads()
    try:
        tvm = _import_tvm()
    except ImportError as e:
        raise ToolchainUnavailable("TVM (apache-tvm)", INSTALL_HINT, str(e)) from None
    return tvm if getattr(tvm, "_RUNTIME_ONLY", False) else require_tvm()


def require_tvm() -> Any:
    """Import tvm, or raise ToolchainUnavailable saying what to install."""
    from backends.tvm.build import configure_threads

    configure_threads()
    try:
        tvm = _import_tvm()
        from tvm import relax  # noqa: F401
    except ImportError as e:
        raise ToolchainUnavailable("TVM (apache-tvm)", INSTALL_HINT, str(e)) from None
    from backends.tvm.fastmath import register

    register()
    return tvm


class TvmArtifact(Artifact):
    """A compiled CPU model: ``model.so`` run through TVM's Relax VM."""

    def __init__(
        self,
        graph: Graph,
        target: Target,
        path: Path | None,
        layers: list,
        summary: dict[str, Any],
        meta: dict[str, Any],
    ):
        super().__init__(graph, target, path, layers, summary)
        self.meta = meta
        self.tune_cache: Path | None = None  # the MetaSchedule database folder, when tuned
        self._vm: tuple[Path, Any] | None = None
        self._lib: Any = None
        # input name -> (the array lent, its shape and dtype then, its TVM tensor)
        self._lent: dict[str, tuple[np.ndarray, tuple, Any]] = {}
        #: The weights file the lifted constants of ``main`` come from (``weights_file``
        #: option): opened from ``meta["params"]`` unless ``use_weights`` gave one.
        self.weights: Mapping[str, np.ndarray] | None = None
        self._params: list[Any] | None = None
        self._main: Any = None  # vm["main"], looked up once
        self._threads: ThreadChooser | None = None
        # (the arrays of the last lent call, their TVM tensors)
        self._last_call: tuple[tuple, list] | None = None

    def use_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Take the lifted constants from ``weights`` (an LLM artifact's one mapped file,
        which its prefill and decode modules share) instead of opening ``meta["params"]``."""
        self.weights, self._params, self._vm, self._main = weights, None, None, None

    def _bind(self, vm: Any) -> Any:
        """``vm``, with the lifted constants and the workspace (``backends.tvm.workspace``,
        made once for this VM) appended to each call of ``main``."""
        params, workspace = self.meta.get("params"), self.meta.get("workspace")
        if not params and not workspace:
            return vm
        from backends.tvm.weights import BoundVM, lend

        if self._params is None and params:
            if self.weights is None:
                from compiler.llm.weights import WeightFile

                self.weights = WeightFile(Path(self.path or "") / params["file"])
            where = str(getattr(self.weights, "path", "the weights"))
            self._params = lend(self.weights, list(params["keys"]), where)
        made = list(vm[workspace]()) if workspace else []
        return BoundVM(vm, [*(self._params or []), *made])

    def _machine(self) -> Any:
        if not self.meta.get("runnable"):
            raise BackendError(
                f"cannot run this {self.target.name} artifact here: "
                f"{self.meta.get('note') or 'not built for this machine'}"
            )
        if self.path is None:
            raise BackendError("the artifact has no folder to load model.so from")
        if self._vm is None or self._vm[0] != self.path:
            tvm = require_runtime()
            from tvm.runtime.vm import VirtualMachine

            try:
                lib = tvm.runtime.load_module(str(self.path / self.meta["library"]))
            except Exception as e:  # noqa: BLE001  (TVM raises its own untyped errors)
                if "DLTensor file format" not in str(e):
                    raise
                raise BackendError(
                    f"{self.path / self.meta['library']}: TVM saved a zero-size constant that "
                    "its own loader refuses; the graph has an empty tensor that TVM folded "
                    "into a constant (give the op a non-empty size)"
                ) from None
            self._vm = (self.path, self._bind(VirtualMachine(lib, tvm.cpu())))
            self._lib = lib
            self._main = None
        return self._vm[1]

    def _arguments(self, inputs: tuple[np.ndarray, ...]) -> list[Any]:
        arrays = check_inputs(self.graph, inputs)
        return [_tensor(a) for a in arrays]

    @property
    def cache_writes(self) -> list[tuple[int, int]]:
        """``(output, input)`` pairs that ``main`` writes in place (``run_inplace``)."""
        return [(int(o), int(i)) for o, i in self.meta.get("cache_writes") or []]

    def execute(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        vm = self._machine()
        args = [_tensor(a) for a in arrays]
        pairs = dict(self.cache_writes)
        if not pairs:
            return [np.asarray(o.numpy()) for o in vm["main"](*args)]
        # main writes those outputs into copies of their inputs at slot 0: read them there.
        outs = iter(vm["main"](*args, _tensor(np.zeros(1, np.int64))))
        results = []
        for index, value in enumerate(self.graph.outputs):
            if index in pairs:
                chunk = int(value.type.shape[2])
                results.append(np.ascontiguousarray(args[pairs[index]].numpy()[:, :, :chunk]))
            else:
                results.append(np.asarray(next(outs).numpy()))
        return results

    def run_shared(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """``run``, but inputs that are C-contiguous and 64-byte aligned are lent to TVM
        through DLPack instead of copied (an LLM's KV cache, which the caller keeps
        allocated with ``compiler.llm.runtime.aligned_zeros`` and updates in place), and
        the outputs are NumPy views of TVM's result tensors, not copies.

        Per token of a 30-layer decoder that is 61 inputs and 61 outputs: a lent array is
        checked and wrapped once and its TVM tensor reused while the caller passes the same
        array object again (``_lent``); the copies ``Tensor.numpy`` made cost more than the
        small kernels of a step."""
        if self.cache_writes:  # main would write into the caller's inputs: copy them
            return self.run(*inputs)
        return [np.from_dlpack(o) for o in self._call_lent(inputs)]

    def run_inplace(
        self, slot: np.ndarray, *inputs: np.ndarray, adapt_threads: bool = False
    ) -> list[np.ndarray]:
        """``run_shared`` for an artifact built with ``cache_writes``: the outputs of its
        ``cache_writes`` pairs are written into their (lent) input arrays at slots
        ``slot[0] .. slot[0] + chunk`` instead of returned; the other outputs come back, as
        views. ``slot``: an ``int64[1]`` array (lent too, so keep and update the same one).
        ``adapt_threads``: choose the thread count from the measured call times
        (``backends.tvm.threads``; for a call repeated many times, a decode step)."""
        if not self.cache_writes:
            raise BackendError("this artifact was not built with cache_writes")
        if not adapt_threads:
            outs = self._call_lent(inputs, slot)
        else:
            if self._threads is None:
                self._threads = ThreadChooser(candidate_threads())
            set_threads(self._threads.current)
            started = time.perf_counter()
            outs = self._call_lent(inputs, slot)
            self._threads.observe(time.perf_counter() - started)
        count = len(self.graph.outputs) - len(self.cache_writes)
        return [np.from_dlpack(outs[i]) for i in range(count)]

    def _call_lent(self, inputs: tuple[np.ndarray, ...], *extra: np.ndarray) -> Any:
        vm = self._machine()
        given = (*inputs, *extra)
        last = self._last_call
        if last is not None and len(last[0]) == len(given) and all(map(is_, given, last[0])):
            # The same arrays as the last call (a decode loop's): the same lent tensors (an
            # array reshaped in place keeps its size, so its old tensor still fits it).
            args = last[1]
        else:
            if len(inputs) != len(self.graph.inputs):
                check_inputs(self.graph, inputs)  # raises the InputError that names them
            args = [self._lend(value, a) for value, a in zip(self.graph.inputs, inputs,
                                                             strict=True)]  # fmt: skip
            args += [self._lend_extra(f"#{i}", a) for i, a in enumerate(extra)]
            keys = [v.name for v in self.graph.inputs] + [f"#{i}" for i in range(len(extra))]
            # Reused only when every array was lent: a copied one would go stale.
            lent = all(self._lent.get(k, (None,))[0] is a for k, a in zip(keys, given, strict=True))
            self._last_call = (given, args) if lent else None
        check_guards(self.graph, self.summary.get("specialized"), inputs)
        if self._main is None:
            self._main = vm["main"]
        return self._main(*args)

    def _lend_extra(self, key: str, a: np.ndarray) -> Any:
        """A lent int64[1] argument that is no graph input (``cache_writes``' slot)."""
        import tvm

        known = self._lent.get(key)
        if known is not None and known[0] is a:
            return known[2]
        if a.shape != (1,) or a.dtype != np.int64:
            raise InputError(
                f"the cache slot must be an int64 array of shape [1], got {a.dtype}{list(a.shape)}"
            )
        if a.flags.c_contiguous and a.ctypes.data % 64 == 0:
            tensor = tvm.runtime.from_dlpack(a)
            self._lent[key] = (a, (a.shape, a.dtype), tensor)
            return tensor
        return tvm.runtime.tensor(a)

    def _lend(self, value: Any, a: Any) -> Any:
        """The TVM tensor for input ``value`` given as ``a``: reused, lent or copied."""
        import tvm

        known = self._lent.get(value.name)
        if known is not None and known[0] is a and (a.shape, a.dtype) == known[1]:
            return known[2]
        arr = check_input(value, a)
        if arr is a and a.flags.c_contiguous and a.ctypes.data % 64 == 0 and a.size > 0:
            tensor = tvm.runtime.from_dlpack(a)
            self._lent[value.name] = (a, (a.shape, a.dtype), tensor)
            return tensor
        return tvm.runtime.tensor(arr)

    def remote(self, device: str) -> Any:
        """This artifact loaded on the RPC server ``device`` names (``rpc://HOST:PORT`` or
        ``rpc://HOST:PORT/KEY`` through a tracker): an object whose ``run`` moves the inputs
        there and the outputs back (``backends.tvm.remote``)."""
        from backends.tvm.remote import RemoteStage, parse_address

        address = parse_address(device)
        if self.cache_writes or self.meta.get("workspace"):
            raise BackendError("an artifact built with cache_writes or workspace runs here only")
        if self.path is None:
            raise BackendError("the artifact has no folder to upload model.so from")
        if self.meta.get("params"):
            raise BackendError("a remote run needs the weights inside model.so: compile "
                               "without the weights_file option")
        require_tvm()
        return RemoteStage(self.graph, self.path / self.meta["library"], address)

    def profile(self, *inputs: np.ndarray, repeat: int = 10) -> list[dict[str, Any]]:
        """Where the time goes: milliseconds per call of each kernel (and VM builtin),
        averaged over ``repeat`` runs, most expensive first."""
        import tvm
        from tvm import relax

        self._machine()
        vm = self._bind(relax.VirtualMachine(self._lib, tvm.cpu()))  # a second VM: instrumented
        args = self._arguments(inputs)
        if self.cache_writes:
            args.append(_tensor(np.zeros(1, np.int64)))
        vm["main"](*args)
        totals: dict[str, list[float]] = {}
        started: dict[str, float] = {}

        def instrument(func: Any, name: str, before: bool, ret: Any, *rest: Any) -> int:
            if before:
                started[name] = time.perf_counter()
            else:
                totals.setdefault(name, []).append(time.perf_counter() - started[name])
            return 0

        vm.set_instrument(instrument)
        for _ in range(repeat):
            vm["main"](*args)
        rows = [
            {"kernel": k, "ms": 1e3 * sum(v) / repeat, "calls": len(v) // repeat}
            for k, v in totals.items()
        ]
        return sorted(rows, key=lambda r: -r["ms"])


class TvmBackend:
    """CPU targets (``target = "cpu"``, x86-64-avx2/avx512, znver3, aarch64)."""

    name = "tvm"

    def specializes(self, options: dict[str, Any]) -> bool:
        """Whether ``compile()`` gives the example inputs to ``specialize-shapes`` (the cpu
        pipelines' first pass): on unless ``specialize_shapes=False``, which keeps the
        shape-deciding inputs runtime data (and their ops refused, with the reason)."""
        return options.get("specialize_shapes", True) is not False

    def unsupported(self, graph: Graph, target: Target) -> list[Unsupported]:
        from backends.tvm.lower import check_graph

        return check_graph(graph)

    def compile(
        self, graph: Graph, target: Target, out_dir: Path, options: dict[str, Any]
    ) -> Artifact:
        require_tvm()
        from backends.tvm import build
        from backends.tvm.lower import lower_graph
        from backends.tvm.lower_cache import find_cache_pairs
        from backends.tvm.rpc import free_servers
        from backends.tvm.schedules import cpu_params
        from backends.tvm.tune import tune_options, tuned_database

        if target.cpu is None:
            raise BackendError(f"target {target.name} has no [cpu] table for the TVM backend")
        if not is_static(graph):
            raise BackendError(
                f"graph @{graph.name} has symbolic shapes; compile it with "
                "example inputs so that they can be specialized"
            )
        exec_mode = str(options.get("exec_mode", "bytecode"))
        if exec_mode not in build.EXEC_MODES:
            raise BackendError(
                f"option exec_mode={exec_mode!r}: expected one of {', '.join(build.EXEC_MODES)}"
            )
        started = time.perf_counter()
        params = cpu_params(target)
        pairs = find_cache_pairs(graph) if options.get("cache_writes") else []
        mod, kernels = lower_graph(graph, params, pairs)
        tgt = build.tvm_target(target)
        mod = build.fuse(mod, tgt)
        tuning = tune_options(options)
        if tuning is not None and tuning.rpc is not None:
            free_servers(tuning.rpc)  # a dead tracker or no server is an error before any work
        database, tune_info = tuned_database(mod, tgt, target, tuning) if tuning else (None, {})
        mod = build.schedule(mod, tgt, params, database)
        lifted = None
        if options.get("weights_file"):
            from backends.tvm.weights import lift_constants

            mod, lifted = lift_constants(mod)
        workspace = bool(options.get("workspace"))
        executable = build.compile_module(mod, tgt, exec_mode, workspace)
        exported = build.export(executable, target, Path(out_dir))
        meta = {
            "library": exported.library,
            "runnable": exported.runnable,
            "note": exported.note,
            "tvm_target": str(tgt),
            "exec_mode": exec_mode,
            "cache_writes": [list(p) for p in pairs],
        }
        if workspace:
            from backends.tvm.workspace import WORKSPACE_FUNC

            meta["workspace"] = WORKSPACE_FUNC
        if lifted is not None:
            from backends.tvm.weights import write_params

            meta["params"] = write_params(out_dir, lifted)
        (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2))
        if exported.note:
            log.warning("%s", exported.note)
        rows = layer_rows(graph, target.cpu.peak_gflops_fp32 if target.cpu else None)
        summary: dict[str, Any] = {
            "macs": sum(r["macs"] for r in rows),
            "params": sum(r["params"] for r in rows),
            "tvm_target": str(tgt.attrs.get("mcpu", "")) + " " + str(tgt.attrs.get("mtriple")),
            "kernels": sum(
                1
                for gv in mod.get_global_vars()
                if gv.name_hint != "main" and "main" not in gv.name_hint
            ),
            "tapeout_kernels": ", ".join(f"{k} x{v}" for k, v in sorted(kernels.items())),
            "library": exported.library,
            "runnable_here": exported.runnable,
            **({"note": exported.note} if exported.note else {}),
            **{k: tune_info[k] for k in ("tune_trials", "tune_workload") if k in tune_info},
        }
        art = TvmArtifact(graph, target, Path(out_dir), rows, summary, meta)
        if exported.runnable and _has_empty_value(graph):
            art._machine()  # TVM may have saved a zero-size constant it cannot load: say so now
        art.timings.update(
            {
                k: float(v)
                for k, v in tune_info.items()
                if k.startswith("tune_") and isinstance(v, int | float) and k not in summary
            }
        )
        art.timings["tvm_compile_s"] = round(time.perf_counter() - started, 3)
        if "tune_cache" in tune_info:
            art.tune_cache = Path(tune_info["tune_cache"])
        return art

    def load(self, path: Path, graph: Graph, target: Target, manifest: dict[str, Any]) -> Artifact:
        meta_file = Path(path) / META_FILE
        if not meta_file.exists():
            raise BackendError(f"{path} has no {META_FILE}: not a TVM artifact")
        meta = json.loads(meta_file.read_text())
        report = manifest.get("report", {})
        return TvmArtifact(
            graph, target, Path(path), report.get("layers") or [], report.get("summary") or {}, meta
        )


def _has_empty_value(graph: Graph) -> bool:
    """Whether some value of ``graph`` has a zero-size static shape."""
    return any(
        any(d == 0 for d in v.type.shape)
        for node in graph.nodes
        for v in (*node.inputs, *node.outputs)
    )
