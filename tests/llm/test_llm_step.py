"""The decode loop around the kernels: the cache written in place or copied, the thread count."""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.llm.runtime import Batch, CacheWriter, step_runner
from compiler.llm.spec import LLMSpec

SPEC = LLMSpec(num_layers=1, num_kv_heads=1, head_dim=4, vocab_size=8, max_context=4,
               prefill_len=2)  # fmt: skip


class _Art:
    """An artifact stand-in that declares ``cache_writes``."""

    def __init__(self, pairs: list[tuple[int, int]]):
        self.cache_writes = pairs

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        raise AssertionError("the copy path was chosen")

    def run_inplace(self, slot: np.ndarray, *inputs: np.ndarray) -> list[np.ndarray]:
        ids, _, mask, *caches = inputs
        for cache in caches:  # new rows = the token id, written where the slot says
            cache[:, :, slot[0] : slot[0] + ids.shape[1]] = ids[:, None, :, None]
        return [np.zeros((ids.shape[0], SPEC.vocab_size), np.float32)]


def test_step_runner_writes_in_place_only_when_every_cache_is_declared() -> None:
    assert isinstance(step_runner(_Art([(1, 3), (2, 4)]), SPEC), CacheWriter)
    partial = step_runner(_Art([(1, 3)]), SPEC)
    assert not isinstance(partial, CacheWriter)  # one cache not written: copy every one


def test_in_place_step_fills_the_same_slots_as_the_copy_path() -> None:
    def copying(ids: np.ndarray, pos: np.ndarray, mask: np.ndarray, *caches: Any) -> list:
        new = np.broadcast_to(ids[:, None, :, None], (ids.shape[0], 1, ids.shape[1], 4))
        return [np.zeros((ids.shape[0], SPEC.vocab_size), np.float32), new, new]

    states = [Batch(SPEC, 2), Batch(SPEC, 2)]
    runners = [step_runner(_Art([(1, 3), (2, 4)]), SPEC), copying]
    for state, run in zip(states, runners, strict=True):
        state.step(run, np.array([[0, 5], [6, 7]]), np.zeros((2, 2), np.int64),
                   np.array([[0, 1], [1, 1]]))  # fmt: skip
        for token in (3, 4):
            state.step(run, np.full((2, 1), token), np.zeros((2, 1), np.int64), np.ones((2, 1)))
    for a, b in zip(states[0].caches, states[1].caches, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(states[0].filled, states[1].filled)
    assert states[0].used == states[1].used == 4


def test_thread_chooser_follows_a_core_taken_and_given_back() -> None:
    from backends.tvm.threads import TRIAL, WINDOW, ThreadChooser

    chooser = ThreadChooser((1, 2))
    quiet, busy = {1: 7.0, 2: 5.0}, {1: 7.5, 2: 60.0}  # ms per step for each thread count
    trace = []

    def run(times: dict[int, float], windows: int) -> None:
        for _ in range(windows * WINDOW):
            trace.append(chooser.current)
            chooser.observe(times[chooser.current])

    run(quiet, 4)
    assert chooser.current == 2 and trace.count(1) == TRIAL  # one trial of 1 thread
    run(busy, 40)
    assert chooser.current == 1
    tail = trace[-30 * WINDOW :]
    assert tail.count(2) <= 2 * TRIAL  # failed trials of 2 threads back off
    run(quiet, 300)
    assert chooser.current == 2
