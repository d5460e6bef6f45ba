"""One binary file of named arrays, each stored once, memory-mapped at load.

An LLM artifact's prefill and decode graphs read the same weights; so do the two compiled
TVM modules, whose large constants are lifted out of ``model.so`` into function parameters
(``backends.tvm.weights``). All of them go into one file, ``weights.bin``::

    b"TPWEIGHT"  magic (8 bytes)
    u64          length of the JSON index that follows (little-endian)
    index        {"version": 1, "size": file bytes, "blobs": [[offset, nbytes], ...],
                  "arrays": {name: [blob, dtype, shape], ...}}
    blobs        each at an offset that is a multiple of 64

Names whose arrays are equal (dtype, shape and bytes) point at one blob, so a weight the two
graphs or the two modules share is on disk once. ``WeightFile`` maps the file copy-on-write:
the arrays are views of the mapping (no read, no copy; a page is read from the page cache
when a kernel first touches it, and only the rows of an embedding table that a prompt uses
ever are), 64-byte aligned as TVM requires of a tensor it borrows through DLPack, and
writable without ever writing the file.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import IntegrityError

MAGIC = b"TPWEIGHT"
VERSION = 1
ALIGN = 64
_HEAD = struct.Struct("<8sQ")


def digest(array: np.ndarray) -> str:
    """A content key of ``array``: its dtype, shape and bytes."""
    data = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{data.dtype.str}{data.shape}".encode())
    h.update(data.reshape(-1).view(np.uint8).data if data.size else b"")
    return h.hexdigest()


def _dtype_name(dtype: np.dtype) -> str:
    # ml_dtypes' types (bfloat16, float8_*) have no round-tripping ``.str``; their name does.
    return dtype.name if dtype.kind == "V" else dtype.str


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # the narrow float types the IR holds in NumPy

        return np.dtype(getattr(ml_dtypes, name))


def write_weights(path: Path, arrays: Mapping[str, np.ndarray]) -> int:
    """Write ``arrays`` into ``path`` (equal arrays once); returns the bytes written.

    The caller writes into a staging folder (``compiler.backend.staged_dir``), so a failed
    write never leaves a half-written file where an artifact expects one."""
    blobs: dict[str, int] = {}
    order: list[np.ndarray] = []
    entries: dict[str, list[Any]] = {}
    for name, array in arrays.items():
        key = digest(array)
        if key not in blobs:
            blobs[key] = len(order)
            order.append(np.ascontiguousarray(array))
        entries[name] = [blobs[key], _dtype_name(array.dtype), list(array.shape)]
    spans, offset = [], 0
    for data in order:
        spans.append([offset, int(data.nbytes)])
        offset += -(-data.nbytes // ALIGN) * ALIGN
    # The data starts after the index, which holds the offsets and the file size: grow the
    # start until the index fits before it.
    start = 0
    while True:
        placed = [[a + start, n] for a, n in spans]
        index = {
            "version": VERSION,
            "size": start + offset,
            "blobs": placed,
            "arrays": entries,
        }
        text = json.dumps(index, separators=(",", ":")).encode()
        need = -(-(_HEAD.size + len(text)) // ALIGN) * ALIGN
        if need <= start:
            break
        start = need
    with open(path, "wb") as f:
        f.write(_HEAD.pack(MAGIC, len(text)) + text)
        for data, (at, nbytes) in zip(order, placed, strict=True):
            f.seek(at)
            f.write(data.reshape(-1).view(np.uint8).data if nbytes else b"")
        f.truncate(start + offset)
    return start + offset


class WeightFile(Mapping[str, np.ndarray]):
    """The arrays of a weights file, by name: read-on-touch views of one mapping."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = _read_index(self.path)
        self.size = int(index["size"])
        self._blobs = [(int(a), int(n)) for a, n in index["blobs"]]
        self._entries: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}
        for name, (blob, dtype, shape) in index["arrays"].items():
            try:
                entry = (int(blob), _dtype(dtype), tuple(int(d) for d in shape))
            except (TypeError, ValueError, AttributeError):
                raise self._damaged(f"array {name!r} has a bad dtype or shape") from None
            nbytes = self._blobs[entry[0]][1]
            if nbytes != entry[1].itemsize * int(np.prod(entry[2], dtype=np.int64)):
                raise self._damaged(f"array {name!r} does not fit its {nbytes}-byte blob")
            self._entries[name] = entry
        self._map: mmap.mmap | None = None
        if self.size:
            with open(self.path, "rb") as f:  # the mapping outlives the descriptor
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        self._views: dict[int, np.ndarray] = {}

    def _damaged(self, why: str) -> IntegrityError:
        return IntegrityError(f"weights file {self.path} is damaged: {why}")

    def __getitem__(self, name: str) -> np.ndarray:
        blob, dtype, shape = self._entries[name]
        view = self._views.get(blob)
        if view is None or view.dtype != dtype or view.shape != shape:
            at, nbytes = self._blobs[blob]
            if self._map is None or nbytes == 0:
                return np.zeros(shape, dtype)
            count = nbytes // dtype.itemsize
            view = np.frombuffer(self._map, dtype, count, at).reshape(shape)
            self._views[blob] = view  # one array object per blob: equal names, same array
        return view

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def blobs(self) -> int:
        """How many distinct arrays the file holds."""
        return len(self._blobs)


def _read_index(path: Path) -> dict[str, Any]:
    """The JSON index of the weights file ``path``, checked against the file's size;
    ``IntegrityError`` naming the file when it is missing, truncated or not one."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_HEAD.size)
            magic, length = _HEAD.unpack(head) if len(head) == _HEAD.size else (b"", 0)
            if magic != MAGIC or length > size:
                raise IntegrityError(f"{path} is not a tapeout weights file (bad header)")
            index = json.loads(f.read(length))
    except OSError as e:
        raise IntegrityError(f"weights file {path} cannot be read: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"weights file {path} is damaged: bad index ({e})") from None
    if not isinstance(index, dict) or index.get("version") != VERSION:
        raise IntegrityError(f"weights file {path}: unknown format version")
    try:
        if int(index["size"]) != size:
            raise IntegrityError(
                f"weights file {path} is damaged: {size} bytes, its index says {index['size']}"
            )
        bad = any(a % ALIGN or a < 0 or n < 0 or a + n > size for a, n in index["blobs"])
        blobs = len(index["blobs"])
        bad = bad or any(not 0 <= e[0] < blobs or len(e) != 3 for e in index["arrays"].values())
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(f"weights file {path} is damaged: bad index ({e})") from None
    if bad:
        raise IntegrityError(f"weights file {path} is damaged: a blob lies outside the file")
    return index
