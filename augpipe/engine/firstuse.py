"""First use without the wait: batches at once while the kernels compile in the background.

The first process after an install finds numba's cache empty; compiling the
planner and the op kernels takes ~40 s on 2 cores, before the first batch.
For the torch backend, the DALI backend (whose pipeline only decodes and
crops) and the FFCV backend in the Loader's own order (its batches built from
the .beton by the torch backend's path until FFCV's stage is cached), on the
CPU with no mixing stage, nothing has to wait: the Loader starts one background process that compiles
those kernels into numba's on-disk cache (`python -m augpipe.engine.firstuse`,
once per machine and cache, logged beside the lock), and until they are there
every batch is built from their exact twins: the planner interpreted
(augpipe.kernels.interpreted), the crop as torch slicing, the ops by the torch
executor (bit-exact with the numba one), normalisation in torch (the same two
roundings), and image folders through the torchvision path (decode + resize,
the fused pass's pixels: tests/test_folder.py). Each batch checks the cache again (a few `stat` calls) and the
compiled kernels take over as soon as it holds them: the same values, faster.

`AUGPIPE_FIRST_USE=wait` restores the old behaviour (compile in the
foreground, before the first batch); `augpipe warmup` still compiles
everything ahead of time, and FFCV's own orders, DCT-scaled decoding (not
the torchvision pixels) and mixing stages compile in the foreground with
their one-line notice.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiled import cached

ENV = "AUGPIPE_FIRST_USE"  # "background" (default) or "wait"


def _kernels(parallel: bool, normalize: bool, folder_channels: int = 0, extra: str = "") -> list:
    """The numba kernels a torch- or DALI-backend batch calls (crop_flip: in-memory images only;
    render_jpeg_batch: the torch backend's image-folder pass), and a backend's own (`extra`: the name of a
    module with `first_use_kernels()`, uncompiled kernels, and `compile_for_first_use()`; by name, so that
    the engine need not import the backends above it)."""
    from ..core.dispatch import compiled
    from ..core.plan import plan_batch
    from ..kernels import mixing
    from ..kernels.crop import crop_flip

    gen = compiled()
    kernels = [plan_batch, gen.apply_ops_batch if parallel else gen.apply_ops_serial, crop_flip]
    if folder_channels:
        from .fused import render_jpeg_batch

        kernels.append(render_jpeg_batch)
    if extra:
        kernels += importlib.import_module(extra).first_use_kernels()
    return kernels + ([mixing.normalize] if normalize else [])


@dataclass
class FirstUse:
    """Picklable (worker processes get it in the BuildSpec): which kernels to wait for."""

    parallel: bool
    normalize: bool
    folder_channels: int = 0  # the fused folder pass's image channels (0: not used)
    extra: str = ""  # a backend module whose own kernels are waited for too (see _kernels)
    _ready: bool = False

    def ready(self) -> bool:
        """Whether numba's cache holds every kernel now (sticky once true)."""
        if not self._ready:
            self._ready = all(cached(k) for k in _kernels(self.parallel, self.normalize, self.folder_channels,
                                                          self.extra))
        return self._ready


def begin(parallel: bool, normalize: bool, say=None, folder_channels: int = 0, extra: str = "") -> FirstUse | None:
    """A FirstUse when the kernels are not cached yet (the background compile started, or already running
    in another process); None when they are cached or $AUGPIPE_FIRST_USE is "wait"."""
    mode = os.environ.get(ENV, "background")
    if mode not in ("background", "wait"):
        raise ValueError(f"${ENV} must be 'background' or 'wait', got {mode!r}")
    state = FirstUse(parallel, normalize, folder_channels, extra)
    if mode == "wait" or state.ready():
        return None
    log = _spawn(state)
    seconds = 60 if folder_channels or extra else 40  # 2 cores; ~30 s on a 2-core AMD EPYC
    (say or _stderr)(f"augpipe: first use: compiling augpipe's kernels once in the background (about {seconds} s on "
                     f"2 cores; log: {log}); batches start now from their exact twins (the same values, slower) "
                     f"and speed up when the compiled kernels are cached")
    return state


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _lock_paths(state: FirstUse) -> tuple[Path, Path]:
    """One lock and log per numba cache location and kernel set: processes that share a cache share a compile."""
    where = "|".join(str(getattr(getattr(k, "_cache", None), "_cache_path", ""))
                     for k in _kernels(state.parallel, state.normalize, state.folder_channels, state.extra))
    where += f"|{state.folder_channels}|{state.extra}"
    key = hashlib.sha1(where.encode()).hexdigest()[:16]
    base = Path(os.environ.get("AUGPIPE_CACHE", Path.home() / ".cache" / "augpipe")) / "first-use"
    base.mkdir(parents=True, exist_ok=True)
    return base / f"{key}.pid", base / f"{key}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _spawn(state: FirstUse) -> Path:
    """Start the background compile unless one is running for this cache; the log's path."""
    lock, log = _lock_paths(state)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                return log  # another process compiles into the same cache
            lock.unlink(missing_ok=True)  # stale: its process ended without filling the cache
            continue
        args = [sys.executable, "-m", "augpipe.engine.firstuse", "--lock", str(lock)]
        args += ["--parallel"] if state.parallel else []
        args += ["--normalize"] if state.normalize else []
        args += ["--folder-channels", str(state.folder_channels)] if state.folder_channels else []
        args += ["--extra", state.extra] if state.extra else []
        with open(log, "w") as out:  # the child keeps its own handle
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, ENV: "wait"}, start_new_session=True)
        os.write(fd, str(proc.pid).encode())
        os.close(fd)
        return log
    return log


