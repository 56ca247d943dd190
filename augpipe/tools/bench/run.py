"""`augpipe bench`: throughput and peak memory against torchvision, same run.

Every row runs in its own child process (so one row's memory never counts
against another's); the parent samples the PSS of the child and all its
workers every 0.5 s and keeps the peak. Data (`--data`): "32px",
Fashion-MNIST's training set resized once to 32x32, in memory; or "224px", an
ImageNet-like JPEG folder built from scikit-image's photographs
(augpipe.tools.bench.data), cropped to 224x224.
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

from . import data as benchdata
from .mixing import BASELINE as MIX_BASELINE
from .rows import rows_for

BASELINES = {"32px": "torchvision crop+flip+RandAugment", "224px": "torchvision RRC+flip+RandAugment"}


def _run_row(backend: str, data: str, name: str, args: dict) -> dict:
    loader = rows_for(backend, data, args.get("mix", False))[name](args)
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
    cmd = [sys.executable, "-m", "augpipe.tools.bench.run", "--row", json.dumps([backend, data, name, args])]
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
        data_root: str | None = None, command: str | None = None, mix: bool = False) -> str:
    """Measure every row `repeats` times (median), print and return the table."""
    from tqdm import tqdm

    root = str(data_root or benchdata.DEFAULT_ROOT)
    if data == "224px":
        benchdata.imagenet_like(root)  # build once, before any row is timed
    args = {"images": images, "workers": workers, "batch": batch, "magnitude": magnitude, "channels": channels,
            "data_root": root, "mix": mix}
    names = list(rows_for(backend, data, mix))
    measured = {name: [] for name in names}
    with tqdm(total=len(names) * repeats, desc="bench", unit="run", file=sys.stderr) as bar:
        for _ in range(repeats):  # rounds of every row: a machine that drifts over minutes biases no row
            for name in names:
                measured[name].append(_measure(backend, data, name, args))
                bar.update()
    results = {}
    for name, runs in measured.items():
        order = sorted(runs, key=lambda r: r["images_per_s"])
        results[name] = {"median_images_per_s": order[len(order) // 2]["images_per_s"],
                         "all_images_per_s": [r["images_per_s"] for r in runs],
                         "peak_pss_gib": max(r["peak_pss_gib"] for r in runs)}
    command = command or "augpipe bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    baseline = BASELINES[data] if not mix else MIX_BASELINE
    base = results.get(baseline, {}).get("median_images_per_s")
    if data == "32px":
        what = f"Fashion-MNIST train (60,000), 28->32 px bilinear, {channels} channel(s), uint8 in memory"
    else:
        what = f"ImageNet-like JPEG folder {root} (real photographs, quality 90) -> 224x224"
    wide, ratio_w = max(40, *(len(n) for n in results)), max(35, len(baseline) + 3)
    lines = [
        f"command: {command}",
        f"machine: {machine()}",
        f"data: {what}; batch {batch}; {workers} workers; RandAugment(num_ops=2, magnitude={magnitude:g}); "
        f"{images} images timed per run after warm-up, median of {repeats} (rows measured in turn, round by round)",
        "",
        f"| {'pipeline':<{wide}} | {'images/s':>9} | {'peak PSS GiB':>12} | {'vs ' + baseline:>{ratio_w}} |",
        f"|{'-' * (wide + 2)}|{'-' * 10}:|{'-' * 13}:|{'-' * (ratio_w + 1)}:|",
    ]
    for name, r in results.items():
        ratio = f"{r['median_images_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {name:<{wide}} | {r['median_images_per_s']:>9,.0f} | {r['peak_pss_gib']:>12.2f} | "
                     f"{ratio:>{ratio_w}} |")
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
