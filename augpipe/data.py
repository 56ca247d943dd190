"""Image sources: where uint8 images and their labels come from.

A source only reads and decodes; it never augments. Array-backed sources
(`ArraySource`, `FashionMNIST`) hold every image in one shared-memory NCHW
tensor so batches are a single vectorised gather; `FolderSource` decodes one
file at a time with torchvision's libjpeg-turbo / libpng decoders.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_RESIZE_CHUNK = 4096  # images per resize call: bounds the float temporaries


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


def _to_shared_nchw(images) -> torch.Tensor:
    """Validates an image array and copies it into a new shared-memory NCHW uint8 tensor."""
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        raise TypeError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
    if images.dtype not in (np.uint8, torch.uint8):
        raise TypeError(
            f"images must be uint8 (0..255), got dtype {images.dtype}; convert floats in [0, 1] with "
            "(x * 255).round().clip(0, 255).astype(np.uint8) for numpy, or "
            "torchvision.transforms.v2.functional.to_dtype(x, torch.uint8, scale=True) for torch")
    shape = tuple(images.shape)
    if len(shape) == 3:
        layout = "NHW"
    elif len(shape) == 4 and shape[1] in (1, 3):
        layout = "NCHW"  # checked first: (N, 3, H, 3) is read as NCHW
    elif len(shape) == 4 and shape[-1] in (1, 3):
        layout = "NHWC"
    else:
        raise ValueError(f"images of shape {shape} are not (N,H,W), (N,C,H,W) or (N,H,W,C) with C in {{1, 3}}")
    if 0 in shape:
        raise ValueError(f"images array of shape {shape} is empty")
    if layout == "NHW":
        images = images[:, None]
    elif layout == "NHWC":
        images = images.transpose(0, 3, 1, 2) if isinstance(images, np.ndarray) else images.permute(0, 3, 1, 2)
    # Copy, never alias: the caller may keep writing to its array, and the copy
    # lands straight in shared memory so DataLoader workers map it, not pickle it.
    out = torch.empty(tuple(images.shape), dtype=torch.uint8).share_memory_()
    if isinstance(images, np.ndarray):
        out.numpy()[...] = images  # numpy-side copy: no warning for read-only arrays
    else:
        out.copy_(images)
    return out


def _check_labels(labels, n: int) -> np.ndarray:
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


class ArraySource(Source):
    """Images held in memory as one contiguous shared uint8 NCHW tensor (in_memory).

    Args:
        images: uint8 numpy array or torch tensor shaped (N,H,W), (N,C,H,W) or
            (N,H,W,C), C in {1, 3}. A 4-D array with shape[1] in (1, 3) is NCHW.
            The data is copied; later changes to `images` do not reach the source.
        labels: N non-negative integers.
        name: Used by describe(), e.g. "array[12]".
        classes: Class names; defaults to "0".."max label".
    """

    in_memory = True

    def __init__(self, images, labels, name: str = "array", classes: Sequence[str] | None = None):
        tensor = _to_shared_nchw(images)
        self._setup(tensor, _check_labels(labels, len(tensor)), classes, name)

    def _setup(self, images: torch.Tensor, labels: np.ndarray, classes, name: str) -> None:
        n_classes = int(labels.max()) + 1
        classes = [str(i) for i in range(n_classes)] if classes is None else list(classes)
        if len(classes) < n_classes:
            raise ValueError(f"{len(classes)} class names given but labels go up to {n_classes - 1}")
        self._images, self.labels, self.classes, self.name = images, labels, classes, name
        self.skipped = []

    def _derived(self, images: torch.Tensor) -> ArraySource:
        # Bypasses __init__: `images` is already a fresh validated tensor.
        new = ArraySource.__new__(ArraySource)
        new._setup(images.share_memory_(), self.labels, self.classes, self.name)
        return new

    @property
    def fixed_shape(self) -> tuple[int, int, int]:
        return tuple(self._images.shape[1:])

    @property
    def channels(self) -> int:
        return int(self._images.shape[1])

    def _digest(self, h) -> None:
        h.update(str(tuple(self._images.shape)).encode())
        h.update(memoryview(self._images.contiguous().numpy()).cast("B"))

    @property
    def images(self) -> torch.Tensor:
        """All images, uint8 NCHW, in shared memory. Read-only by convention."""
        return self._images

    def load(self, index: int) -> torch.Tensor:
        # clone: callers may augment in place, and the source must stay pristine.
        return self._images[self._check_index(index)].clone()

    def get_batch(self, indices: np.ndarray) -> torch.Tensor:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise TypeError(f"indices must be a 1-D integer array, got dtype {idx.dtype} shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][0]
            raise IndexError(f"index {bad} out of range for {self.name} of {len(self)} samples")
        return self._images.index_select(0, torch.from_numpy(idx.astype(np.int64)))

    def describe(self, index: int) -> str:
        return f"{self.name}[{index}]"

    def resized(self, size: tuple[int, int]) -> ArraySource:
        """Returns a new source with every image resized once to `size` = (H, W).

        Bilinear with antialiasing, on uint8 tensors exactly as
        torchvision.transforms.v2.functional.resize does it per image.
        """
        h, w = (int(s) for s in size)
        if h <= 0 or w <= 0:
            raise ValueError(f"size must be two positive ints (H, W), got {size}")
        out = torch.empty((len(self), self._images.shape[1], h, w), dtype=torch.uint8)
        for start in range(0, len(self), _RESIZE_CHUNK):
            chunk = self._images[start:start + _RESIZE_CHUNK]
            out[start:start + len(chunk)] = F.resize(
                chunk, [h, w], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        return self._derived(out)

    def with_channels(self, c: int) -> ArraySource:
        """Returns a source with `c` channels: 1->3 repeats grey, 3->1 uses rgb_to_grayscale."""
        if c not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {c}")
        have = self._images.shape[1]
        if c == have:
            return self  # sources are immutable, so sharing is safe
        if c == 3:
            return self._derived(self._images.expand(-1, 3, -1, -1).contiguous())
        out = torch.empty((len(self), 1, *self._images.shape[2:]), dtype=torch.uint8)
        for start in range(0, len(self), _RESIZE_CHUNK):
            chunk = self._images[start:start + _RESIZE_CHUNK]
            out[start:start + len(chunk)] = F.rgb_to_grayscale(chunk, num_output_channels=1)
        return self._derived(out)


_TORCHVISION_PREFIX = re.compile(r"^.*\.cpp:\d+, ")  # "decode_jpeg, /src/.../decode_jpeg.cpp:171, "


KIND_UNREADABLE, KIND_JPEG, KIND_OTHER, KIND_TRUNCATED = 0, 1, 2, 3  # FolderSource.headers()


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
        paths, labels = [], []
        for label, name in enumerate(self.classes):
            found = [p for p in (self.root / name).rglob("*")
                     if p.suffix.lower() in exts and p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(self.root).parts)]
            for path in sorted(found):
                if path.stat().st_size == 0:
                    if on_error == "raise":
                        raise DecodeError(path, "file is empty (0 bytes); pass on_error='skip' to leave it out")
                    self.skipped.append((str(path), "file is empty (0 bytes)"))
                    continue
                paths.append(str(path))
                labels.append(label)
        if not paths:
            raise ValueError(f"{self.root} has class folders {self.classes[:5]} but no usable image files "
                             f"ending in {sorted(exts)} (case-insensitive); skipped {len(self.skipped)}")
        # A numpy string array instead of a list of str: DataLoader workers
        # fork-share it without refcount writes dirtying every page.
        self._paths = np.array(paths)
        self._headers = None
        self.labels = np.array(labels, dtype=np.int64)
        self.labels.flags.writeable = False

    files = True

    def describe(self, index: int) -> str:
        return str(self._paths[index])

    def path(self, index: int) -> str:
        """Sample `index`'s image file."""
        return str(self._paths[self._check_index(index)])

    def sizes(self) -> np.ndarray:
        """(N, 2) (height, width) from the file headers (PIL, no decoding),
        read once and kept. A header PIL cannot read gives (0, 0); `load`
        names the file when it is used."""
        return self.headers()[0]

    def headers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What one pass over the file headers tells, read once and kept:
        sizes (N, 2) int64 (height, width; 0 if unreadable), kinds (N,) int8
        (KIND_* below) and file sizes (N,) int64 in bytes.

        A JPEG (greyscale or YCbCr) is KIND_JPEG only if its last two bytes
        are the end-of-image marker; one without it is KIND_TRUNCATED: cut
        short, which decoding only the rows a crop needs would not notice."""
        if self._headers is None:
            from PIL import Image

            n = len(self)
            sizes, kinds, nbytes = np.zeros((n, 2), np.int64), np.zeros(n, np.int8), np.zeros(n, np.int64)
            for i, path in enumerate(self._paths):
                path = str(path)
                try:
                    with open(path, "rb") as f, Image.open(f) as im:
                        sizes[i] = im.size[1], im.size[0]
                        jpeg = im.format == "JPEG" and im.mode in ("RGB", "L")
                        f.seek(-2, os.SEEK_END)
                        tail = f.read(2)
                        nbytes[i] = f.tell()
                    kinds[i] = KIND_OTHER if not jpeg else KIND_JPEG if tail == b"\xff\xd9" else KIND_TRUNCATED
                except Exception:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
                    kinds[i] = KIND_UNREADABLE
            self._headers = sizes, kinds, nbytes
        return self._headers

    def _digest(self, h) -> None:
        for p in self._paths:  # relative paths and sizes: the same folder copied elsewhere keeps its key
            h.update(f"{os.path.relpath(str(p), self.root)}\0{os.path.getsize(str(p))}\n".encode())

    def load(self, index: int) -> torch.Tensor:
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


@functools.lru_cache(maxsize=None)
def _read_fashion_mnist(root: str, split: str) -> tuple[torch.Tensor, np.ndarray]:
    """Parses one split's idx files once per process; returns (N,1,28,28) shared tensor and labels."""
    prefix = {"train": "train", "test": "t10k"}[split]
    img_path = Path(root) / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = Path(root) / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (img_path, lbl_path):
        if not path.is_file():
            raise FileNotFoundError(f"Fashion-MNIST file {path} not found; install it with "
                                    "`apt-get install dataset-fashion-mnist` or pass root=")
    with gzip.open(img_path) as f:
        raw = f.read()
    # idx3 header: magic 0x00000803, then N, H, W as big-endian int32.
    magic, n, h, w = np.frombuffer(raw, dtype=">i4", count=4)
    if magic != 0x803 or len(raw) != 16 + n * h * w:
        raise ValueError(f"{img_path} is not a valid idx3 image file (magic {magic:#x}, {len(raw)} bytes)")
    images = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, h, w).copy())
    with gzip.open(lbl_path) as f:
        raw = f.read()
    magic, n_labels = np.frombuffer(raw, dtype=">i4", count=2)
    if magic != 0x801 or n_labels != n:
        raise ValueError(f"{lbl_path} is not a valid idx1 label file for {n} images")
    return images.share_memory_(), _check_labels(np.frombuffer(raw, dtype=np.uint8, offset=8), n)


