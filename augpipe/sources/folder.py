"""`FolderSource`: an ImageFolder-style tree, decoded one file at a time with
torchvision's libjpeg-turbo / libpng decoders."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .base import DecodeError, Source
from .headers import KIND_JPEG, KIND_OTHER, KIND_TRUNCATED, KIND_UNREADABLE  # noqa: F401  (FolderSource.headers())

_TORCHVISION_PREFIX = re.compile(r"^.*\.cpp:\d+, ")  # "decode_jpeg, /src/.../decode_jpeg.cpp:171, "


class FolderSource(Source):
    """An ImageFolder-style tree: root/<class>/<image>, decoded on load.

    Classes are the sorted non-hidden subfolder names; files (searched
    recursively inside each class folder) are sorted by path. Hidden files and
    folders (.DS_Store, .ipynb_checkpoints) are ignored.

    Args:
        root: The folder holding one subfolder per class.
        on_error: What to do with zero-byte files found while scanning:
            "raise" a DecodeError, or "skip" them and list them in .skipped.
            Files that fail to decode later always raise DecodeError.
        extensions: Image file suffixes, compared case-insensitively.

    Raises:
        FileNotFoundError: the folder is missing, or a class folder holds no
            image file (torchvision's ImageFolder refuses it too).
    """

    def __init__(self, root: str | os.PathLike, on_error: str = "raise",
                 extensions: Sequence[str] = (".jpg", ".jpeg", ".png")):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a folder; expected root/<class>/<image>")
        exts = {("." + e.lstrip(".")).lower() for e in extensions}
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not self.classes:
            raise ValueError(f"{self.root} has no class subfolders; expected root/<class>/<image> "
                             f"with images ending in {sorted(exts)}")
        self.skipped = []
        paths, labels, empty, stats = [], [], [], []
        for label, name in enumerate(self.classes):
            found = _list_images(str(self.root / name), exts)
            if not found:
                empty.append(name)
            for path, st in found:
                if st.st_size == 0:
                    if on_error == "raise":
                        raise DecodeError(path, "file is empty (0 bytes); pass on_error='skip' to leave it out")
                    self.skipped.append((str(path), "file is empty (0 bytes)"))
                    continue
                paths.append(str(path))
                labels.append(label)
                stats.append((st.st_size, st.st_mtime_ns))
        if not paths:
            raise ValueError(f"{self.root} has class folders {self.classes[:5]} but no usable image files "
                             f"ending in {sorted(exts)} (case-insensitive); skipped {len(self.skipped)}")
        if empty:  # as torchvision's ImageFolder: an empty class would shift no label but could never be seen
            raise FileNotFoundError(f"{self.root}: class folder(s) {empty[:5]} hold no image files ending in "
                                    f"{sorted(exts)} (case-insensitive); remove them or add images")
        # A numpy string array instead of a list of str: DataLoader workers
        # fork-share it without refcount writes dirtying every page.
        self._paths = np.array(paths)
        self._stats = np.array(stats, np.int64).reshape(-1, 2)  # (bytes, mtime ns): the header cache's key
        self._headers = None
        self.labels = np.array(labels, dtype=np.int64)
        self.labels.flags.writeable = False

    files = True
    encoded = True

    def describe(self, index: int) -> str:
        return str(self._paths[index])

    def path(self, index: int) -> str:
        """Sample `index`'s image file."""
        return str(self._paths[self._check_index(index)])

    def read_into(self, index: int, out: memoryview) -> None:
        """Reads sample `index`'s file into `out` (its `headers()` byte count)."""
        with open(self._paths[index], "rb", buffering=0) as f:
            f.readinto(out)

    def sizes(self) -> np.ndarray:
        """(N, 2) (height, width) from the file headers (no decoding),
        read once and kept. A header that cannot be read gives (0, 0); `load`
        names the file when it is used."""
        return self.headers()[0]

    def headers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What one pass over the file headers tells, read once per folder
        (cached on disk, see `augpipe.sources.headers`) and kept:
        sizes (N, 2) int64 (height, width; 0 if unreadable), kinds (N,) int8
        (KIND_* of augpipe.sources.headers) and file sizes (N,) int64 in bytes.

        A JPEG (greyscale or YCbCr) is KIND_JPEG only if its last two bytes
        are the end-of-image marker; one without it is KIND_TRUNCATED: cut
        short, which decoding only the rows a crop needs would not notice."""
        if self._headers is None:
            from .headers import cached_scan

            info, kinds, _ = cached_scan(self.root, self._paths.tolist(), self._stats[:, 0], self._stats[:, 1])
            self._headers = info[:, :2].copy(), kinds, info[:, 2].copy()
        return self._headers

    def _digest(self, h) -> None:
        for p in self._paths:  # relative paths and sizes: the same folder copied elsewhere keeps its key
            h.update(f"{os.path.relpath(str(p), self.root)}\0{os.path.getsize(str(p))}\n".encode())

    def load(self, index: int) -> torch.Tensor:
        # imported on use: torchvision costs ~110 MB, which the fused JPEG path does not need
        from torchvision.io import ImageReadMode, decode_image
        from torchvision.transforms.v2 import functional as F

        path = str(self._paths[self._check_index(index)])
        data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
        if data.numel() == 0:
            raise DecodeError(path, "file is empty (0 bytes)")
        try:
            # mode=RGB also converts grey, RGBA (alpha dropped), palette and
            # Adobe CMYK JPEGs; verified against PIL in tests/test_data.py.
            # Truncated JPEGs raise "Image is incomplete or truncated" here.
            image = decode_image(data, mode=ImageReadMode.RGB)
        except RuntimeError as e:
            raise DecodeError(path, _TORCHVISION_PREFIX.sub("", str(e))) from None
        if image.ndim == 4:  # animated GIF/WebP, if the caller allowed them: first frame
            image = image[0]
        if image.dtype != torch.uint8:  # 16-bit PNGs decode to uint16
            image = F.to_dtype(image, torch.uint8, scale=True)
        return image


def _list_images(folder: str, exts: set[str]) -> list[tuple[str, os.stat_result]]:
    """(path, stat) of the image files below `folder`, hidden entries left out,
    in the order of sorted(Path.rglob) (the dataset's sample order), from one
    os.scandir pass: as rglob, real subfolders are entered and symlinks to
    files count. Several times faster than rglob + Path.stat at 10^5 files."""
    out, stack, nested = [], [folder], False
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except PermissionError:  # as rglob: an unreadable subfolder is passed over
            continue
        for e in entries:
            name = e.name
            if name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
                nested = True
            elif name[name.rfind("."):].lower() in exts and e.is_file():  # the suffix (no leading-dot names here)
                out.append((e.path, e.stat()))
    # PurePosixPath ordering compares parts; in a flat folder that is the plain string order
    out.sort(key=(lambda item: item[0].split(os.sep)) if nested else (lambda item: item[0]))
    return out
