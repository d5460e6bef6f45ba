"""Pluggable tokenizers: anything with ``encode(text) -> ids`` and ``decode(ids) -> text``.

An artifact saves its tokenizer when a kind in ``TOKENIZER_KINDS`` recognizes it (a Hugging Face
tokenizer, or a GGUF file's); otherwise the user passes one to ``load_llm``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol


class Tokenizer(Protocol):
    def encode(self, text: str) -> Sequence[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def _is_hf(tok: Any) -> bool:
    return hasattr(tok, "save_pretrained") and type(tok).__module__.startswith("transformers")


def _save_hf(tok: Any, folder: Path) -> None:
    tok.save_pretrained(str(folder))


def _load_hf(folder: Path) -> Tokenizer:
    from transformers import AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(str(folder))
    return tok


def _is_gguf(tok: Any) -> bool:
    return type(tok).__module__ == "compiler.frontends.gguf_tokenizer"


def _save_gguf(tok: Any, folder: Path) -> None:
    from compiler.frontends.gguf_tokenizer import save_json

    save_json(tok, str(folder / "gguf_tokenizer.json"))


def _load_gguf(folder: Path) -> Tokenizer:
    from compiler.frontends.gguf_tokenizer import load_json

    tok: Any = load_json(str(folder / "gguf_tokenizer.json"))
    return tok


#: kind -> (recognize, save into a folder, load from it).
TOKENIZER_KINDS: dict[
    str, tuple[Callable[[Any], bool], Callable[[Any, Path], None], Callable[[Path], Tokenizer]]
] = {
    "hf": (_is_hf, _save_hf, _load_hf),
    "gguf": (_is_gguf, _save_gguf, _load_gguf),
}


def save_tokenizer(tokenizer: Any, folder: Path) -> str | None:
    """Save ``tokenizer`` under ``folder``; its kind, or None when no kind knows it."""
    if tokenizer is None:
        return None
    for kind, (recognize, save, _) in TOKENIZER_KINDS.items():
        if recognize(tokenizer):
            folder.mkdir(parents=True, exist_ok=True)
            save(tokenizer, folder)
            return kind
    return None


def load_tokenizer(kind: str, folder: Path) -> Tokenizer | None:
    entry = TOKENIZER_KINDS.get(kind)
    return None if entry is None else entry[2](folder)
