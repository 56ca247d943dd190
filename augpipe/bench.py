"""`augpipe bench`: throughput and peak memory against torchvision, same run.

Every row runs in its own child process (so one row's memory never counts
against another's); the parent samples the PSS of the child and all its
workers every 0.5 s and keeps the peak. Data (`--data`): "32px",
Fashion-MNIST's training set resized once to 32x32, in memory; or "224px", an
ImageNet-like JPEG folder built from scikit-image's photographs
(augpipe.benchdata), cropped to 224x224.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import benchdata

BASELINES = {"32px": "torchvision crop+flip+RandAugment", "224px": "torchvision RRC+flip+RandAugment"}


# ------------------------------------------------------------- child side
# A row is a factory: args dict -> an iterable of (images, labels) batches.

def _tv_loader(dataset, args):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=args["batch"], shuffle=True, drop_last=True, num_workers=args["workers"],
                      persistent_workers=args["workers"] > 0, generator=torch.Generator().manual_seed(0))


def _tv_ops(randaugment: bool, args, first):
    from torchvision.transforms import v2

    ops = list(first) + [v2.RandomHorizontalFlip()]
    if randaugment:
        ops.append(v2.RandAugment(num_ops=2, magnitude=int(args["magnitude"]), num_magnitude_bins=31))
    return v2.Compose(ops)


def tv_32(args, randaugment=True):
    from torch.utils.data import Dataset
    from torchvision.transforms import v2

    src = benchdata.fashion_32(args["channels"])
    pixels, targets = src.images, src.labels
    transform = _tv_ops(randaugment, args, [v2.RandomCrop(32, padding=4)])

    class Images(Dataset):
        def __len__(self):
            return len(src)

        def __getitem__(self, i):
            return transform(pixels[i]), int(targets[i])

    return _tv_loader(Images(), args)


def tv_224(args, randaugment=True):
    from torch.utils.data import Dataset
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms import v2

    from .data import FolderSource

    src = FolderSource(benchdata.imagenet_like(args["data_root"]))
    transform = _tv_ops(randaugment, args, [v2.RandomResizedCrop(224, antialias=True)])

    class Jpegs(Dataset):
        def __len__(self):
            return len(src)

        def __getitem__(self, i):
            image = decode_jpeg(read_file(src.describe(i)), mode=ImageReadMode.RGB)
            return transform(image), int(src.labels[i])

    return _tv_loader(Jpegs(), args)


def augpipe_loader(args, data="32px", caps=False, backend="torch", randaugment=True, options=None):
    """augpipe's Loader with RandAugment(2) (or crop + flip only) on a bench data set (any backend)."""
    import numpy as np

    from .loader import Loader
    from .policy import Identity, RandAugment

    source = benchdata.fashion_32(args["channels"]) if data == "32px" else benchdata.imagenet_like(args["data_root"])
    loader = Loader(source, batch_size=args["batch"], policy=RandAugment(2) if randaugment else Identity(),
                    magnitude=args["magnitude"], backend=backend, num_workers=args["workers"], seed=0,
                    size=32 if data == "32px" else 224, backend_options=options)
    if caps:
        rng = np.random.default_rng(0)
        loader.set_caps(rng.uniform(0, args["magnitude"], len(loader.dataset)).astype(np.float32))
    return loader


ROWS = {
    "32px": {
        "torchvision crop+flip": lambda a: tv_32(a, randaugment=False),
        "torchvision crop+flip+RandAugment": tv_32,
        "augpipe-torch crop+flip+RandAugment": augpipe_loader,
        "augpipe-torch, per-sample caps": lambda a: augpipe_loader(a, caps=True),
    },
    "224px": {
        "torchvision RRC+flip": lambda a: tv_224(a, randaugment=False),
        "torchvision RRC+flip+RandAugment": tv_224,
        "augpipe-torch RRC+flip (no RandAugment)": lambda a: augpipe_loader(a, "224px", randaugment=False),
        "augpipe-torch RRC+flip+RandAugment": lambda a: augpipe_loader(a, "224px"),
        "augpipe-torch, per-sample caps": lambda a: augpipe_loader(a, "224px", caps=True),
        "augpipe-torch, torchvision decoder": lambda a: augpipe_loader(a, "224px", options={"decoder": "torchvision"}),
    },
}


