"""Choosing the next token from logits: greedy, or temperature with top-k and top-p."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import InputError


@dataclass(frozen=True)
class Sampler:
    """``temperature`` 0 is greedy (argmax: the first of tied maxima, as torch); otherwise
    softmax(logits / temperature) restricted to the ``top_k`` most likely tokens (0: all) and
    to the smallest set whose probability reaches ``top_p``."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise InputError(
                f"sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1; got "
                f"temperature={self.temperature}, top_k={self.top_k}, top_p={self.top_p}"
            )

    def __call__(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One token id per row of ``logits`` [B, vocab]."""
        if self.temperature == 0:
            return np.argmax(logits, axis=-1).astype(np.int64)
        z = logits.astype(np.float64) / self.temperature
        if 0 < self.top_k < z.shape[-1]:
            kth = np.partition(z, -self.top_k, axis=-1)[:, -self.top_k, None]
            z = np.where(z < kth, -np.inf, z)
        probs = np.exp(z - z.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        if self.top_p < 1:
            order = np.argsort(-probs, axis=-1, kind="stable")
            sorted_p = np.take_along_axis(probs, order, axis=-1)
            # Keep a token while the mass before it is below top_p (the first always stays).
            drop_sorted = (np.cumsum(sorted_p, axis=-1) - sorted_p) >= self.top_p
            drop = np.zeros_like(drop_sorted)
            np.put_along_axis(drop, order, drop_sorted, axis=-1)
            probs = np.where(drop, 0.0, probs)
            probs /= probs.sum(axis=-1, keepdims=True)
        draws = rng.random((probs.shape[0], 1))
        picks = (np.cumsum(probs, axis=-1) < draws).sum(axis=-1)
        return np.minimum(picks, probs.shape[-1] - 1).astype(np.int64)
