"""`augpipe bench`: throughput and peak memory against torchvision, same run.

Every row runs in its own child process (so one row's memory never counts
against another's); the parent samples the PSS of the child and all its
workers every 0.5 s and keeps the peak. Data: Fashion-MNIST's training set
resized once to 32x32 (bilinear, antialiased), 1 or 3 channels, in memory.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

ROWS = {
    "torchvision crop+flip": "tv-base",
    "torchvision crop+flip+RandAugment": "tv-ra",
    "augpipe-torch crop+flip+RandAugment": "ap-ra",
    "augpipe-torch, per-sample caps": "ap-caps",
}
BASELINE = "torchvision crop+flip+RandAugment"


# ------------------------------------------------------------- child side

def _data(channels: int):
    from .data import FashionMNIST

    src = FashionMNIST("train", channels=channels).resized((32, 32))
    return src


def _run_row(kind: str, images: int, workers: int, batch: int, magnitude: float, channels: int) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    src = _data(channels)
    pixels, targets = src.images, src.labels
    if kind.startswith("tv"):
        ops = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
        if kind == "tv-ra":
            ops.append(v2.RandAugment(num_ops=2, magnitude=int(magnitude), num_magnitude_bins=31))
        transform = v2.Compose(ops)

        class Images(Dataset):
            def __len__(self):
                return len(src)

            def __getitem__(self, i):
                return transform(pixels[i]), int(targets[i])

        loader = DataLoader(Images(), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    else:
        from .loader import Loader
        from .policy import RandAugment

        loader = Loader(src, batch_size=batch, policy=RandAugment(2), magnitude=magnitude, num_workers=workers, seed=0)
        if kind == "ap-caps":
            loader.set_caps(np.random.default_rng(0).uniform(0, magnitude, len(src)).astype(np.float32))
    warmup = max(2, 2 * workers)
    needed = warmup + -(-images // batch)
    seen, start, done = 0, None, 0
    while done < needed:
        for x, _ in loader:
            done += 1
            if done == warmup:
                start = time.perf_counter()
            elif done > warmup:
                seen += x.shape[0]
            if done >= needed:
                break
    elapsed = time.perf_counter() - start
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


def _measure(kind: str, args: dict) -> dict:
    cmd = [sys.executable, "-m", "augpipe.bench", "--row", kind, "--json", json.dumps(args)]
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
        raise RuntimeError(f"benchmark row {kind!r} failed:\n{err[-3000:]}")
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
        repeats: int = 3, out: str | None = None, rows=None, command: str | None = None) -> str:
    """Measure every row `repeats` times (median), print and return the table."""
    from tqdm import tqdm

    args = {"images": images, "workers": workers, "batch": batch, "magnitude": magnitude, "channels": channels}
    names = list(rows or ROWS)
    results = {}
    with tqdm(total=len(names) * repeats, desc="bench", unit="run", file=sys.stderr) as bar:
        for name in names:
            runs = []
            for _ in range(repeats):
                runs.append(_measure(ROWS[name], args))
                bar.update()
            runs.sort(key=lambda r: r["images_per_s"])
            results[name] = {"median_images_per_s": runs[len(runs) // 2]["images_per_s"],
                             "all_images_per_s": [r["images_per_s"] for r in runs],
                             "peak_pss_gib": max(r["peak_pss_gib"] for r in runs)}
    command = command or "augpipe bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    base = results.get(BASELINE, {}).get("median_images_per_s")
    lines = [
        f"command: {command}",
        f"machine: {machine()}",
        f"data: Fashion-MNIST train (60,000), 28->32 px bilinear, {channels} channel(s), uint8 in memory; "
        f"batch {batch}; {workers} workers; RandAugment(num_ops=2, magnitude={magnitude:g}); "
        f"{images} images timed per run after warm-up, median of {repeats}",
        "",
        f"| {'pipeline':<38} | {'images/s':>9} | {'peak PSS GiB':>12} | {'vs torchvision RA':>17} |",
        f"|{'-' * 40}|{'-' * 11}:|{'-' * 13}:|{'-' * 18}:|",
    ]
    for name, r in results.items():
        ratio = f"{r['median_images_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {name:<38} | {r['median_images_per_s']:>9,.0f} | {r['peak_pss_gib']:>12.2f} | {ratio:>17} |")
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
    p.add_argument("--row", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args()
    print(json.dumps(_run_row(a.row, **json.loads(a.json))))
