"""`.beton` files (FFCV's format) as augpipe sources.

A .beton written by `augpipe convert` holds three fields: "image" (RGB,
JPEG or raw), "label" (int) and "index" (the sample's index in the source it
was converted from). `BetonSource` reads labels and image sizes from the
file's metadata without decoding anything, and decodes single images with
augpipe's libjpeg-turbo decoder (kernels/jpeg.py, accurate IDCT), the one the
FFCV backend uses, so every backend sees the very pixels the FFCV backend
decodes.

Needs the optional `ffcv` package (imported on first use).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import ffcv_import
from .base import Source

FIELDS = ("image", "label", "index")
_JPG, _RAW = 0, 1


def _reader(path: str):
    try:
        ffcv_import.load()
        from ffcv.reader import Reader
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"reading {path} needs FFCV ({err}); pip install 'augpipe[ffcv]' "
                          "(needs apt-get install pkg-config libopencv-dev libturbojpeg0-dev)") from err
    return Reader(path)


class BetonSource(Source):
    """The samples of a .beton file.

    Attributes:
        path: the file.
        labels: int64 (N,) from the "label" field.
        source_index: int64 (N,) the "index" field (position in the original
            source; differs from 0..N-1 when corrupt files were skipped).
        heights, widths: stored image sizes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f".beton file {self.path} does not exist")
        try:
            reader = _reader(str(self.path))
        except ImportError:
            raise
        except Exception as err:  # FFCV's reader fails with IndexError & co on a foreign file
            raise ValueError(f"{self.path} is not a readable FFCV .beton file ({type(err).__name__}: {err})") from err
        missing = [f for f in ("image", "label") if f not in reader.handlers]
        if missing:
            raise ValueError(f"{self.path} has fields {list(reader.handlers)}; augpipe needs 'image' and 'label' "
                             "(write it with `augpipe convert`)")
        names = list(reader.handlers)
        meta = {name: reader.metadata[f"f{i}"] for i, name in enumerate(names)}  # fields are stored as f0, f1, ...
        self.labels = np.asarray(meta["label"], dtype=np.int64).copy()
        self.labels.flags.writeable = False
        self.source_index = (np.asarray(meta["index"], dtype=np.int64).copy() if "index" in meta
                             else np.arange(len(self.labels), dtype=np.int64))
        self.heights = np.asarray(meta["image"]["height"], dtype=np.int64).copy()
        self.widths = np.asarray(meta["image"]["width"], dtype=np.int64).copy()
        self._modes = np.asarray(meta["image"]["mode"]).copy()
        self._ptrs = np.asarray(meta["image"]["data_ptr"], dtype=np.uint64).copy()
        table = reader.alloc_table
        order = np.argsort(table["ptr"])
        self._alloc_ptrs = np.asarray(table["ptr"], dtype=np.uint64)[order]
        self._alloc_sizes = np.asarray(table["size"], dtype=np.uint64)[order]
        n_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.classes = [str(i) for i in range(n_classes)]
        self.skipped = []
        self.beton = self.path
        self._file = None

    def sizes(self) -> np.ndarray:
        return np.stack([self.heights, self.widths], axis=1)

    def _digest(self, h) -> None:
        for a in (self.heights, self.widths, self._modes, self._alloc_sizes):
            h.update(np.ascontiguousarray(a).tobytes())

    @property
    def fixed_shape(self) -> tuple[int, int, int] | None:
        if len(self.heights) and (self.heights == self.heights[0]).all() and (self.widths == self.widths[0]).all():
            return (3, int(self.heights[0]), int(self.widths[0]))
        return None

    def describe(self, index: int) -> str:
        return f"{self.path}[{index}]"

    def _bytes(self, index: int) -> np.ndarray:
        if self._file is None:
            self._file = np.memmap(self.path, dtype=np.uint8, mode="r")
        ptr = self._ptrs[index]
        size = self._alloc_sizes[np.searchsorted(self._alloc_ptrs, ptr)]
        return np.asarray(self._file[int(ptr):int(ptr) + int(size)])

    def load_hwc(self, index: int) -> np.ndarray:
        """Sample `index` as a fresh uint8 (H, W, 3) array (JPEGs decoded with
        libjpeg-turbo's accurate IDCT, as the FFCV backend decodes them)."""
        index = self._check_index(index)
        h, w = int(self.heights[index]), int(self.widths[index])
        data = np.ascontiguousarray(self._bytes(index))
        if self._modes[index] == _RAW:
            return data[: h * w * 3].reshape(h, w, 3).copy()
        from ..kernels.jpeg import ERRORS, decode_box

        out = np.empty(h * w * 3, np.uint8)
        region = np.zeros(2, np.int64)
        rc = decode_box(data, 0, 0, h, w, 1, 0, out, region, 3)
        if rc != 0 or region[1] != w:
            from .base import DecodeError

            raise DecodeError(self.describe(index), f"libjpeg-turbo: {ERRORS.get(rc, f'error {rc}')}")
        return out.reshape(h, w, 3)

    def load(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.load_hwc(index)).permute(2, 0, 1).contiguous()

    def get_batch(self, indices: np.ndarray) -> torch.Tensor:
        if self.fixed_shape is None:
            return super().get_batch(indices)
        return torch.stack([self.load(int(i)) for i in np.asarray(indices)]) if len(indices) else \
            torch.empty((0, *self.fixed_shape), dtype=torch.uint8)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # memmaps are reopened in each worker
        return state