class FashionMNIST(ArraySource):
    """Fashion-MNIST from Debian's dataset-fashion-mnist package (28x28 grey).

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        channels: 1 for grey, 3 to repeat it into RGB.
        root: Folder holding the four *-ubyte.gz files.
    """

    def __init__(self, split: str = "train", channels: int = 1, root: str | os.PathLike = FASHION_MNIST_ROOT):
        if split not in ("train", "test"):
            raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        images, labels = _read_fashion_mnist(str(root), split)
        if channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous().share_memory_()
        # The cached tensor is shared, not copied: sources never write to it.
        self._setup(images, labels, FASHION_MNIST_CLASSES, f"fashion-mnist {split}")
        self.split = split


def open_source(source, on_error: str = "raise") -> Source:
    """Turns what the user passed into a Source.

    Args:
        source: A Source (returned as is); an (images, labels) pair; "fashion-mnist",
            "fashion-mnist:train" or "fashion-mnist:test"; a path to an image folder; or a
            .beton file (`augpipe convert`; read with FFCV).
        on_error: Passed to FolderSource.

    Raises:
        ValueError: An existing path that is neither a folder nor a .beton file.
        FileNotFoundError: A path that does not exist.
        TypeError: Anything else.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (tuple, list)) and len(source) == 2:
        return ArraySource(*source)
    if isinstance(source, str) and (source == "fashion-mnist" or source.startswith("fashion-mnist:")):
        return FashionMNIST(split=source.partition(":")[2] or "train")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source path {path} does not exist")
        if path.suffix.lower() == ".beton":
            from .beton import BetonSource  # imported here: beton.py builds on this module

            return BetonSource(path)
        if not path.is_dir():
            raise ValueError(f"{path} is a file; expected a folder laid out as <root>/<class>/<image>")
        return FolderSource(path, on_error=on_error)
    raise TypeError(f"cannot open a source from {type(source).__name__}; pass a Source, an (images, labels) "
                    "pair, 'fashion-mnist[:train|:test]' or an image folder path")
