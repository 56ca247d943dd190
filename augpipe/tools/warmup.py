"""`augpipe warmup`: compile and cache every kernel the README's commands use,
ahead of time (for container images, or right after an install), so that the
first real run starts in seconds. `make setup` runs it.

It builds one Loader per installed backend on a small in-memory array and on a
small JPEG folder (made from scikit-image's bundled photographs when
scikit-image is installed, else from a generated gradient image) and takes
one batch from each; later processes load the compiled code from numba's
on-disk cache.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _folder(root: Path) -> Path:
    from PIL import Image

    try:
        from skimage import data as samples

        photos = [samples.astronaut(), samples.chelsea(), samples.coffee()]
    except ImportError:
        y, x = np.mgrid[0:300, 0:400]
        photos = [np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)]
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i, photo in enumerate(photos):
            Image.fromarray(photo).save(root / f"class{c}" / f"{i}.jpg", quality=90)
    return root


def warmup(backends=("torch", "dali", "ffcv"), say=print) -> dict[str, float]:
    """{row: seconds} for each Loader built and read once; missing backends are skipped (and said)."""
    import os

    from ..engine.firstuse import ENV
    from ..loader import Loader

    before = os.environ.get(ENV)
    os.environ[ENV] = "wait"  # compile here, in the foreground: no first-use background process
    try:
        return _warmup(backends, say, Loader)
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def _warmup(backends, say, Loader) -> dict[str, float]:
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8), np.arange(64) % 2)
    grey = (rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8), np.arange(64) % 2)
    done = {}
    with tempfile.TemporaryDirectory(prefix="augpipe-warmup-") as tmp:
        folder = _folder(Path(tmp) / "photos")
        for backend in backends:
            for name, source, size in (("arrays", arrays, None), ("grey arrays", grey, None),
                                       ("JPEG folder", folder, 64)):
                start = time.perf_counter()
                try:
                    loader = Loader(source, batch_size=4, magnitude=9, backend=backend, num_workers=2,
                                       size=size)
                    next(iter(loader))
                except ImportError as err:
                    say(f"  {backend}: skipped ({err})")
                    break
                done[f"{backend}, {name}"] = time.perf_counter() - start
                say(f"  {backend}, {name}: {done[f'{backend}, {name}']:.1f} s")
        # float output (the driver's) and the mixing/erasing kernels, uint8 and float (backend-independent)
        from ..core.mixing import CutMix, MixUp, RandomErasing

        for output in ("float", "uint8"):
            start = time.perf_counter()
            loader = Loader(arrays, batch_size=8, magnitude=9, num_workers=0, output=output,
                            mix=CutMix(1.0) | MixUp(0.8), erase=RandomErasing(0.5))
            next(iter(loader))
            next(iter(Loader(arrays, batch_size=8, num_workers=0, output=output)))
            done[f"mixing, {output}"] = time.perf_counter() - start
            say(f"  mixing and erasing, {output}: {done[f'mixing, {output}']:.1f} s")
        # what a first use compiles in the background, the torch executor's kernels included (CUDA batches use them)
        from ..engine.firstuse import compile_kernels

        start = time.perf_counter()
        for parallel in (False, True):
            compile_kernels(parallel, normalize=True)
        done["torch executor"] = time.perf_counter() - start
        say(f"  torch executor and first-use kernels: {done['torch executor']:.1f} s")
    return done


def add_parser(sub) -> None:
    p = sub.add_parser("warmup", help="compile and cache augpipe's kernels now (once per install)")
    p.add_argument("--backends", default="torch,dali,ffcv", help="comma-separated (default torch,dali,ffcv)")
    p.set_defaults(func=lambda a: _main(a.backends.split(",")))


def _main(backends) -> None:
    start = time.perf_counter()
    print("augpipe warmup: compiling and caching the kernels of every backend")
    warmup([b.strip() for b in backends if b.strip()])
    print(f"augpipe warmup: done in {time.perf_counter() - start:.0f} s; later processes start from the cache")
