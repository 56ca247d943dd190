"""Benchmark data, built locally and reproducibly (nothing is downloaded).

- `fashion_32(channels)`: Fashion-MNIST's training set resized once to 32x32.
- `imagenet_like(root)`: an ImageNet-like JPEG folder made from the real
  photographs scikit-image ships: seeded random crops rescaled to a shorter
  side of 350-500 px, saved at quality 90, in 10 class folders.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

# Colour photographs bundled with scikit-image (no network needed).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "stereo_motorcycle", "cat", "camera")
DEFAULT_ROOT = Path(os.environ.get("AUGPIPE_BENCH_DATA", Path.home() / ".cache" / "augpipe" / "imagenet-like"))


def fashion_32(channels: int = 3):
    from ...sources import FashionMNIST

    return FashionMNIST("train", channels=channels).resized((32, 32))


def _photos() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in PHOTOS:
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # a sample that would need a download: skip it
            continue
        img = img[0] if isinstance(img, tuple) else img
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    if len(out) < 3:
        raise RuntimeError("scikit-image's bundled sample photographs are missing; pip install scikit-image")
    return out


def imagenet_like(root=DEFAULT_ROOT, files: int = 2000, classes: int = 10, seed: int = 0) -> Path:
    """Build (once) and return the JPEG folder. A finished build is marked by
    `manifest.json`; an interrupted one is rebuilt from scratch."""
    from PIL import Image
    from tqdm import tqdm

    root = Path(root)
    manifest = root / "manifest.json"
    spec = {"files": files, "classes": classes, "seed": seed, "photos": list(PHOTOS), "quality": 90}
    if manifest.exists() and json.loads(manifest.read_text()).get("spec") == spec:
        return root
    photos = _photos()
    rng = np.random.default_rng(seed)
    for k in range(classes):
        (root / f"class{k:02d}").mkdir(parents=True, exist_ok=True)
    sizes = []
    for i in tqdm(range(files), desc=f"building {root}", unit="jpeg", file=sys.stderr):
        k = i % classes
        photo = photos[k % len(photos)]
        h, w = photo.shape[:2]
        area = rng.uniform(0.4, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch, cw = min(h, int(np.sqrt(area / aspect))), min(w, int(np.sqrt(area * aspect)))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(photo[top:top + ch, left:left + cw])
        short = rng.integers(350, 501)
        scale = short / min(ch, cw)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
        path = root / f"class{k:02d}" / f"{i:05d}.jpg"
        tmp = path.with_suffix(".tmp")
        crop.save(tmp, format="JPEG", quality=90)
        tmp.replace(path)
        sizes.append(crop.size)
    mean_w, mean_h = np.mean(sizes, axis=0)
    manifest.write_text(json.dumps({"spec": spec, "mean_size": [mean_w, mean_h]}, indent=1))
    return root
