"""An image folder's headers — size, kind and byte count of every file — read
once per folder, not once per process.

The scan calls `augpipe_scan_headers` (csrc/jpeg_box.c: JPEG markers or the
PNG IHDR chunk, plus the JPEG end-of-image check) on chunks of paths from a
few threads; each call releases the GIL, so the threads overlap their file
reads. Formats that function does not parse (and files it cannot place) are
read with PIL. The result is kept on disk under augpipe's cache directory
($AUGPIPE_CACHE, default ~/.cache/augpipe) in `headers/`, keyed by the
folder's absolute path; each entry remembers the file's size and mtime, so a
later scan re-reads only files that changed or are new, and drops removed
ones. A scan longer than a second shows a progress bar.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .._files import atomic_write

KIND_UNREADABLE, KIND_JPEG, KIND_OTHER, KIND_TRUNCATED = 0, 1, 2, 3
_ASK_PIL = -1
CHUNK = 512
THREADS = 8  # I/O-bound: more threads than cores keep a slow (network) disk busy
VERSION = 1


def _scanner():
    from ..kernels.jpeg import LIBRARY

    fn = LIBRARY.augpipe_scan_headers
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int64
    return fn


def _scan_chunk(fn, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [os.fsencode(p) + b"\0" for p in paths]
    offsets = np.zeros(len(paths), np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded[:-1]])
    buf = b"".join(encoded)
    info = np.zeros((len(paths), 3), np.int64)
    kinds = np.zeros(len(paths), np.int8)
    fn(buf, offsets.ctypes.data, len(paths), info.ctypes.data, kinds.ctypes.data)
    for i in np.flatnonzero(kinds == _ASK_PIL):
        info[i], kinds[i] = _pil(paths[i])
    return info, kinds


def _pil(path: str) -> tuple[np.ndarray, int]:
    """(height, width, bytes), kind of a file the C scan leaves to PIL."""
    from PIL import Image

    try:
        with open(path, "rb") as f, Image.open(f) as im:
            h, w = im.size[1], im.size[0]
            jpeg = im.format == "JPEG" and im.mode in ("RGB", "L")
            f.seek(-2, os.SEEK_END)
            tail = f.read(2)
            size = f.tell()
        kind = KIND_OTHER if not jpeg else KIND_JPEG if tail == b"\xff\xd9" else KIND_TRUNCATED
        return np.array([h, w, size]), kind
    except Exception:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        return np.zeros(3, np.int64), KIND_UNREADABLE


def probe(data: bytes) -> tuple[int, int, int]:
    """(height, width, kind) of an encoded image held in memory (a tar member), by PIL's header
    parse, with the rules of a file scan: a 1- or 3-component JPEG is KIND_JPEG if it ends with the
    end-of-image marker, else KIND_TRUNCATED; other images KIND_OTHER; anything else KIND_UNREADABLE."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            jpeg = im.format == "JPEG" and im.mode in ("RGB", "L")
    except Exception:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        return 0, 0, KIND_UNREADABLE
    kind = KIND_OTHER if not jpeg else KIND_JPEG if data[-2:] == b"\xff\xd9" else KIND_TRUNCATED
    return h, w, kind


def scan(paths, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(info (N, 3) int64 = height, width, bytes; kinds (N,) int8) of `paths`."""
    from tqdm import tqdm

    paths = [str(p) for p in paths]
    n = len(paths)
    info, kinds = np.zeros((n, 3), np.int64), np.zeros(n, np.int8)
    if not n:
        return info, kinds
    fn = _scanner()
    starts = range(0, n, CHUNK)
    with ThreadPoolExecutor(min(THREADS, len(starts))) as pool, \
            tqdm(total=n, desc="reading image headers", unit="file", delay=1.0, disable=not progress) as bar:
        for start, (i, k) in zip(starts, pool.map(lambda s: _scan_chunk(fn, paths[s:s + CHUNK]), starts)):
            info[start:start + len(k)], kinds[start:start + len(k)] = i, k
            bar.update(len(k))
    return info, kinds


def cache_file(root) -> Path:
    base = Path(os.environ.get("AUGPIPE_CACHE", Path.home() / ".cache" / "augpipe"))
    key = hashlib.sha1(os.fsencode(os.path.abspath(root))).hexdigest()[:20]
    return base / "headers" / f"{key}.npz"


def cached_scan(root, paths, sizes, mtimes, progress: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """`scan` through the folder's cache: (info, kinds, {"reused", "read"}).

    `sizes` / `mtimes` (ns) are the files' current stat, taken by the caller's
    listing; an entry is reused only if both match. The cache is rewritten
    (atomically) when anything was read or removed; a cache that cannot be
    read or written is ignored (the scan still completes).
    """
    prefix = str(root).rstrip(os.sep) + os.sep  # paths listed below root: slicing, not relpath (~1 s at 10^5)
    rel = [p[len(prefix):] if p.startswith(prefix) else os.path.relpath(p, root) for p in map(str, paths)]
    root = os.path.abspath(root)
    n = len(rel)
    info, kinds = np.zeros((n, 3), np.int64), np.zeros(n, np.int8)
    fresh = np.ones(n, bool)
    old = _load(cache_file(root))
    if old is not None and len(old["paths"]) == n and (old["paths"] == np.array(rel)).all():
        same = (old["sizes"] == np.asarray(sizes)) & (old["mtimes"] == np.asarray(mtimes))  # the usual case, vectorised
        info[same], kinds[same], fresh = old["info"][same], old["kinds"][same], ~same
    elif old is not None:
        where = {p: i for i, p in enumerate(old["paths"].tolist())}
        for j, p in enumerate(rel):
            i = where.get(p)
            if i is not None and old["sizes"][i] == sizes[j] and old["mtimes"][i] == mtimes[j]:
                info[j], kinds[j], fresh[j] = old["info"][i], old["kinds"][i], False
    todo = np.flatnonzero(fresh)
    if len(todo):
        i, k = scan([paths[j] for j in todo], progress)
        info[todo], kinds[todo] = i, k
    if len(todo) or old is None or len(old["paths"]) != n:
        _save(cache_file(root), rel, sizes, mtimes, info, kinds)
    return info, kinds, {"reused": int(n - len(todo)), "read": int(len(todo))}


def _load(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != VERSION:
                return None
            return {k: z[k] for k in ("paths", "sizes", "mtimes", "info", "kinds")}
    except (OSError, KeyError, ValueError):
        return None


def _save(path: Path, rel, sizes, mtimes, info, kinds) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, version=np.int64(VERSION), paths=np.array(rel), sizes=np.asarray(sizes, np.int64),
                     mtimes=np.asarray(mtimes, np.int64), info=info, kinds=kinds)
    try:
        atomic_write(path, write)
    except OSError:  # a read-only cache directory: scan every time, still correct
        pass
