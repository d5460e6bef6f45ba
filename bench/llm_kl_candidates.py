"""Candidate remedies for the W8A8 KL, emulated on the float HF Llama (``llm_kl_split.py``).

Each candidate is a function ``hf -> (model, acts)``: a changed copy of the float model that
computes the same function in float, and which Linear inputs get int8/32 activations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np


def sylvester(n: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    assert h.shape[0] == n, n
    return h


def paley12() -> np.ndarray:
    """The Hadamard matrix of order 12 (Paley I, q = 11)."""
    q = 11
    squares = {(i * i) % q for i in range(1, q)}
    chi = np.array([0] + [1 if a in squares else -1 for a in range(1, q)])
    jac = np.array([[chi[(j - i) % q] for j in range(q)] for i in range(q)])
    s = np.zeros((q + 1, q + 1))
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = jac
    h = np.eye(q + 1) + s
    assert np.allclose(h @ h.T, 12 * np.eye(12))
    return h


def hadamard(n: int) -> np.ndarray:
    """An orthonormal Hadamard-type matrix of order n (2^a, or 12 * 2^a, or 144 * 2^a)."""
    h = np.ones((1, 1))
    m = n
    while m % 12 == 0:
        h = np.kron(h, paley12())
        m //= 12
    h = np.kron(h, sylvester(m))
    assert np.allclose(h @ h.T, n * np.eye(n)), n
    return h / np.sqrt(n)


def random_orthogonal(n: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, n))
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))


def signed(h: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).choice([-1.0, 1.0], h.shape[0])[:, None] * h


def _set(param: Any, value: np.ndarray) -> None:
    import torch

    param.data = torch.from_numpy(value.astype(np.float32))


def _np(param: Any) -> np.ndarray:
    return param.detach().double().numpy()


def fold_norms(hf: Any) -> None:
    """Every RMSNorm's weight into the Linears that read it (the norms become weightless)."""
    for layer in hf.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for norm, readers in (
            (layer.input_layernorm, (attn.q_proj, attn.k_proj, attn.v_proj)),
            (layer.post_attention_layernorm, (mlp.gate_proj, mlp.up_proj)),
        ):
            c = _np(norm.weight)
            for lin in readers:
                _set(lin.weight, _np(lin.weight) * c)
            _set(norm.weight, np.ones_like(c))
    c = _np(hf.model.norm.weight)
    _set(hf.lm_head.weight, _np(hf.lm_head.weight) * c)
    _set(hf.model.norm.weight, np.ones_like(c))


def rotate_residual(hf: Any, q: np.ndarray) -> None:
    """The residual stream ``h -> h @ q`` (after ``fold_norms``: RMSNorm commutes with it)."""
    emb = hf.model.embed_tokens.weight
    _set(emb, _np(emb) @ q)
    for layer in hf.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
            _set(lin.weight, _np(lin.weight) @ q)
        for lin in (attn.o_proj, mlp.down_proj):
            _set(lin.weight, q.T @ _np(lin.weight))
    _set(hf.lm_head.weight, _np(hf.lm_head.weight) @ q)


def rotate_vo(hf: Any, h: np.ndarray) -> None:
    """Each head's values ``v -> v @ h`` (an orthonormal [hd, hd]); o_proj undoes it."""
    hd = h.shape[0]
    for layer in hf.model.layers:
        attn = layer.self_attn
        wv = _np(attn.v_proj.weight)  # [kv * hd, D]
        kv = wv.shape[0] // hd
        wv = np.einsum("ij,kjd->kid", h.T, wv.reshape(kv, hd, -1)).reshape(kv * hd, -1)
        _set(attn.v_proj.weight, wv)
        wo = _np(attn.o_proj.weight)  # [D, heads * hd]
        heads = wo.shape[1] // hd
        wo = np.einsum("dhj,jk->dhk", wo.reshape(-1, heads, hd), h).reshape(wo.shape[0], -1)
        _set(attn.o_proj.weight, wo)


def rotate_down_online(hf: Any, size: int) -> None:
    """down_proj's input rotated online per block of ``size`` (a block-diagonal Hadamard)."""
    import torch

    h = signed(hadamard(size), 1)
    for layer in hf.model.layers:
        down = layer.mlp.down_proj
        w = _np(down.weight)
        w = (w.reshape(w.shape[0], -1, size) @ h).reshape(w.shape)
        _set(down.weight, w)
        down.pre_rotation = torch.from_numpy(h.astype(np.float32))


