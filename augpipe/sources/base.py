"""What every source is: a finite, indexable collection of labelled uint8
images that reads and decodes, never augments; and the error a bad file raises."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch


class DecodeError(ValueError):
    """An image file could not be read as an image.

    Attributes:
        path: The offending file.
        reason: What was wrong with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str | None = None):
        if reason is None:  # rebuilt from its message, as DataLoader does when re-raising a worker's error
            super().__init__(str(path))
            self.path, self.reason = "", str(path)
            return
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot decode image {self.path}: {reason}")


class Source:
    """Base class: a finite, indexable collection of labelled uint8 images.

    A source declares what backends may rely on (they never guess from class
    or attribute names):
        in_memory: `images` holds every sample as one shared uint8 NCHW tensor
            (so `fixed_shape` is set, and `get_batch`, `resized` work).
        files: `path(i)` is sample i's encoded image file (JPEG, PNG, ...).
        encoded: `read_into(i, buf)` copies sample i's encoded image bytes
            (a file's, or a litdata item's) and `headers()` gives every
            sample's size, kind and byte count (the folder fast path).
        streaming: `order(epoch, seed, shuffle, rank, world_size,
            batch_size, drop_last)` is this rank's order, decided by the
            engine the samples live in (litdata), not by the Loader.
        beton: the FFCV .beton file holding the samples, or None.
        channels: channels of every image `load` returns (1 or 3).
    and always offers `load(i)`, `sizes()` (heights and widths without
    decoding where it can) and `fingerprint()` (a content key).
    """

    labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]]
    in_memory: bool = False
    files: bool = False
    encoded: bool = False
    streaming: bool = False
    beton: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def fixed_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) when every sample has that shape, else None."""
        return None

    @property
    def channels(self) -> int:
        """Channels of every image `load` returns."""
        return 3

    def sizes(self) -> np.ndarray:
        """(N, 2) int64 (height, width) of every sample. Default: decode them all."""
        if self.fixed_shape is not None:
            return np.tile(np.array(self.fixed_shape[1:], np.int64), (len(self), 1))
        return np.array([self.load(i).shape[-2:] for i in range(len(self))], np.int64).reshape(-1, 2)

    def fingerprint(self) -> str:
        """A key of the samples' content and labels (same data, same key), for
        caches and for checking that a difficulty table belongs to this data."""
        h = hashlib.sha1(type(self).__name__.encode())
        self._digest(h)
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def _digest(self, h) -> None:
        for i in range(len(self)):
            h.update(self.load(i).numpy().tobytes())

    def load(self, index: int) -> torch.Tensor:
        """Returns sample `index` as a fresh uint8 (C, H, W) tensor, C in {1, 3}."""
        raise NotImplementedError

    def get_batch(self, indices: np.ndarray) -> torch.Tensor:
        """Returns samples `indices` as one uint8 (B, C, H, W) tensor (fixed-shape sources only)."""
        raise TypeError(f"{type(self).__name__} has no fixed image shape; load samples one by one with load(i)")

    def describe(self, index: int) -> str:
        """Names sample `index` for error messages: a file path or e.g. "array[12]"."""
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of {len(self)} samples")
        return index


def check_labels(labels, n: int) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images; they must match one to one")
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {labels.min()} at index {int(labels.argmin())}")
    labels = labels.astype(np.int64)  # always a copy
    labels.flags.writeable = False  # shared between derived sources
    return labels
