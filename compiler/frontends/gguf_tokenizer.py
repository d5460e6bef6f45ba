"""The tokenizer stored in a GGUF file: byte-level BPE (``gpt2``) and SentencePiece (``llama``).

* ``gpt2`` (GPT-2, Llama 3, SmolLM2, Qwen): text is split by the pre-tokenizer's regexes
  (``tokenizer.ggml.pre`` names them; applied one after another, as llama.cpp does), each
  piece's UTF-8 bytes are mapped to GPT-2's printable byte alphabet, and the merges
  (``tokenizer.ggml.merges``, best first) are applied lowest rank first.
* ``llama`` (SentencePiece BPE, Llama 1/2, Mistral): spaces become ``▁``, a ``▁`` is put in
  front, and adjacent symbols are merged highest score first (``tokenizer.ggml.scores``);
  characters outside the vocabulary fall back to ``<0xXX>`` byte tokens.

Control tokens (``tokenizer.ggml.token_type`` 3, e.g. ``<|im_start|>``) found in the text are
matched whole. ``decode(encode(text)) == text`` for any text.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from compiler.errors import FrontendError

log = logging.getLogger(__name__)

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
#: ``tokenizer.ggml.pre`` -> its regexes, applied in turn (llama-vocab.cpp).
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "default": (_GPT2,),
    "gpt2": (_GPT2,),
    "smollm": (r"\p{N}", _GPT2),
    "llama-bpe": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
        r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
}
CONTROL = 3


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (bytes_to_unicode)."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


@dataclass
class Tokenizer:
    """A GGUF tokenizer: ``encode(text) -> ids`` and ``decode(ids) -> text``."""

    model: str
    tokens: list[str]
    merges: dict[tuple[str, str], int] = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)
    control: list[str] = field(default_factory=list)
    pre: tuple[str, ...] = (_GPT2,)
    bos_id: int | None = None
    eos_id: int | None = None

    def __post_init__(self) -> None:
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = [self.bos_id] if add_bos and self.bos_id is not None else []
        for piece, is_control in self._split_control(text):
            if is_control:
                ids.append(self.ids[piece])
            elif self.model == "gpt2":
                ids.extend(self._bpe_text(piece))
            else:
                ids.extend(self._spm_text(piece))
        return ids

    def decode(self, ids: list[int]) -> str:
        if self.model == "gpt2":
            inverse = {c: b for b, c in byte_alphabet().items()}
            out = bytearray()
            for i in ids:
                tok = self.tokens[i]
                if tok in self.control:
                    out.extend(tok.encode())
                else:
                    out.extend(inverse[c] for c in tok)
            return out.decode("utf-8", errors="replace")
        return self._spm_decode(ids)

    # ---- shared ----------------------------------------------------------------------------
    def _split_control(self, text: str) -> list[tuple[str, bool]]:
        if not self.control:
            return [(text, False)] if text else []
        import regex

        pattern = "(" + "|".join(regex.escape(c) for c in sorted(self.control, key=len)[::-1]) + ")"
        parts = regex.split(pattern, text)
        return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]

    # ---- byte-level BPE --------------------------------------------------------------------
    def _bpe_text(self, text: str) -> list[int]:
        import regex

        pieces = [text]
        for expr in self.pre:
            compiled = regex.compile(expr)
            nxt: list[str] = []
            for p in pieces:
                nxt.extend(_split_keep(compiled, p))
            pieces = nxt
        alphabet = byte_alphabet()
        ids: list[int] = []
        for p in pieces:
            if p not in self._cache:
                word = "".join(alphabet[b] for b in p.encode("utf-8"))
                self._cache[p] = [self.ids[s] for s in self._merge(list(word))]
            ids.extend(self._cache[p])
        return ids

    def _merge(self, symbols: list[str]) -> list[str]:
        while len(symbols) > 1:
            pairs = zip(symbols, symbols[1:], strict=False)
            ranks = [self.merges.get(pair, 1 << 62) for pair in pairs]
            best = min(range(len(ranks)), key=ranks.__getitem__)
            if ranks[best] == 1 << 62:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        return symbols

    # ---- SentencePiece ---------------------------------------------------------------------
    def _spm_text(self, text: str) -> list[int]:
        symbols = list("▁" + text.replace(" ", "▁"))
        while len(symbols) > 1:
            best, best_score = -1, -float("inf")
            for i in range(len(symbols) - 1):
                j = self.ids.get(symbols[i] + symbols[i + 1])
                if j is not None and self.scores[j] > best_score:
                    best, best_score = i, self.scores[j]
            if best < 0:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        ids: list[int] = []
        for s in symbols:
            if s in self.ids:
                ids.append(self.ids[s])
            else:  # byte fallback
                ids.extend(self.ids[f"<0x{b:02X}>"] for b in s.encode("utf-8"))
        return ids

    def _spm_decode(self, ids: list[int]) -> str:
        out = bytearray()
        for i in ids:
            tok = self.tokens[i]
            if tok.startswith("<0x") and tok.endswith(">") and len(tok) == 6:
                out.append(int(tok[3:5], 16))
            elif i not in (self.bos_id, self.eos_id):
                out.extend(tok.replace("▁", " ").encode("utf-8"))
        text = out.decode("utf-8", errors="replace")
        return text[1:] if text.startswith(" ") else text


def _split_keep(compiled: Any, text: str) -> list[str]:
    """``text`` cut at the matches of ``compiled``, matches and the text between kept."""
    out: list[str] = []
    pos = 0
    for m in compiled.finditer(text):
        if m.start() > pos:
            out.append(text[pos : m.start()])
        if m.end() > m.start():
            out.append(m.group())
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def _pair(merge: str) -> tuple[str, str]:
    left, right = merge.split(" ", 1)
    return left, right


def tokenizer_from_metadata(metadata: dict[str, Any], where: str = "GGUF") -> Tokenizer:
    """The tokenizer described by a GGUF file's ``tokenizer.ggml.*`` metadata."""
    model = metadata.get("tokenizer.ggml.model")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if model not in ("gpt2", "llama") or not tokens:
        raise FrontendError(f"{where}: tokenizer model {model!r} is not supported (gpt2, llama)")
    types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    pre_name = metadata.get("tokenizer.ggml.pre", "default")
    pre = PRE_TOKENIZERS.get(pre_name)
    if pre is None:
        log.warning("%s: pre-tokenizer %r unknown; splitting as GPT-2 does", where, pre_name)
        pre = PRE_TOKENIZERS["default"]
    merges = metadata.get("tokenizer.ggml.merges") or []
    return Tokenizer(
        model=model,
        tokens=list(tokens),
        merges={_pair(m): r for r, m in enumerate(merges)},
        scores=list(metadata.get("tokenizer.ggml.scores") or [0.0] * len(tokens)),
        control=[t for t, k in zip(tokens, types, strict=True) if k == CONTROL],
        pre=pre,
        bos_id=metadata.get("tokenizer.ggml.bos_token_id"),
        eos_id=metadata.get("tokenizer.ggml.eos_token_id"),
    )


def save_json(tok: Tokenizer, path: str) -> None:
    """Write ``tok`` as one JSON file (an artifact keeps a GGUF file's tokenizer this way)."""
    merges = [" ".join(pair) for pair, _ in sorted(tok.merges.items(), key=lambda kv: kv[1])]
    fields = {
        "model": tok.model,
        "tokens": tok.tokens,
        "merges": merges,
        "scores": tok.scores,
        "control": tok.control,
        "pre": list(tok.pre),
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fields, f, ensure_ascii=False)


def load_json(path: str) -> Tokenizer:
    """The tokenizer ``save_json`` wrote."""
    with open(path, encoding="utf-8") as f:
        fields = json.load(f)
    fields["merges"] = {_pair(m): r for r, m in enumerate(fields["merges"])}
    fields["pre"] = tuple(fields["pre"])
    return Tokenizer(**fields)