def input_stats(hf: Any, calib: list[list[int]]) -> dict[str, np.ndarray]:
    """Per Linear: the largest |input| per channel over the calibration windows."""
    import torch

    stats: dict[str, np.ndarray] = {}
    hooks = []
    for name, module in hf.named_modules():
        if type(module).__name__ != "Linear":
            continue

        def hook(mod: Any, args: Any, name: str = name) -> None:
            amax = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).double().numpy()
            stats[name] = np.maximum(stats.get(name, amax), amax)

        hooks.append(module.register_forward_pre_hook(hook))
    with torch.inference_mode():
        for window in calib:
            hf(torch.tensor([window]))
    for h in hooks:
        h.remove()
    return stats


def permute_down(hf: Any, stats: dict[str, np.ndarray]) -> None:
    """The MLP's hidden channels sorted by their largest |input| of down_proj (gate/up rows,
    down columns): per-32 blocks then hold channels of like size. Free at run time."""
    for i, layer in enumerate(hf.model.layers):
        mlp = layer.mlp
        order = np.argsort(stats[f"model.layers.{i}.mlp.down_proj"])
        for lin in (mlp.gate_proj, mlp.up_proj):
            _set(lin.weight, _np(lin.weight)[order])
        _set(mlp.down_proj.weight, _np(mlp.down_proj.weight)[:, order])


def permute_vo(hf: Any, stats: dict[str, np.ndarray]) -> None:
    """Each KV head's value channels sorted by o_proj's input size (summed over the group)."""
    hd = hf.config.head_dim
    for i, layer in enumerate(hf.model.layers):
        attn = layer.self_attn
        wv, wo = _np(attn.v_proj.weight), _np(attn.o_proj.weight)
        kv, heads = wv.shape[0] // hd, wo.shape[1] // hd
        amax = stats[f"model.layers.{i}.self_attn.o_proj"].reshape(kv, heads // kv, hd).max(1)
        order = np.argsort(amax, axis=1)  # [kv, hd]
        wv = np.stack([wv.reshape(kv, hd, -1)[g, order[g]] for g in range(kv)])
        wo3 = wo.reshape(wo.shape[0], heads, hd)
        wo = np.stack([wo3[:, h, order[h // (heads // kv)]] for h in range(heads)], 1)
        _set(attn.v_proj.weight, wv.reshape(kv * hd, -1))
        _set(attn.o_proj.weight, wo.reshape(wo.shape[0], -1))


def _all(name: str) -> bool:
    return True


Candidate = Callable[[Any, list[list[int]]], tuple[Any, Callable[[str], bool]]]


def candidate(
    residual: str | None = None,
    vo: str = "",
    down: int | str = 0,
    head_float: bool = False,
) -> Candidate:
    def make(hf: Any, calib: list[list[int]]) -> tuple[Any, Callable[[str], bool]]:
        model = copy.deepcopy(hf)
        d = model.config.hidden_size
        if residual:
            fold_norms(model)
            q = random_orthogonal(d) if residual == "random" else signed(hadamard(d))
            rotate_residual(model, q)
        if vo == "hadamard":
            rotate_vo(model, signed(hadamard(model.config.head_dim), 2))
        if vo == "sort" or down == "sort":
            stats = input_stats(model, calib)
            if vo == "sort":
                permute_vo(model, stats)
            if down == "sort":
                permute_down(model, stats)
        if isinstance(down, int) and down:
            rotate_down_online(model, down)
        acts = (lambda n: not n.endswith("lm_head")) if head_float else _all
        return model, acts

    return make


CANDIDATES: dict[str, Candidate] = {
    "rotate residual (random orthogonal)": candidate("random"),
    "rotate residual (hadamard 576)": candidate("hadamard"),
    "sort down channels only": candidate(down="sort"),
    "sort v/o channels only": candidate(vo="sort"),
    "rotate residual + v/o heads hadamard": candidate("hadamard", vo="hadamard"),
    "rotate residual + v/o hadamard + sort down": candidate("hadamard", vo="hadamard", down="sort"),
    "rotate residual + sort v/o + sort down": candidate("hadamard", vo="sort", down="sort"),
    "down online hadamard 32 only": candidate(down=32),
    "rotate residual + v/o + down online h32": candidate("hadamard", vo="hadamard", down=32),
    "rotate residual + v/o + down online h128": candidate("hadamard", vo="hadamard", down=128),
    "rotate residual + v/o + sort down, head float": candidate(
        "hadamard", vo="hadamard", down="sort", head_float=True
    ),
}
