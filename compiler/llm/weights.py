"""One binary file of named arrays, each stored once, memory-mapped at load.

An LLM artifact's prefill and decode graphs read the same weights; so do the two compiled
TVM modules, whose large constants are lifted out of ``model.so`` into function parameters
(``backends.tvm.weights``). All of them go into one file, ``weights.bin``::

    b"TPWEIGHT"  magic (8 bytes)
    u64          length of the JSON index that follows (little-endian)
    index        {"version": 1 or 2, "size": file bytes, "blobs": [[offset, nbytes], ...],
                  "arrays": {name: [blob, dtype, shape], ...},
                  "codecs": {blob: codec, ...},                    (version 2 only)
                  "derived": {name: [dtype, shape, recipe], ...},  (version 2 only)
                  "sparse": [blob, ...]}                           (version 2 only)
    blobs        each at an offset that is a multiple of 64

Names whose arrays are equal (dtype, shape and bytes) point at one blob, so a weight the two
graphs or the two modules share is on disk once. ``WeightFile`` maps the file copy-on-write:
the arrays are views of the mapping (no read, no copy; a page is read from the page cache
when a kernel first touches it, and only the rows of an embedding table that a prompt uses
ever are), 64-byte aligned as TVM requires of a tensor it borrows through DLPack, and
writable without ever writing the file.

Arrays that no runtime maps (``write_weights(..., compact=names)``: an LLM artifact's
interpreter-form copies of weights its TVM modules read packed) may be stored encoded
(``CODECS``; version 2): 8-bit arrays whose values fit in 4 bits (the IR's i4/u4 weights,
held one per byte in NumPy) two per byte. Such an array is decoded into memory when it is
read, which only a parse of the graph that holds it does. An array that a backend
recomputes exactly from arrays the file holds (``derived``: a graph's 4-bit weights from the
TVM kernels' packed ones, ``backends.tvm.weights.unpack``) is not stored at all: its
recipe is, and reading the name follows it (``DERIVED``).

A ``sparse`` blob is a table a kernel reads a few rows of (an embedding): its part of the
mapping is advised ``MADV_NOHUGEPAGE``/``MADV_RANDOM``, because the page cache of a file on
ext4 holds large folios that a fault maps 2 MB at a time, and each token's row of a
SmolLM2 embedding then cost up to 2 MB of resident memory (33 MB for 51 distinct tokens).

The other arrays a kernel reads are read whole at every step: a decode step streams every
weight of the model once. ``WeightFile.resident`` reads those into anonymous memory advised
``MADV_HUGEPAGE`` (2 MB pages: a step's ~100 MB then touch 50 pages instead of 25,000, and
the stream never waits for a page walk), once per file however many modules ask; the
mapping keeps the sparse tables. ``TAPEOUT_HUGE_PAGES=0`` turns this off (the mapping's
views, as for a kernel that never runs here).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import IntegrityError

MAGIC = b"TPWEIGHT"
VERSION = 1
#: The version of a file with encoded blobs; a reader takes both.
VERSION_CODECS = 2
ALIGN = 64
_HEAD = struct.Struct("<8sQ")
#: A transparent huge page of x86-64 and most arm64 kernels (the arena's alignment).
HUGE_PAGE = 2 << 20
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _huge_pages() -> bool:
    """Whether anonymous memory advised ``MADV_HUGEPAGE`` gets huge pages here: Linux with
    transparent huge pages in ``always`` or ``madvise`` mode, unless
    ``TAPEOUT_HUGE_PAGES=0``."""
    if os.environ.get("TAPEOUT_HUGE_PAGES") == "0" or not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        mode = _THP.read_text()
    except OSError:
        return False
    return "[never]" not in mode


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


def _nibbles(array: np.ndarray) -> np.ndarray:
    """Two 4-bit values per byte, the first in the low nibble (odd length: a zero last)."""
    flat = array.reshape(-1).view(np.uint8) & 15
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return np.asarray(flat[0::2] | (flat[1::2] << 4), np.uint8)


def _unnibble(data: np.ndarray, count: int) -> np.ndarray:
    out = np.empty(2 * data.size, np.uint8)
    out[0::2] = data & 15
    out[1::2] = data >> 4
    return out[:count]


def _signed(values: np.ndarray) -> np.ndarray:
    return (values ^ np.uint8(8)).view(np.int8) - np.int8(8)  # 0..15 -> -8..7, two's complement


#: codec -> (the dtype it stores, whether an array fits it, encode, decode(bytes, count)).
CODECS: dict[str, tuple[np.dtype, Callable[[np.ndarray], bool], Callable[..., np.ndarray],
                        Callable[[np.ndarray, int], np.ndarray]]] = {
    "u4": (np.dtype(np.uint8), lambda a: a.size > 0 and int(a.max()) < 16, _nibbles, _unnibble),
    "i4": (
        np.dtype(np.int8),
        lambda a: a.size > 0 and -8 <= int(a.min()) and int(a.max()) < 8,
        _nibbles,
        lambda data, count: _signed(_unnibble(data, count)),
    ),
}


#: recipe kind -> "module:function" ``(recipe, weights, dtype, shape) -> array``, imported
#: when a derived array is first read (the backends that write such recipes own them).
DERIVED: dict[str, str] = {"tvm-packed": "backends.tvm.weights:unpack"}


def _codec(array: np.ndarray) -> str | None:
    """The codec that stores ``array`` losslessly in fewer bytes, if one does."""
    for name, (dtype, fits, _, _) in CODECS.items():
        if array.dtype == dtype and fits(array):
            return name
    return None


def write_weights(
    path: Path,
    arrays: Mapping[str, np.ndarray],
    compact: Collection[str] = (),
    derived: Mapping[str, tuple[np.ndarray, dict[str, Any]]] | None = None,
    sparse: Collection[str] = (),
) -> int:
    """Write ``arrays`` into ``path`` (equal arrays once); returns the bytes written.

    ``compact``: names that no runtime maps, only a graph parse reads: an array that only
    such names hold is stored encoded where a codec fits it (``CODECS``). ``derived``:
    name -> (array, recipe) for arrays not stored but recomputed (``DERIVED``); each
    recipe is followed here once and must give the array bit for bit. ``sparse``: names of
    tables a kernel reads a few rows of (mapped without huge pages).
    The caller writes into a staging folder (``compiler.backend.staged_dir``), so a failed
    write never leaves a half-written file where an artifact expects one."""
    blobs: dict[str, int] = {}
    order: list[np.ndarray] = []
    entries: dict[str, list[Any]] = {}
    mapped: set[int] = set()  # blobs some name outside ``compact`` holds: stored as they are
    for name, array in arrays.items():
        key = digest(array)
        if key not in blobs:
            blobs[key] = len(order)
            order.append(np.ascontiguousarray(array))
        entries[name] = [blobs[key], _dtype_name(array.dtype), list(array.shape)]
        if name not in compact:
            mapped.add(blobs[key])
    codecs: dict[str, str] = {}
    for blob, data in enumerate(order):
        codec = None if blob in mapped else _codec(data)
        if codec is not None:
            codecs[str(blob)] = codec
            order[blob] = CODECS[codec][2](data)
    made = {
        name: [_dtype_name(array.dtype), list(array.shape), recipe]
        for name, (array, recipe) in (derived or {}).items()
    }
    rows = sorted({entries[name][0] for name in sparse if name in entries})
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
            "version": VERSION_CODECS if codecs or made or rows else VERSION,
            "size": start + offset,
            "blobs": placed,
            "arrays": entries,
            **({"codecs": codecs} if codecs else {}),
            **({"derived": made} if made else {}),
            **({"sparse": rows} if rows else {}),
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
    if derived:
        _check_derived(path, derived)
    return start + offset


def _check_derived(path: Path, derived: Mapping[str, tuple[np.ndarray, dict[str, Any]]]) -> None:
    """Each derived array of the file just written reads back as the array it stands for."""
    weights = WeightFile(path)
    for name, (array, _) in derived.items():
        got = weights[name]
        if got.dtype != array.dtype or got.tobytes() != np.ascontiguousarray(array).tobytes():
            raise IntegrityError(f"{path}: the recipe of {name!r} does not give its array")


class WeightFile(Mapping[str, np.ndarray]):
    """The arrays of a weights file, by name: read-on-touch views of one mapping."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = _read_index(self.path)
        self.size = int(index["size"])
        self._blobs = [(int(a), int(n)) for a, n in index["blobs"]]
        self._codecs = {int(b): c for b, c in index.get("codecs", {}).items()}
        self._entries: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}
        for name, (blob, dtype, shape) in index["arrays"].items():
            try:
                entry = (int(blob), _dtype(dtype), tuple(int(d) for d in shape))
            except (TypeError, ValueError, AttributeError):
                raise self._damaged(f"array {name!r} has a bad dtype or shape") from None
            nbytes = self._blobs[entry[0]][1]
            count = int(np.prod(entry[2], dtype=np.int64))
            codec = self._codecs.get(entry[0])
            if codec is not None and entry[1] != CODECS[codec][0]:
                raise self._damaged(f"array {name!r} is no {CODECS[codec][0]} for codec {codec}")
            if nbytes != (-(-count // 2) if codec else entry[1].itemsize * count):
                raise self._damaged(f"array {name!r} does not fit its {nbytes}-byte blob")
            self._entries[name] = entry
        try:
            self._derived = {
                name: (_dtype(dtype), tuple(int(d) for d in shape), dict(recipe))
                for name, (dtype, shape, recipe) in index.get("derived", {}).items()
            }
        except (TypeError, ValueError, AttributeError):
            raise self._damaged("a derived array has a bad dtype, shape or recipe") from None
        self._made: dict[str, np.ndarray] = {}
        self._map: mmap.mmap | None = None
        if self.size:
            with open(self.path, "rb") as f:  # the mapping outlives the descriptor
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
                self._advise_sparse([int(b) for b in index.get("sparse", [])], f.fileno())
        self._views: dict[int, np.ndarray] = {}
        self._sparse = frozenset(int(b) for b in index.get("sparse", []))
        self._resident: dict[int, np.ndarray] = {}  # blob -> its bytes in a huge-page arena
        self._arenas: list[mmap.mmap] = []

    def resident(self, names: Collection[str]) -> list[np.ndarray]:
        """``[self[name] for name in names]``, the arrays that kernels stream (stored as
        they are, not sparse) read once into memory backed by transparent huge pages (see
        the module's note); later calls and ``self[name]`` give the same arrays. Where the
        system has no huge pages to advise, or ``TAPEOUT_HUGE_PAGES=0``: the mapping's
        views."""
        todo = sorted({
            self._entries[name][0] for name in names
            if name in self._entries and self._streamed(self._entries[name][0])
        })  # fmt: skip
        if todo and _huge_pages():
            self._read_into_arena(todo)
        return [self[name] for name in names]

    def _streamed(self, blob: int) -> bool:
        return (blob not in self._resident and blob not in self._sparse
                and blob not in self._codecs and self._blobs[blob][1] > 0)  # fmt: skip

    def _read_into_arena(self, blobs: list[int]) -> None:
        """Read ``blobs`` from the file into one new anonymous mapping advised
        ``MADV_HUGEPAGE``, each at a 64-byte aligned offset; their views move there."""
        sizes = [-(-self._blobs[b][1] // ALIGN) * ALIGN for b in blobs]
        # Private: a shared anonymous mapping is shmem, whose huge pages another switch
        # (shmem_enabled, usually never) governs.
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        arena = mmap.mmap(-1, sum(sizes) + HUGE_PAGE, flags=flags)
        arena.madvise(mmap.MADV_HUGEPAGE)  # before the first touch: faults take 2 MB pages
        memory = np.frombuffer(arena, np.uint8)
        offset = -memory.ctypes.data % HUGE_PAGE
        try:
            f = open(self.path, "rb")
        except OSError as e:  # removed (or made unreadable) since it was mapped
            raise IntegrityError(f"weights file {self.path} cannot be read: {e}") from None
        with f:
            for blob, size in zip(blobs, sizes, strict=True):
                at, nbytes = self._blobs[blob]
                into = memory[offset : offset + nbytes]
                f.seek(at)
                if f.readinto(memoryview(into)) != nbytes:  # type: ignore[arg-type]
                    raise self._damaged(f"blob {blob} ends past the end of the file")
                self._resident[blob] = into
                self._views.pop(blob, None)
                offset += size
        self._arenas.append(arena)

    def _advise_sparse(self, blobs: list[int], fd: int) -> None:
        """Map the tables read a row at a time in small pages (see the module's note): no
        huge pages, no readahead, and the file's cached large folios of them dropped
        (``POSIX_FADV_DONTNEED``: clean pages no process maps; a row is read again from
        the file when a step first needs it), since a fault maps a whole cached folio."""
        names = ("MADV_NOHUGEPAGE", "MADV_RANDOM")
        advice = [int(getattr(mmap, name)) for name in names if hasattr(mmap, name)]
        if self._map is None or not blobs or len(advice) < len(names):
            return  # not Linux: nothing to advise
        for blob in blobs:
            at, nbytes = self._blobs[blob]
            start = at - at % mmap.PAGESIZE
            for option in advice:
                self._map.madvise(option, start, at + nbytes - start)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, start, at + nbytes - start, os.POSIX_FADV_DONTNEED)

    def _damaged(self, why: str) -> IntegrityError:
        return IntegrityError(f"weights file {self.path} is damaged: {why}")

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._derived:
            return self._make(name)
        blob, dtype, shape = self._entries[name]
        view = self._views.get(blob)
        if view is None or view.dtype != dtype or view.shape != shape:
            at, nbytes = self._blobs[blob]
            if self._map is None or nbytes == 0:
                return np.zeros(shape, dtype)
            codec = self._codecs.get(blob)
            if blob in self._resident:
                view = self._resident[blob].view(dtype).reshape(shape)
            elif codec is None:
                count = nbytes // dtype.itemsize
                view = np.frombuffer(self._map, dtype, count, at).reshape(shape)
            else:  # decoded into memory: only a graph parse reads these
                data = np.frombuffer(self._map, np.uint8, nbytes, at)
                view = CODECS[codec][3](data, int(np.prod(shape, dtype=np.int64))).reshape(shape)
            self._views[blob] = view  # one array object per blob: equal names, same array
        return view

    def _make(self, name: str) -> np.ndarray:
        """A derived array, recomputed once (``DERIVED``): into memory, not mapped."""
        made = self._made.get(name)
        if made is None:
            import importlib

            dtype, shape, recipe = self._derived[name]
            where = DERIVED.get(str(recipe.get("kind")))
            if where is None:
                raise self._damaged(f"array {name!r} has an unknown recipe {recipe.get('kind')!r}")
            module, _, function = where.partition(":")
            follow = getattr(importlib.import_module(module), function)
            try:
                made = follow(recipe, self, dtype, shape)
            except (KeyError, ValueError, IndexError) as e:
                raise self._damaged(f"array {name!r} cannot be recomputed ({e})") from None
            if made.dtype != dtype or made.shape != shape:
                raise self._damaged(f"array {name!r}: its recipe gives {made.dtype}{made.shape}")
            self._made[name] = made
        return made

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._derived

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from self._derived

    def __len__(self) -> int:
        return len(self._entries) + len(self._derived)

    @property
    def derived(self) -> frozenset[str]:
        """The names whose arrays are recomputed from a recipe, not stored."""
        return frozenset(self._derived)

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
    if not isinstance(index, dict) or index.get("version") not in (VERSION, VERSION_CODECS):
        raise IntegrityError(f"weights file {path}: unknown format version")
    try:
        if int(index["size"]) != size:
            raise IntegrityError(
                f"weights file {path} is damaged: {size} bytes, its index says {index['size']}"
            )
        bad = any(a % ALIGN or a < 0 or n < 0 or a + n > size for a, n in index["blobs"])
        blobs = len(index["blobs"])
        bad = bad or any(not 0 <= e[0] < blobs or len(e) != 3 for e in index["arrays"].values())
        codecs = index.get("codecs", {})
        if not isinstance(codecs, dict) or any(
            c not in CODECS or not 0 <= int(b) < blobs for b, c in codecs.items()
        ):
            raise IntegrityError(f"weights file {path} is damaged: an unknown codec")
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(f"weights file {path} is damaged: bad index ({e})") from None
    if bad:
        raise IntegrityError(f"weights file {path} is damaged: a blob lies outside the file")
    return index
