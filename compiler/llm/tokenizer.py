"""Pluggable tokenizers: anything with ``encode(text) -> ids`` and ``decode(ids) -> text``.

An artifact saves its tokenizer when a kind in ``TOKENIZER_KINDS`` recognizes it (a Hugging Face
tokenizer, or a GGUF file's); otherwise the user passes one to ``load_llm``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
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


GGUF_FILE = "gguf_tokenizer.json"


class SavedGgufTokenizer:
    """A GGUF tokenizer an artifact saved, read in two steps: decoding needs only the token
    strings (about 4 MB of Python objects for SmolLM2's 49,152), so a process that is given
    token ids never holds the merges and scores encoding needs (about 14 MB more): they are
    read at the first ``encode``, or the first use of any other attribute."""

    #: What decoding reads: these attributes come from the vocabulary alone.
    VOCAB_FIELDS = frozenset({"model", "tokens", "control", "bos_id", "eos_id"})

    def __init__(self, path: Path):
        self.path = path
        self._full: Any = None
        self._vocab: Any = None

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        return list(self._tokenizer().encode(text, add_bos))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._decoder().decode(list(ids)))

    def _read(self, full: bool) -> Any:
        """The saved tokenizer: with the merges (kept as the file's "a b" strings: a third
        of the memory of pairs of strings) and, for SentencePiece, the scores; or without."""
        import json

        from compiler.frontends.gguf_tokenizer import Tokenizer as GgufTokenizer

        with open(self.path, encoding="utf-8") as f:
            fields = json.load(f)
        merges, scores = fields.pop("merges"), fields.pop("scores")
        fields.update(
            merges=_Merges(merges) if full else {},
            scores=scores if full and fields["model"] != "gpt2" else [],  # SentencePiece's
            pre=tuple(fields["pre"]),
        )
        tok = GgufTokenizer(**fields)
        if not full:
            tok.ids = {}  # encoding's table: encode reads the full tokenizer
        return tok

    def _tokenizer(self) -> Any:
        if self._full is None:
            self._full, self._vocab = self._read(full=True), None
        return self._full

    def _decoder(self) -> Any:
        if self._full is not None:
            return self._full
        if self._vocab is None:
            self._vocab = self._read(full=False)
        return self._vocab

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._decoder() if name in self.VOCAB_FIELDS else self._tokenizer(), name)


class _Merges(Mapping[tuple[str, str], int]):
    """BPE merge ranks by pair, held as the ``"left right"`` strings the file lists them as."""

    def __init__(self, merges: list[str]):
        self._ranks = {merge: rank for rank, merge in enumerate(merges)}

    def get(self, pair: tuple[str, str], default: Any = None) -> Any:
        return self._ranks.get(f"{pair[0]} {pair[1]}", default)

    def __getitem__(self, pair: tuple[str, str]) -> int:
        return self._ranks[f"{pair[0]} {pair[1]}"]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for merge in self._ranks:
            left, right = merge.split(" ", 1)
            yield left, right

    def __len__(self) -> int:
        return len(self._ranks)


def _is_gguf(tok: Any) -> bool:
    return isinstance(tok, SavedGgufTokenizer) or (
        type(tok).__module__ == "compiler.frontends.gguf_tokenizer"
    )


def _save_gguf(tok: Any, folder: Path) -> None:
    if isinstance(tok, SavedGgufTokenizer):
        import shutil

        shutil.copyfile(tok.path, folder / GGUF_FILE)
        return
    from compiler.frontends.gguf_tokenizer import save_json

    save_json(tok, str(folder / GGUF_FILE))


def _load_gguf(folder: Path) -> Tokenizer:
    return SavedGgufTokenizer(folder / GGUF_FILE)


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
