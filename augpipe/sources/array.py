"""In-memory sources: every image in one shared-memory NCHW tensor, so a batch
is a single vectorised gather. `ArraySource` for (images, labels) pairs,
`FashionMNIST` from Debian's dataset-fashion-mnist package."""
from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .base import Source, check_labels

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_RESIZE_CHUNK = 4096  # images per resize call: bounds the float temporaries


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
        self._setup(tensor, check_labels(labels, len(tensor)), classes, name)

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
        from torchvision.transforms.v2 import functional as F  # imported on use: torchvision costs ~110 MB

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
        from torchvision.transforms.v2 import functional as F
        out = torch.empty((len(self), 1, *self._images.shape[2:]), dtype=torch.uint8)
        for start in range(0, len(self), _RESIZE_CHUNK):
            chunk = self._images[start:start + _RESIZE_CHUNK]
            out[start:start + len(chunk)] = F.rgb_to_grayscale(chunk, num_output_channels=1)
        return self._derived(out)


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
    return images.share_memory_(), check_labels(np.frombuffer(raw, dtype=np.uint8, offset=8), n)


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
