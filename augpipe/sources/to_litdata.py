"""`augpipe convert SRC OUT --format litdata`: any source, or WebDataset tar shards, to a litdata
dataset that `ap.Loader("litdata:OUT")` streams (layout: augpipe/sources/litdata.py).

Each sample is stored as it was: an image file's bytes (JPEG, PNG) unchanged,
no re-encoding; arrays and .beton samples as raw CHW pixels (FFCV's reader
hands out decoded pixels, and pixels are lossless). With it its label, its
index (its position in the dataset written, 0..N-1), its height and width
and its key (file path, `shard:key`, or `array[i]`), and, in side tables,
every sample's size, kind and byte count, so a Loader plans before it
decodes, without a header scan.

The dataset is written by litdata's own `BinaryWriter` into a hidden
temporary directory beside OUT and renamed onto OUT when complete: a killed
conversion leaves no directory that looks like a dataset (and
`LitdataSource` refuses one without `augpipe.json`, which is written last).
Corrupt images (truncated JPEGs, files or members PIL cannot read, PNGs that
do not decode) and tar samples without an image or an integer label raise a
`DecodeError` naming them (on_error="raise") or are left out and listed
(on_error="skip").
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .base import DecodeError, Source
from .headers import KIND_JPEG, KIND_OTHER, KIND_TRUNCATED, probe
from .litdata import FORMAT, META, VERSION, table_path

CHUNK_BYTES = "64MB"


@dataclass
class Sample:
    key: str
    data: bytes
    label: int
    height: int
    width: int
    kind: int


@dataclass
class LitdataResult:
    """What a conversion wrote: `path`, `written` samples, `skipped` (name, reason) pairs, `seconds`."""

    path: Path
    written: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    nbytes: int = 0


def convert_litdata(source, out, on_error: str = "raise", overwrite: bool = False,
                    chunk_bytes: str | int = CHUNK_BYTES, progress: bool = True) -> LitdataResult:
    """Write `source` to the litdata dataset directory `out`.

    Args:
        source: anything `augpipe.sources.open_source` takes (image folder, arrays,
            "fashion-mnist", a .beton), or WebDataset shards: a .tar path, a brace pattern
            ("train-{000..009}.tar"), a list of .tar paths or a folder of .tar files.
        out: the directory to create.
        on_error: "raise" (DecodeError naming the image or tar member) or "skip" (listed).
        overwrite: replace an existing `out` (only once the new one is complete).
        chunk_bytes: litdata's chunk size.

    Raises:
        FileExistsError: `out` exists and overwrite is False.
        DecodeError: a corrupt image or unusable tar sample with on_error="raise".
        ValueError: nothing left to write.
    """
    import time

    from .webdataset import is_shards

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; remove it or pass overwrite=True (--overwrite)")
    start = time.perf_counter()
    if is_shards(source):
        from .webdataset import shard_paths

        paths = shard_paths(source)
        samples, total, channels, encoding, classes = _from_shards(paths), None, 3, "file", None
        described = f"WebDataset shards {paths[0]} .. {paths[-1]} ({len(paths)})"
    else:
        from .open import open_source

        src = open_source(source, on_error=on_error)
        samples, total, channels, classes = _from_source(src), len(src), src.channels, src.classes
        encoding = "file" if src.files else "raw"
        described = f"{type(src).__name__} {source}"
    skipped: list[tuple[str, str]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        written = _write(tmp, samples, total, on_error, skipped, chunk_bytes, progress)
        _finish(tmp, written, classes, channels, encoding, described, skipped)
        if out.exists():  # overwrite: the old dataset goes only now that the new one is complete
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return LitdataResult(out, written["count"], skipped, time.perf_counter() - start, written["bytes"])


def _from_source(src: Source) -> Iterator[Sample | tuple[str, str]]:
    """Samples of an augpipe source, or (name, reason) for one that cannot be stored."""
    if src.files:
        sizes, kinds, _ = src.headers()
    for i in range(len(src)):
        label = int(src.labels[i])
        if not src.files:
            image = src.load(i)  # arrays, .beton: raw pixels (a DecodeError propagates, named)
            yield Sample(src.describe(i), image.numpy().tobytes(), label, image.shape[1], image.shape[2], KIND_OTHER)
            continue
        path, kind = src.path(i), int(kinds[i])
        data = Path(path).read_bytes()
        reason = _unusable(kind, lambda: src.load(i))
        if reason:
            yield path, reason
            continue
        h, w = (int(v) for v in sizes[i])
        yield Sample(path, data, label, h, w, kind)


def _from_shards(paths) -> Iterator[Sample | tuple[str, str]]:
    from .webdataset import members

    for m in members(paths):
        if m.problem:
            yield m.name, m.problem
            continue
        h, w, kind = probe(m.data)
        reason = _unusable(kind, lambda: _decode(m.data))
        yield (m.name, reason) if reason else Sample(m.name, m.data, m.label, h, w, kind)


def _unusable(kind: int, decode) -> str | None:
    """Why an image cannot be stored, or None. JPEGs are checked by their header and end-of-image
    marker (as the folder path does); other formats are decoded once."""
    if kind == KIND_JPEG:
        return None
    if kind == KIND_TRUNCATED:
        return "the JPEG ends without its end-of-image marker (truncated)"
    if kind != KIND_OTHER:
        return "not an image PIL can read"
    try:
        decode()
    except Exception as err:  # noqa: BLE001 - reported with the sample's name
        return f"does not decode ({type(err).__name__}: {err})"
    return None


def _decode(data: bytes) -> None:
    import torch
    from torchvision.io import ImageReadMode, decode_image

    decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def _write(tmp: Path, samples, total, on_error: str, skipped: list, chunk_bytes, progress: bool) -> dict:
    from tqdm import tqdm

    from .litdata import _litdata

    _litdata()
    from litdata.streaming.writer import BinaryWriter

    tmp.mkdir(parents=True)
    writer = BinaryWriter(cache_dir=str(tmp), chunk_bytes=chunk_bytes)
    labels, sizes, kinds, nbytes = [], [], [], []
    digest = hashlib.sha1(FORMAT.encode())
    with warnings.catch_warnings(), tqdm(total=total, desc="converting to litdata", unit="img", delay=1.0,
                                         disable=not progress) as bar:
        warnings.filterwarnings("ignore", message="An item was larger than the target chunk size")
        for s in samples:
            bar.update(1)
            if isinstance(s, tuple):
                if on_error == "raise":
                    raise DecodeError(s[0], s[1] + "; pass on_error='skip' (--on-error skip) to leave it out")
                skipped.append(s)
                continue
            i = len(labels)
            writer[i] = {"image": s.data, "label": s.label, "index": i, "height": s.height, "width": s.width,
                         "key": s.key.encode()}  # bytes: litdata would read a str that names a file as that file
            labels.append(s.label), sizes.append((s.height, s.width)), kinds.append(s.kind)
            nbytes.append(len(s.data))
            digest.update(s.data), digest.update(np.int64(s.label).tobytes())
    if not labels:
        raise ValueError("no sample could be converted" + (f" ({len(skipped)} skipped)" if skipped else ""))
    writer.done()
    writer.merge()
    tables = {"labels": np.array(labels, np.int64), "sizes": np.array(sizes, np.int64).reshape(-1, 2),
              "kinds": np.array(kinds, np.int8), "nbytes": np.array(nbytes, np.int64)}
    for name, table in tables.items():
        np.save(table_path(tmp, name), table)
    uniform = (tables["sizes"] == tables["sizes"][0]).all()
    return {"count": len(labels), "bytes": int(tables["nbytes"].sum()), "fingerprint": digest.hexdigest()[:16],
            "max_label": int(tables["labels"].max()),
            "size": tables["sizes"][0].tolist() if uniform else None}


def _finish(tmp: Path, written: dict, classes, channels: int, encoding: str, described: str,
            skipped: list) -> None:
    classes = classes or [str(c) for c in range(written["max_label"] + 1)]  # tar shards: the labels' names
    meta = {"format": FORMAT, "version": VERSION, "count": written["count"], "classes": list(classes),
            "channels": channels, "encoding": encoding, "fingerprint": written["fingerprint"],
            # arrays and uniform .betons keep their fixed shape (the Loader's CIFAR-style default crop)
            "fixed_shape": [channels, *written["size"]] if encoding == "raw" and written["size"] else None,
            "converted_from": described, "skipped": [list(s) for s in skipped]}
    (tmp / META).write_text(json.dumps(meta, indent=1))  # last: its presence marks a finished dataset
