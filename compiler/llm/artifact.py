"""``compile_llm``: a decoder in, an artifact that generates text out; ``load_llm``.

On disk::

    ARTIFACT/llm.json        the LLMSpec, batch size, target, tokenizer kind
    ARTIFACT/weights.bin     every constant of both graphs and, on the cpu targets, every
                             array the two TVM modules take as a parameter, each once
                             (``compiler.llm.weights``; memory-mapped at load)
    ARTIFACT/prefill/        graph.ir, manifest.json, and the backend's files (model.so, ...)
    ARTIFACT/decode/         the same for the decode-step graph
    ARTIFACT/tokenizer/      when the tokenizer can be saved (see compiler.llm.tokenizer)

On the cpu targets the graphs' weights that a TVM kernel reads packed (block-quantized and
float ``dense`` weights) are not stored as such: the modules' packed arrays hold them, and
``weights.bin`` keeps a recipe that recomputes them (``backends.tvm.weights.unpack``); the
graphs' other copies that no module reads are
stored encoded where that is smaller (4-bit values two per byte). ``load_llm`` parses a
step graph only when something looks inside it (``compiler.llm.saved_graph``): generating
reads the modules' arrays and the graphs' signatures, nothing else.

Artifacts written before ``weights.bin`` hold ``weights.npz`` and TVM libraries with their
constants inside; they still load.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compiler.backend import Artifact, get_backend, staged_dir
from compiler.errors import BackendError, InputError, IntegrityError
from compiler.ir import Graph
from compiler.llm.evaluate import Accuracy, LogitsFn, accuracy, check_windows, torch_logits
from compiler.llm.graphs import LLMGraphs, share_constants
from compiler.llm.runtime import (
    GenerateResult,
    TokenCallback,
    check_prompts,
    generate_batch,
    step_runner,
)
from compiler.llm.sampling import Sampler
from compiler.llm.saved_graph import SavedGraph
from compiler.llm.spec import LLMSpec
from compiler.llm.tokenizer import Tokenizer, load_tokenizer, save_tokenizer
from compiler.llm.weights import WeightFile, write_weights
from compiler.target import load_target

PARTS = ("prefill", "decode")
WEIGHTS = "weights.bin"
ACCURACY = "accuracy.json"
#: Backends that compile step graphs with a symbolic cache length (``dynamic_cache``).
DYNAMIC_CACHE_BACKENDS = frozenset({"tensorrt", "onnx", "reference"})
#: The TVM backend's file of a module's lifted constants (``backends.tvm.weights``), and
#: where it finds them once ``compile_llm`` has moved them into the artifact's one file.
TVM_META, SHARED = "tvm.json", "../" + WEIGHTS
Rewrite = Callable[[LLMGraphs], None]


class LLMArtifact:
    """A compiled decoder: ``prefill`` and ``decode`` artifacts over one set of weights."""

    def __init__(
        self,
        spec: LLMSpec,
        batch_size: int,
        prefill: Artifact,
        decode: Artifact,
        path: Path,
        tokenizer: Tokenizer | None = None,
    ):
        self.spec = spec
        self.batch_size = batch_size
        self.prefill = prefill
        self.decode = decode
        self.path = path
        self.tokenizer = tokenizer
        #: Teacher-forced agreement with the float model, when measured at compile time
        #: (``compile_llm(..., accuracy_windows=...)``; kept in ``accuracy.json``).
        self.accuracy: Accuracy | None = None

    @property
    def target(self) -> str:
        return self.decode.target.name

    def _prompts(self, prompt: Any) -> list[list[int]]:
        """Token-id lists from text, a list of texts, one id list or a list of id lists."""
        items = [prompt] if isinstance(prompt, str) else list(prompt)
        if items and all(isinstance(t, int | np.integer) for t in items):
            items = [items]
        prompts = []
        for item in items:
            if isinstance(item, str):
                if self.tokenizer is None:
                    raise InputError("a text prompt needs a tokenizer (art.tokenizer = ...)")
                prompts.append([int(t) for t in self.tokenizer.encode(item)])
            else:
                prompts.append([int(t) for t in item])
        if not prompts:
            raise InputError("no prompt given")
        return prompts

    def generate(
        self,
        prompt: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]],
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        stop: Sequence[int] | None = None,
        on_token: TokenCallback | None = None,
        seed: int | None = None,
    ) -> GenerateResult:
        """New tokens for each prompt; ``stop`` defaults to the model's end-of-text ids.

        Prompts beyond the compiled batch size run in groups of it; ``on_token(row, id)``
        streams each token as it is chosen (row counts across groups)."""
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        prompts = self._prompts(prompt)
        check_prompts(self.spec, prompts)
        sampler = Sampler(temperature, top_k, top_p)
        stops = frozenset(self.spec.eos_token_ids if stop is None else (int(s) for s in stop))
        rng = np.random.default_rng(seed)
        total = GenerateResult([])
        for first in range(0, len(prompts), self.batch_size):
            group = prompts[first : first + self.batch_size]
            stream = None if on_token is None else _offset(on_token, first)
            part = generate_batch(
                self.spec, self.batch_size, step_runner(self.prefill, self.spec),
                step_runner(self.decode, self.spec, decode=True), group,
                max_new_tokens, sampler, stops, stream, rng,
            )  # fmt: skip
            total.tokens += part.tokens
            total.prefill_ms += part.prefill_ms
            total.decode_s += part.decode_s
            total.decode_tokens += part.decode_tokens
        if self.tokenizer is not None:
            total.text = [self.tokenizer.decode(t) for t in total.tokens]
        return total

    def save(self, path: str | Path) -> Path:
        """Copy the artifact folder to ``path`` (atomically)."""
        dest = Path(path)
        if dest.resolve() == self.path.resolve():
            return dest
        with staged_dir(dest) as tmp:
            shutil.copytree(self.path, tmp, dirs_exist_ok=True)
        self.path = dest
        return dest

    def report(self) -> str:
        spec = self.spec
        return (
            f"LLM artifact for {self.target}: {spec.num_layers} layers, {spec.num_kv_heads} KV "
            f"heads x {spec.head_dim}, vocab {spec.vocab_size}, max_context {spec.max_context}, "
            f"prefill chunk {spec.prefill_len}, batch {self.batch_size}\n"
            + (f"accuracy {self.accuracy.line()}\n" if self.accuracy else "")
            + f"prefill: {self.prefill.report()}\ndecode: {self.decode.report()}"
        )


def _offset(on_token: TokenCallback, first: int) -> TokenCallback:
    return lambda row, token: on_token(first + row, token)


def compile_llm(
    model: Any,
    target: str = "reference",
    max_context: int = 256,
    prefill_len: int = 32,
    batch_size: int = 1,
    output_dir: str | Path | None = None,
    tokenizer: Tokenizer | None = None,
    rewrite: Rewrite | None = None,
    dynamic_cache: bool | None = None,
    accuracy_windows: Sequence[Sequence[int]] | None = None,
    reference: LogitsFn | None = None,
    **options: Any,
) -> LLMArtifact:
    """Compile a causal LM for generation with a KV cache bounded by ``max_context`` tokens.

    ``model``: a Hugging Face causal LM (``transformers`` ``*ForCausalLM``, or a module with
    its forward interface and a ``config``), or ready :class:`LLMGraphs` (the GGUF path).
    The prompt is prefilled in chunks of ``prefill_len`` tokens; ``batch_size`` prompts run
    together (left-padded); ready graphs bring their own sizes. ``rewrite(graphs)`` edits
    both graphs before the backend (weight quantization); ``options`` go to
    ``compiler.compile`` (``pipeline``, ``tune``, ...).

    ``dynamic_cache``: the steps' cache length is the symbol ``past`` (1 to
    ``max_context + prefill_len``) instead of every slot; the default for the gpu target,
    whose TensorRT bundle then carries one optimization profile over that length (min 1, opt
    ``max_context // 2``, max every slot; ``shape_ranges={"past": ...}`` overrides it). The cpu
    target keeps the static cache: its attention kernel reads only the slots written.

    ``accuracy_windows``: token-id windows of a text (``compiler.llm.evaluate.text_windows``)
    on which the compiled model is run teacher-forced against the float one (top-1, KL,
    perplexity: ``art.accuracy``, in the report and in ``accuracy.json``); the float logits
    come from ``reference(window)``, by default from the torch model itself.
    """
    if not 1 <= prefill_len <= max_context or batch_size < 1:
        raise InputError(
            f"need 1 <= prefill_len <= max_context and batch_size >= 1; got prefill_len="
            f"{prefill_len}, max_context={max_context}, batch_size={batch_size}"
        )
    backend = load_target(target).backend
    dynamic_cache = _dynamic_cache(model, target, backend, dynamic_cache)
    if accuracy_windows is not None:
        ready = model.spec if isinstance(model, LLMGraphs) else None
        check_windows(
            ready.prefill_len if ready else prefill_len,
            ready.max_context if ready else max_context,
            accuracy_windows,
        )
        if reference is None and ready is not None:
            raise InputError("accuracy_windows: ready LLMGraphs need reference= (float logits)")
    graphs = (
        model
        if isinstance(model, LLMGraphs)
        else _import(model, max_context, prefill_len, batch_size, dynamic_cache)
    )
    if graphs.spec.dynamic_cache and backend == "tensorrt":
        slots = graphs.spec.cache_slots
        past = (1, max(1, min(slots, graphs.spec.max_context // 2)), slots)
        options = {**options, "shape_ranges": {"past": past, **options.get("shape_ranges", {})}}
    if rewrite is not None:
        rewrite(graphs)
    graphs.check()
    batch_size = graphs.batch
    if accuracy_windows is not None and reference is None:
        reference = torch_logits(model, graphs.spec.prefill_len)
    dest = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="tapeout-llm-")) / "llm"
    art = _compile_parts(graphs, target, dest, batch_size, tokenizer, options)
    if accuracy_windows is not None and reference is not None:
        art.accuracy = accuracy(art, reference, accuracy_windows)
        (dest / ACCURACY).write_text(json.dumps(art.accuracy.to_json(), indent=2))
    return art


def _dynamic_cache(model: Any, target: str, backend: str, asked: bool | None) -> bool:
    """Whether the steps get a symbolic cache length: as asked, else for TensorRT when the
    model is imported here; a typed error where the backend or ready graphs cannot."""
    if asked is None:
        return backend == "tensorrt" and not isinstance(model, LLMGraphs)
    if asked and backend not in DYNAMIC_CACHE_BACKENDS:
        raise InputError(
            f"dynamic_cache=True: target {target!r} ({backend}) compiles a static cache length "
            f"only; the backends with a symbolic one are {sorted(DYNAMIC_CACHE_BACKENDS)}"
        )
    if asked and isinstance(model, LLMGraphs) and not model.spec.dynamic_cache:
        raise InputError(
            "dynamic_cache=True: these LLMGraphs were imported with a static cache length; "
            "import them with dynamic_cache=True"
        )
    return asked


def _import(
    model: Any, max_context: int, prefill_len: int, batch_size: int, dynamic_cache: bool
) -> LLMGraphs:
    from compiler.frontends.torch_llm import import_causal_lm

    return import_causal_lm(model, max_context, prefill_len, batch_size, dynamic_cache)


def _compile_parts(
    graphs: LLMGraphs,
    target: str,
    dest: Path,
    batch_size: int,
    tokenizer: Tokenizer | None,
    options: dict[str, Any],
) -> LLMArtifact:
    from compiler.api import compile as compile_graph

    on_tvm = load_target(target).backend == "tvm"
    if on_tvm:
        # One weights file for both steps; each step writes its keys/values in place and
        # makes its intermediate tensors once, not per call.
        options = {"weights_file": True, "cache_writes": True, "workspace": True, **options}
    with staged_dir(dest) as tmp:
        parts = {
            name: compile_graph(graph, target, output_dir=tmp / name, **options)
            for name, graph in zip(PARTS, graphs.graphs, strict=True)
        }
        # The passes may have folded or renamed constants: share what is equal once more.
        weights: dict[str, np.ndarray] = share_constants([parts[name].graph for name in PARTS])
        lifted = [_lifted(tmp / name, parts[name]) for name in PARTS]
        modules = {k: a for d in lifted for k, a in d.items()}
        derived = _derived(parts, weights, modules) if on_tvm else {}
        # The TVM modules read only their own (packed) arrays: the graphs' copies are for a
        # parse of the graph (the interpreter check), and may be stored encoded.
        compact = set(weights) if on_tvm else set()
        kept = {k: a for k, a in weights.items() if k not in derived}
        write_weights(tmp / WEIGHTS, {**kept, **modules}, compact=compact, derived=derived,
                      sparse=_gathered([parts[name].graph for name in PARTS]))
        for name in PARTS:
            (tmp / name / "graph.ir").write_text(str(parts[name].graph))
            (tmp / name / "constants.npz").unlink(missing_ok=True)
        meta = {
            "spec": graphs.spec.to_json(),
            "batch_size": batch_size,
            "target": target,
            "tokenizer": save_tokenizer(tokenizer, tmp / "tokenizer"),
        }
        (tmp / "llm.json").write_text(json.dumps(meta, indent=2))
    shared = WeightFile(dest / WEIGHTS)
    for art in parts.values():
        art.path = dest / Path(art.path or "").name
        _share(art, shared)
    return LLMArtifact(graphs.spec, batch_size, parts["prefill"], parts["decode"], dest, tokenizer)


def _gathered(graphs: list[Graph]) -> set[str]:
    """The constants every graph reads only through ``tensor.gather`` (an embedding table):
    a step reads a few rows of them."""
    uses: dict[str, bool] = {}
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "const":
                ref, value = node.attrs["ref"], node.outputs[0]
                only = all(user.op == "tensor.gather" and i == 0 for user, i in value.uses)
                uses[ref] = uses.get(ref, True) and only and bool(value.uses)
    return {ref for ref, only in uses.items() if only}


def _derived(
    parts: dict[str, Artifact], weights: dict[str, np.ndarray], modules: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """The graph constants that the TVM modules' packed arrays hold bit for bit (the weights
    their kernels read packed): name -> (array, recipe), stored as the recipe only."""
    if not modules:
        return {}
    from backends.tvm.weights import derive_constants

    recipes = derive_constants([parts[name].graph for name in PARTS], modules)
    return {name: (weights[name], recipe) for name, recipe in recipes.items() if name in weights}


def _lifted(folder: Path, art: Artifact) -> dict[str, np.ndarray]:
    """The constants the backend kept out of ``art``'s library (TVM's ``params.bin``), read
    into memory; the part's ``tvm.json`` is pointed at the artifact's one weights file."""
    meta_file = folder / TVM_META
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    params = meta.get("params")
    if not params or params["file"] == SHARED:
        return {}
    own = folder / params["file"]
    arrays = {k: np.array(a) for k, a in WeightFile(own).items()}  # copied: removed below
    own.unlink()
    params["file"] = SHARED
    meta_file.write_text(json.dumps(meta, indent=2))
    getattr(art, "meta", {}).update(params=params)
    return arrays


def _share(art: Artifact, weights: WeightFile) -> None:
    """Let a backend artifact that takes weights from a file (TVM's ``use_weights``) use
    the LLM artifact's one mapping of it, so both graphs' modules read the same pages."""
    use = getattr(art, "use_weights", None)
    if use is not None:
        use(weights)


def load_llm(path: str | Path, tokenizer: Tokenizer | None = None) -> LLMArtifact:
    """Reopen an LLM artifact folder; both graphs (and both compiled modules) share the
    arrays of ``weights.bin``, memory-mapped (``weights.npz`` of older artifacts: read).
    The graphs are parsed (and their constants read) on first use of their nodes."""
    folder = Path(path)
    try:
        meta = json.loads((folder / "llm.json").read_text())
        shared, weights = _load_weights(folder)
        parts = {name: _load_part(folder / name, weights) for name in PARTS}
    except (OSError, ValueError, KeyError) as e:
        raise BackendError(
            f"{folder} is not a readable LLM artifact: {type(e).__name__}: {e}"
        ) from None
    if shared is not None:
        for art in parts.values():
            _share(art, shared)
    spec = LLMSpec.from_json(meta["spec"])
    if tokenizer is None and meta.get("tokenizer"):
        tokenizer = load_tokenizer(meta["tokenizer"], folder / "tokenizer")
    llm = LLMArtifact(
        spec, int(meta["batch_size"]), parts["prefill"], parts["decode"], folder, tokenizer
    )
    if (folder / ACCURACY).exists():
        try:
            llm.accuracy = Accuracy(**json.loads((folder / ACCURACY).read_text()))
        except (ValueError, TypeError) as e:
            raise IntegrityError(f"{folder / ACCURACY} is damaged: {e}") from None
    return llm


def _load_weights(folder: Path) -> tuple[WeightFile | None, Mapping[str, np.ndarray]]:
    """The artifact's weights file (None for an older artifact) and its graph constants."""
    if not (folder / WEIGHTS).exists() and (folder / "weights.npz").exists():
        with np.load(folder / "weights.npz", allow_pickle=False) as npz:
            return None, {k: npz[k] for k in npz.files}
    shared = WeightFile(folder / WEIGHTS)  # missing or damaged: IntegrityError naming it
    # Views, not reads, and only of the names a graph takes when it is parsed.
    return shared, shared


def _load_part(folder: Path, weights: Mapping[str, np.ndarray]) -> Artifact:
    manifest = json.loads((folder / "manifest.json").read_text())
    # Parsed when something reads its nodes or constants: generate needs its signature only.
    graph = SavedGraph((folder / "graph.ir").read_text(), weights)
    target = load_target(manifest["target"])
    art = get_backend(manifest["backend"]).load(folder, graph, target, manifest)
    return art
