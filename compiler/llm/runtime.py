"""The generate loop: left-padded prefill in chunks, then one decode step per token.

The KV cache is a list of NumPy arrays ``[B, n_kv, S, head_dim]`` (key and value per layer)
that lives for one batch of prompts; each step writes only the new token's slot, and a
validity mask ``[B, S]`` says which slots hold real tokens.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compiler.errors import InputError
from compiler.llm.sampling import Sampler
from compiler.llm.spec import LLMSpec

log = logging.getLogger(__name__)

#: ``run(*inputs) -> outputs``: one step graph, compiled for some backend.
StepFn = Callable[..., list[np.ndarray]]
#: ``on_token(row, token_id)``, called as each token is chosen.
TokenCallback = Callable[[int, int], None]


@dataclass
class GenerateResult:
    """New tokens per prompt (prompt not included), their text when a tokenizer is set, and
    timings: prefill wall time, decode wall time and the decoded tokens it produced."""

    tokens: list[list[int]]
    text: list[str] | None = None
    prefill_ms: float = 0.0
    decode_s: float = 0.0
    decode_tokens: int = 0
    stopped: list[str] = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0


def aligned_zeros(shape: tuple[int, ...], dtype: type = np.float32, align: int = 64) -> np.ndarray:
    """Zeros whose data starts on an ``align``-byte boundary, so that a backend can use the
    array in place (TVM takes 64-byte-aligned memory through DLPack without a copy)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(size + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + size].view(dtype).reshape(shape)


@dataclass(frozen=True)
class CacheWriter:
    """A step that writes its new keys/values into the cache arrays itself (the cpu target's
    ``run_inplace``): ``run(slot, ids, pos, mask, *caches) -> [logits]``, ``slot`` an
    ``int64[1]`` array holding the first slot to write."""

    run: Callable[..., list[np.ndarray]]


def step_runner(art: Any, spec: LLMSpec, decode: bool = False) -> StepFn | CacheWriter:
    """How to run one step of ``art``: in place when the artifact declares that it writes
    every new key/value output into its cache input (``cache_writes``: output ``1 + j``
    into input ``3 + j``), else ``run_shared`` (the cache lent, outputs copied in by
    :class:`Batch`) where the backend has it, else ``run``. ``decode``: the step runs once
    per token, so the backend may choose its thread count from the step's measured time."""
    want = [(1 + j, 3 + j) for j in range(2 * spec.num_layers)]
    if getattr(art, "cache_writes", None) == want and hasattr(art, "run_inplace"):
        inplace = art.run_inplace
        return CacheWriter(functools.partial(inplace, adapt_threads=True) if decode else inplace)
    run: StepFn = getattr(art, "run_shared", art.run)
    return run


