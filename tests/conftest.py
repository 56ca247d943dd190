"""Shared fixtures: real photographs (scikit-image's bundled samples) on disk.

`photo_folder` layout (3 classes x 8 files, crops 40..120 px per side, seeded):
    astronaut/00.jpg .. 05.jpg, astronaut/rgb.png, astronaut/rgba.png
    chelsea/00.jpg .. 05.jpg,   chelsea/cmyk.jpg,  chelsea/grey.jpg
    coffee/00.jpg .. 05.jpg,    coffee/palette.png, coffee/upper.JPG
JPEGs are quality 90. Sorted order within a class is the order above.
"""
from __future__ import annotations

import functools
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTO_CLASSES = ("astronaut", "chelsea", "coffee")
SPECIAL_FILES = {
    "astronaut": ("rgb.png", "rgba.png"),
    "chelsea": ("cmyk.jpg", "grey.jpg"),
    "coffee": ("palette.png", "upper.JPG"),
}


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()  # (H, W, 3) uint8, bundled with scikit-image


def _crop(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int] | None = None) -> np.ndarray:
    h, w = size if size is not None else rng.integers(40, 121, size=2)
    top = rng.integers(0, photo.shape[0] - h + 1)
    left = rng.integers(0, photo.shape[1] - w + 1)
    return np.ascontiguousarray(photo[top:top + h, left:left + w])


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _special(filename: str, crop: np.ndarray) -> bytes:
    rgb = Image.fromarray(crop)
    if filename == "rgb.png":
        return _encode(rgb, "PNG")
    if filename == "rgba.png":
        alpha = np.linspace(0, 255, crop.shape[1], dtype=np.uint8)[None].repeat(crop.shape[0], 0)
        return _encode(Image.fromarray(np.dstack([crop, alpha]), "RGBA"), "PNG")
    if filename == "cmyk.jpg":
        return _encode(rgb.convert("CMYK"), "JPEG", quality=90)
    if filename == "grey.jpg":
        return _encode(rgb.convert("L"), "JPEG", quality=90)
    if filename == "palette.png":
        return _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG")
    return _encode(rgb, "JPEG", quality=90)  # upper.JPG: case-insensitive extension


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """An ImageFolder tree of real photo crops with mixed formats; see module docstring."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1234)
    for name in PHOTO_CLASSES:
        (root / name).mkdir()
        for i in range(6):
            data = _encode(Image.fromarray(_crop(_photo(name), rng)), "JPEG", quality=90)
            (root / name / f"{i:02d}.jpg").write_bytes(data)
        for filename in SPECIAL_FILES[name]:
            (root / name / filename).write_bytes(_special(filename, _crop(_photo(name), rng)))
    return root


@pytest.fixture
def make_folder(tmp_path):
    """Factory: make_folder({"cat/a.jpg": b"...", ...}) -> a fresh root with those files."""
    counter = itertools.count()

    def make(files: dict[str, bytes]):
        root = tmp_path / f"folder{next(counter)}"
        root.mkdir()
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return root

    return make


@pytest.fixture
def jpeg_bytes():
    """Factory: jpeg_bytes(size=(H, W), seed) -> a quality-90 JPEG of a real photo crop."""

    def make(size: tuple[int, int] = (48, 64), seed: int = 0) -> bytes:
        crop = _crop(_photo("astronaut"), np.random.default_rng(seed), size)
        return _encode(Image.fromarray(crop), "JPEG", quality=90)

    return make


@pytest.fixture(scope="session")
def fmnist():
    """600 real Fashion-MNIST test images as an (images, labels) pair (read-only)."""
    from augpipe.sources import FashionMNIST

    src = FashionMNIST("test")
    idx = np.arange(600)
    return src.get_batch(idx), src.labels[idx]
