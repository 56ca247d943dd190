"""WebDataset tar shards as an input format (for `augpipe convert --format litdata`).

A shard is a tar whose members are grouped into samples by key, WebDataset's
convention (webdataset's own `tar_file_iterator` and `group_by_keys` read
them): `<key>.jpg` (or .jpeg/.png/.webp) is the image, `<key>.cls` its
integer label. Shards are local paths, given one by one, as a brace pattern
("train-{000000..000146}.tar", expanded by `braceexpand`, WebDataset's
rule) or as a directory holding .tar files (sorted by name).

They are read once, in order, and converted: a stream of tar members has no
random access, so the order and resume guarantees come from the converted
litdata dataset (docs/streaming.md).
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
LABEL_EXTS = ("cls", "cls.txt", "label")


@dataclass
class Member:
    """One sample of a shard: its image bytes and label (None when the sample has none)."""

    shard: str
    key: str
    data: bytes | None
    label: int | None
    problem: str | None = None  # why it cannot be used, if it cannot

    @property
    def name(self) -> str:
        return f"{self.shard}:{self.key}"


def is_shards(source) -> bool:
    """True for what names WebDataset shards: a .tar path or pattern, a list of them, a folder of .tar files."""
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return all(str(s).endswith(".tar") for s in source)
    if not isinstance(source, (str, os.PathLike)):
        return False
    s = str(source)
    if s.endswith(".tar"):
        return True
    p = Path(s)
    return p.is_dir() and any(p.glob("*.tar"))  # an image folder has class folders, not tars, at its top


def shard_paths(source) -> list[Path]:
    """The shards `source` names, in order.

    Raises:
        FileNotFoundError: a shard that does not exist, or a folder without .tar files.
    """
    from braceexpand import braceexpand

    if isinstance(source, (list, tuple)):
        paths = [Path(s) for s in source]
    elif Path(source).is_dir():
        paths = sorted(Path(source).glob("*.tar"))
        if not paths:
            raise FileNotFoundError(f"{source} holds no .tar shards")
    else:
        paths = [Path(s) for s in braceexpand(str(source))]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} WebDataset shards do not exist, the first: "
                                f"{missing[0]}")
    return paths


def members(paths: list[Path]) -> Iterator[Member]:
    """Every sample of the shards, in order. A sample without an image or a readable label comes out
    with `problem` set (the caller raises or skips); a shard that is not a readable tar raises."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    for path in paths:
        try:
            with open(path, "rb") as f:
                files = (dict(m, __url__=str(path)) for m in tar_file_iterator(f))
                for sample in group_by_keys(files):
                    yield _member(str(path), sample)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(f"WebDataset shard {path} is not a readable tar ({type(err).__name__}: {err})") from err


def _member(shard: str, sample: dict) -> Member:
    key = sample["__key__"]
    image = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
    raw = next((sample[e] for e in LABEL_EXTS if e in sample), None)
    if image is None:
        return Member(shard, key, None, None, f"no image member (.{'/.'.join(IMAGE_EXTS)})")
    if raw is None:
        return Member(shard, key, image, None, f"no label member (.{'/.'.join(LABEL_EXTS)})")
    try:
        label = int(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        return Member(shard, key, image, None, f"label {raw[:20]!r} is not an integer")
    if label < 0:
        return Member(shard, key, image, None, f"label {label} is negative")
    return Member(shard, key, image, label)