@dataclass
class Batch:
    """The state of one batch of prompts while it generates.

    A decode step allocates nothing here: its token ids, positions, mask and cache slot live
    in arrays kept from step to step (64-byte aligned, so the cpu target lends them to TVM
    instead of copying them), and ``filled`` is a view of the decode mask."""

    spec: LLMSpec
    batch: int
    caches: list[np.ndarray] = field(default_factory=list)
    filled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    used: int = 0  # cache slots written so far

    def __post_init__(self) -> None:
        shape = self.spec.cache_shape(self.batch)
        slots = self.spec.cache_slots
        self.caches = [aligned_zeros(shape) for _ in range(2 * self.spec.num_layers)]
        self._mask = aligned_zeros((self.batch, slots + 1), np.int64)  # [filled | new token]
        self.filled = self._mask[:, :slots]
        self._ids = aligned_zeros((self.batch, 1), np.int64)
        self._pos = aligned_zeros((self.batch, 1), np.int64)
        self._slot = aligned_zeros((1,), np.int64)

    def step(
        self, run: StepFn | CacheWriter, ids: np.ndarray, pos: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """Run one chunk, write its keys/values into the next slots; the last logits."""
        chunk = ids.shape[1]
        if self.spec.dynamic_cache:
            return self._step_dynamic(run, ids, pos, valid)
        if chunk == 1:
            self._ids[...] = ids
            self._pos[...] = pos
            self._mask[:, -1:] = valid
            ids, pos, mask = self._ids, self._pos, self._mask
        else:
            mask = np.concatenate([self.filled, valid], axis=1)
        end = self.used + chunk
        if isinstance(run, CacheWriter):
            self._slot[0] = self.used
            logits = run.run(self._slot, ids, pos, mask, *self.caches)[0]
        else:
            logits, *news = run(ids, pos, mask, *self.caches)
            for cache, new in zip(self.caches, news, strict=True):
                cache[:, :, self.used : end] = new
        self.filled[:, self.used : end] = valid
        self.used = end
        return logits

    def _step_dynamic(
        self, run: StepFn | CacheWriter, ids: np.ndarray, pos: np.ndarray, valid: np.ndarray
    ) -> np.ndarray:
        """A step of graphs whose cache length is symbolic: they get the slots written so
        far, at least one (the ``past`` symbol starts at 1; that slot is masked until
        written)."""
        if isinstance(run, CacheWriter):
            raise InputError("a step that writes its cache in place needs a static cache length")
        chunk = ids.shape[1]
        past = max(self.used, 1)
        mask = np.concatenate([self.filled[:, :past], valid], axis=1)
        caches = [np.ascontiguousarray(c[:, :, :past]) for c in self.caches]
        logits, *news = run(ids, pos, mask, *caches)
        end = self.used + chunk
        for cache, new in zip(self.caches, news, strict=True):
            cache[:, :, self.used : end] = new
        self.filled[:, self.used : end] = valid
        self.used = end
        return np.asarray(logits)


def _left_pad(spec: LLMSpec, batch: int, prompts: Sequence[Sequence[int]]) -> tuple:
    """ids, positions and validity [B, padded] with every prompt right-aligned."""
    longest = max(len(p) for p in prompts)
    padded = math.ceil(longest / spec.prefill_len) * spec.prefill_len
    ids = np.full((batch, padded), spec.pad_token_id, np.int64)
    valid = np.zeros((batch, padded), np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, padded - len(prompt) :] = prompt
        valid[row, padded - len(prompt) :] = 1
    positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
    return ids, positions, valid


def check_prompts(spec: LLMSpec, prompts: Sequence[Sequence[int]]) -> None:
    """Each prompt is a non-empty list of token ids within the vocabulary and the context."""
    for row, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise InputError(f"prompt {row} is empty")
        if len(prompt) > spec.max_context:
            raise InputError(
                f"prompt {row} has {len(prompt)} tokens, more than max_context="
                f"{spec.max_context} declared when the model was compiled"
            )
        bad = [t for t in prompt if not 0 <= int(t) < spec.vocab_size]
        if bad:
            raise InputError(
                f"prompt {row}: token ids {bad[:5]} are outside the vocabulary "
                f"[0, {spec.vocab_size})"
            )


def generate_batch(
    spec: LLMSpec,
    batch: int,
    prefill: StepFn | CacheWriter,
    decode: StepFn | CacheWriter,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampler: Sampler,
    stop: frozenset[int],
    on_token: TokenCallback | None,
    rng: np.random.Generator,
) -> GenerateResult:
    """Generate for at most ``batch`` prompts (the graphs' static batch; missing rows are
    dummies). A row ends at a stop token (kept in its output), at ``max_new_tokens``, or
    where its prompt plus output fills ``max_context``."""
    rows = len(prompts)
    lengths = np.array([len(p) for p in prompts] + [1] * (batch - rows))
    filler = [[spec.pad_token_id]] * (batch - rows)
    ids, positions, valid = _left_pad(spec, batch, [*prompts, *filler])
    state = Batch(spec, batch)
    chunk = spec.prefill_len
    started = time.perf_counter()
    for c in range(0, ids.shape[1], chunk):
        window = slice(c, c + chunk)
        logits = state.step(prefill, ids[:, window], positions[:, window], valid[:, window])
    result = GenerateResult([[] for _ in range(rows)])
    result.prefill_ms = 1e3 * (time.perf_counter() - started)
    budget = min(max_new_tokens, spec.max_context - int(lengths[:rows].max()))
    if budget < max_new_tokens:
        log.info("generation stops at max_context=%d after %d tokens", spec.max_context, budget)
    done = np.zeros(batch, bool)
    done[rows:] = True
    one = np.ones((batch, 1), np.int64)
    started = time.perf_counter()
    for step in range(budget):
        tokens = sampler(logits, rng)
        for row in np.flatnonzero(~done):
            result.tokens[row].append(int(tokens[row]))
            if on_token is not None:
                on_token(int(row), int(tokens[row]))
            done[row] = int(tokens[row]) in stop
        if done.all() or step == budget - 1:
            break
        logits = state.step(decode, tokens[:, None], (lengths + step)[:, None], one)
        result.decode_tokens += rows
    result.decode_s = time.perf_counter() - started
    return result