def compile_kernels(parallel: bool, normalize: bool, folder_channels: int = 0, extra: str = "") -> None:
    """Compile (into numba's on-disk cache) what `FirstUse` waits for, with the argument types a Loader's
    batches use: every in-memory source plans, crops, augments and normalises with the same signatures, the
    folder pass (folder_channels > 0) is called with one signature per channel count."""
    import torch

    from ..core.dispatch import op_params
    from ..core.plan import make_plan
    from ..core.policy import RandAugment, RandomCrop
    from ..kernels import mixing
    from ..kernels.ops import affine_thetas
    from ..kernels.crop import crop_flip
    from .exec_cpu import apply_ops_cpu

    policy, crop = RandAugment().lower(), RandomCrop(8, padding=2)
    plan = make_plan(0, 0, np.arange(2, dtype=np.int64), 8, 8, 9.0, None, crop, policy)
    # crop_flip with reference.crop_windows's argument types (not imported from there: it imports this module)
    images = torch.empty((2, 3, 8, 8), dtype=torch.uint8)
    crop_flip(np.zeros((2, 3, 8, 8), np.uint8), np.ascontiguousarray(plan.box[:, 0]),
              np.ascontiguousarray(plan.box[:, 1]), np.ascontiguousarray(plan.flip), np.uint8(plan.fill),
              images.numpy())
    apply_ops_cpu(images, plan.ops, plan.mags, policy.space, parallel=parallel)
    if folder_channels:
        from .fused import compile_render

        compile_render(folder_channels)
    if extra:
        importlib.import_module(extra).compile_for_first_use()
    if normalize:
        mixing.normalize(images.numpy(), np.empty(images.shape, np.float32), np.ones(3, np.float32),
                         np.zeros(3, np.float32))
    # last, not waited for: the torch executor's own kernels (it uses their twins until they are cached)
    affine_thetas(*(np.zeros(2) for _ in range(7)))
    op_params(0, np.zeros(2), policy.space, 8, 8)


def _main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m augpipe.engine.firstuse", description=__doc__.split("\n")[0])
    p.add_argument("--lock", type=Path, help="remove this lock file when done")
    p.add_argument("--parallel", action="store_true")
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--folder-channels", type=int, default=0)
    p.add_argument("--extra", default="", help="a backend module with its own first-use kernels")
    a = p.parse_args(argv)
    try:
        compile_kernels(a.parallel, a.normalize, a.folder_channels, a.extra)
        print("augpipe: kernels compiled and cached", flush=True)
    finally:
        if a.lock is not None:
            a.lock.unlink(missing_ok=True)


if __name__ == "__main__":
    _main()
