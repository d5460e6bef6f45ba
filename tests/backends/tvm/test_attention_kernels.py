"""The attention kernels over a KV cache (``backends/tvm/kernels_attention.py``) built alone
and run on many masks against a float64 NumPy reference: the decode step's split of the kept
slots over tasks and their merge (parts that get no slot, rows that see nothing, left-padded
batches, holes), and the prefill chunk's kernel on a causal chunk."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

#: SmolLM2's head layout (3 KV heads of 3 query heads, head size 64) over a short cache.
HEADS, GROUP, DIM, SLOTS = 3, 3, 64, 21
SCALE = float(np.float32(DIM**-0.5))


@functools.cache
def _kernel(batch: int, chunk: int, split_from: int = 0) -> Any:
    """The decode (``chunk`` 1) or prefill kernel for ``batch`` rows, built for this host; a
    decode kernel runs in parallel from ``split_from`` kept slots (0: always)."""
    import tvm

    from backends.tvm import kernels_attention
    from backends.tvm.build import tvm_target
    from backends.tvm.kernels_attention import AttentionShape, attention_func, decode_attention_func
    from compiler.target import load_target

    shape = AttentionShape(
        batch, HEADS, GROUP, SLOTS, chunk, DIM, batch, chunk, SCALE, causal=chunk > 1,
        parallel=chunk > 1,
    )  # fmt: skip
    make = decode_attention_func if chunk == 1 else attention_func
    default = kernels_attention.DECODE_SPLIT_FROM
    kernels_attention.DECODE_SPLIT_FROM = split_from
    try:
        func = make(shape).with_attr("global_symbol", "attention")
    finally:
        kernels_attention.DECODE_SPLIT_FROM = default
    lib = tvm.compile(tvm.IRModule({"attention": func}), target=tvm_target(load_target("cpu")))
    return shape, lib


def _reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """float64 attention of q [B,H,G,C,D] over k/v [B,H,N,D] where keep [B,C,N]; 0 for a
    query that keeps no slot."""
    s = np.einsum("bhgcd,bhnd->bhgcn", q.astype(np.float64), k.astype(np.float64)) * SCALE
    s = np.where(keep[:, None, None], s, -np.inf)
    top = s.max(-1, keepdims=True)
    e = np.where(keep[:, None, None], np.exp(s - np.where(np.isfinite(top), top, 0)), 0)
    total = e.sum(-1, keepdims=True)
    out = np.einsum("bhgcn,bhnd->bhgcd", e, v.astype(np.float64))
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


def _run(kernel: Any, mask: np.ndarray, rng: np.random.Generator, size: float = 1.0) -> tuple:
    """The kernel's result and the reference's on random data under ``mask`` [B,1,C,S+C]
    (queries times ``size``); the slots no query keeps hold NaN, which must never get
    through."""
    import tvm

    shape, lib = kernel
    b, c = shape.batch, shape.chunk
    q = size * rng.standard_normal((b, HEADS, GROUP, c, DIM)).astype(np.float32)
    pk, pv = (rng.standard_normal((b, HEADS, SLOTS, DIM)).astype(np.float32) for _ in "kv")
    nk, nv = (rng.standard_normal((b, HEADS, c, DIM)).astype(np.float32) for _ in "kv")
    keep = mask[:, 0].copy()
    if shape.causal:
        keep[..., SLOTS:] &= np.tril(np.ones((c, c), bool))
    unused = ~np.any(keep, axis=1)[:, None, :SLOTS, None]
    for cache in (pk, pv):
        cache[np.broadcast_to(unused, cache.shape)] = np.nan
    y = np.zeros_like(q)
    arrays = [q, pk, nk, pv, nv]
    if shape.parallel:  # a prefill chunk reads the slot lists of slots_func
        arrays += _slot_lists(shape, mask)
    else:
        arrays.append(mask)
    tensors = [tvm.runtime.tensor(a) for a in [*arrays, y]]
    lib.mod["attention"](*tensors)
    k, v = np.concatenate([pk, nk], axis=2), np.concatenate([pv, nv], axis=2)
    want = _reference(q, np.nan_to_num(k), np.nan_to_num(v), keep)
    return tensors[-1].numpy(), want


def _slot_lists(shape: Any, mask: np.ndarray) -> list[np.ndarray]:
    import tvm

    from backends.tvm.build import tvm_target
    from backends.tvm.kernels_attention import slots_func
    from compiler.target import load_target

    func = slots_func(shape).with_attr("global_symbol", "slots")
    lib = tvm.compile(tvm.IRModule({"slots": func}), target=tvm_target(load_target("cpu")))
    n = shape.slots + shape.chunk
    out = [np.zeros((shape.batch, shape.chunk, n), np.int32)]
    out.append(np.zeros((shape.batch, shape.chunk, 2), np.int32))
    tensors = [tvm.runtime.tensor(a) for a in [mask, *out]]
    lib.mod["slots"](*tensors)
    return [t.numpy() for t in tensors[1:]]


def _decode_masks() -> dict[str, np.ndarray]:
    """Masks [3, 1, 1, S + 1] of a batch of three decode rows (3 rows of 3 KV heads: an odd
    task count, so each (row, KV head) splits into 2 parts)."""
    n = SLOTS + 1
    masks = {}
    masks["prefix"] = np.zeros((3, 1, 1, n), bool)
    masks["prefix"][0, ..., :13] = masks["prefix"][1, ..., :5] = masks["prefix"][2, ..., :1] = True
    masks["prefix"][..., -1] = True
    # Left padding: row 1's prompt was shorter, its first slots never hold a token.
    masks["left-padded"] = masks["prefix"].copy()
    masks["left-padded"][1, ..., :8] = False
    masks["left-padded"][1, ..., 8:16] = True
    # Fewer kept slots than parts: most parts are empty; row 1 sees nothing at all.
    masks["sparse"] = np.zeros((3, 1, 1, n), bool)
    masks["sparse"][0, ..., [3, SLOTS]] = masks["sparse"][2, ..., 7] = True
    masks["full"] = np.ones((3, 1, 1, n), bool)
    masks["full"][1, ..., -1] = False  # the new token masked, its cache full
    masks["holes"] = np.random.default_rng(1).random((3, 1, 1, n)) < 0.5
    return masks


@pytest.mark.parametrize("name", list(_decode_masks()))
@pytest.mark.parametrize("split_from", [0, 10**6], ids=["parallel", "serial"])
def test_decode_split_and_merge_match_the_reference(name: str, split_from: int) -> None:
    mask = _decode_masks()[name]
    got, want = _run(_kernel(3, 1, split_from), mask, np.random.default_rng(2))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for row in range(3):
        if not mask[row].any():  # a row that sees no slot gives 0, not NaN
            np.testing.assert_array_equal(got[row], 0.0)


def test_decode_empty_parts_ignore_stale_scratch() -> None:
    # The parallel run leaves large maxima in TVM's workspace pool, where the next run on the
    # calling thread finds its scratch: the parts it leaves empty must not count.
    mask = _decode_masks()["prefix"]
    _run(_kernel(3, 1, 0), mask, np.random.default_rng(4), size=30.0)
    got, want = _run(_kernel(3, 1, 10**6), mask, np.random.default_rng(5))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_decode_splits_the_slots_whatever_the_head_count() -> None:
    from backends.tvm.kernels_attention import DECODE_SPLIT, AttentionShape, decode_parts

    for heads in (1, 2, 3, 4, 5, 9):
        shape = AttentionShape(1, heads, 1, SLOTS, 1, DIM, 1, 1, SCALE)
        assert heads * decode_parts(shape) % DECODE_SPLIT == 0
    # The kernels the tests above build do split: 3 rows of 3 KV heads, 2 parts each.
    assert decode_parts(AttentionShape(3, HEADS, GROUP, SLOTS, 1, DIM, 3, 1, SCALE)) == 2


def test_prefill_chunk_matches_the_reference() -> None:
    chunk = 8
    mask = np.zeros((2, 1, chunk, SLOTS + chunk), bool)
    mask[0, ..., :10] = mask[0, ..., SLOTS:] = True
    mask[1, ..., SLOTS + 3 :] = True  # left-padded: an empty cache, 3 padding queries
    got, want = _run(_kernel(2, chunk), mask, np.random.default_rng(3))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1, :, :, :3], 0.0)