def rows_for(backend: str, data: str) -> dict:
    """The rows of a run: torchvision and augpipe-torch always; a backend's
    own rows come from augpipe.backends.<backend>_bench.ROWS[data]."""
    rows = dict(ROWS[data])
    for name in (("ffcv", "dali") if backend == "all" else (backend,)):
        if name != "torch":
            module = importlib.import_module(f"augpipe.backends.{name}_bench")
            rows.update(module.ROWS[data])
    return rows


def _run_row(backend: str, data: str, name: str, args: dict) -> dict:
    loader = rows_for(backend, data)[name](args)
    warmup = max(2, 2 * args["workers"])
    needed = warmup + -(-args["images"] // args["batch"])
    seen, start, done, elapsed = 0, None, 0, None
    while done < needed:
        for x, _ in loader:
            done += 1
            if done == warmup:
                start = time.perf_counter()
            elif done > warmup:
                seen += x.shape[0]
            if done >= needed:
                # stop the clock before leaving the loop: abandoning an epoch
                # (FFCV finishes it in its thread) is not part of the throughput
                elapsed = time.perf_counter() - start
                break
    return {"images": seen, "seconds": elapsed, "images_per_s": seen / elapsed}


# ------------------------------------------------------------ parent side

def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def _tree(pid: int) -> list[int]:
    pids, stack = [], [pid]
    while stack:
        p = stack.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def _measure(backend: str, data: str, name: str, args: dict) -> dict:
    cmd = [sys.executable, "-m", "augpipe.bench", "--row", json.dumps([backend, data, name, args])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_pss_kib(p) for p in _tree(proc.pid)))
            time.sleep(0.5)  # one smaps_rollup read costs ~4 ms: sample sparsely to leave the cores to the row

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark row {name!r} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_pss_gib"] = peak[0] / 2**20
    return result


def machine() -> str:
    import torch
    import torchvision

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}")


def run(images: int = 61440, workers: int = 2, batch: int = 256, magnitude: float = 9.0, channels: int = 3,
        repeats: int = 3, out: str | None = None, backend: str = "torch", data: str = "32px",
        data_root: str | None = None, command: str | None = None) -> str:
    """Measure every row `repeats` times (median), print and return the table."""
    from tqdm import tqdm

    root = str(data_root or benchdata.DEFAULT_ROOT)
    if data == "224px":
        benchdata.imagenet_like(root)  # build once, before any row is timed
    args = {"images": images, "workers": workers, "batch": batch, "magnitude": magnitude, "channels": channels,
            "data_root": root}
    names = list(rows_for(backend, data))
    results = {}
    with tqdm(total=len(names) * repeats, desc="bench", unit="run", file=sys.stderr) as bar:
        for name in names:
            runs = []
            for _ in range(repeats):
                runs.append(_measure(backend, data, name, args))
                bar.update()
            runs.sort(key=lambda r: r["images_per_s"])
            results[name] = {"median_images_per_s": runs[len(runs) // 2]["images_per_s"],
                             "all_images_per_s": [r["images_per_s"] for r in runs],
                             "peak_pss_gib": max(r["peak_pss_gib"] for r in runs)}
    command = command or "augpipe bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    baseline = BASELINES[data]
    base = results.get(baseline, {}).get("median_images_per_s")
    if data == "32px":
        what = f"Fashion-MNIST train (60,000), 28->32 px bilinear, {channels} channel(s), uint8 in memory"
    else:
        what = f"ImageNet-like JPEG folder {root} (real photographs, quality 90) -> 224x224"
    lines = [
        f"command: {command}",
        f"machine: {machine()}",
        f"data: {what}; batch {batch}; {workers} workers; RandAugment(num_ops=2, magnitude={magnitude:g}); "
        f"{images} images timed per run after warm-up, median of {repeats}",
        "",
        f"| {'pipeline':<40} | {'images/s':>9} | {'peak PSS GiB':>12} | {'vs ' + baseline:>35} |",
        f"|{'-' * 42}|{'-' * 10}:|{'-' * 13}:|{'-' * 36}:|",
    ]
    for name, r in results.items():
        ratio = f"{r['median_images_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {name:<40} | {r['median_images_per_s']:>9,.0f} | {r['peak_pss_gib']:>12.2f} | {ratio:>35} |")
    table = "\n".join(lines)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": command, "machine": machine(), "args": args, "results": results, "table": table}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(path.with_suffix(".json"))
        path.with_suffix(".md").write_text(table + "\n")
    return table


if __name__ == "__main__":  # child: one row
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--row", required=True, help="JSON [backend, data, row name, args]")
    print(json.dumps(_run_row(*json.loads(p.parse_args().row))))
