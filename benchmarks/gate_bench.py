"""Teacher gating cost: (a) the loader alone, (b) the teacher forward alone,
(c) the gated loader, per batch; and `augpipe score` throughput.

    python benchmarks/gate_bench.py --out benchmarks/results/gate-bench          # both data sets (minutes)
    python benchmarks/gate_bench.py --data 32px --batches 2 --warmup 1 --batch-size 32 --score-samples 64 \\
        --teacher-width 0.25 --out /tmp/gate-smoke                                 # smoke run
    python benchmarks/gate_bench.py --data 224px --batches 1 --warmup 1 --batch-size 8 --score-samples 8 \
        --teacher-width 0.25 --jpeg-files 40 --data-root /tmp/jpegs                # smoke run, 224 px

Data: "32px", Fashion-MNIST's training set resized once to 32x32 (3
channels, in memory); "224px", the ImageNet-like JPEG folder of
`augpipe.tools.bench.data.imagenet_like` (RandomResizedCrop to 224). Teacher: a
CIFAR ResNet-20 (`augpipe.driver.build_model("resnet20", width)`, random
weights: timing only) on the same images. Policy RandAugment(2) at
magnitude 14; the gate keeps 75 % of each batch (`keep_ratio=0.75`, 25 % hard).

Why (c) ~ max(a, b): the gate runs the teacher on finished batches in the
caller's thread while the loader's workers build the next ones, so with
num_workers >= 1 the two overlap (given cores for both). Target: (c) <=
max(a, b) + 5 % for reweight and drop. Fallback also re-renders the hard
share in the caller's thread: extra ~ share x (time to render a batch), row
(e) below measures the render of the hard share alone.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

import augpipe as ap
from augpipe.driver import build_model
from augpipe.driver.data import Subset
from augpipe.gate.teacher import Teacher
from augpipe.tools.bench import data as benchdata
from augpipe.tools.bench.run import machine


def make_loader(a, data: str, gate=None) -> ap.Loader:
    if data == "32px":
        source, size = benchdata.fashion_32(channels=3), None
    else:
        root = benchdata.imagenet_like(a.data_root or benchdata.DEFAULT_ROOT, a.jpeg_files)
        source, size = ap.FolderSource(root), 224
    return ap.Loader(source, batch_size=a.batch_size, policy=ap.RandAugment(2), magnitude=a.magnitude, size=size,
                     num_workers=a.workers, seed=0, gate=gate)


def per_batch(iterable, warmup: int, batches: int) -> float:
    """Seconds per item after `warmup` items."""
    it = iter(iterable)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - start) / batches


def measure(a, data: str) -> dict:
    teacher = build_model("resnet20", a.teacher_width, in_channels=3, num_classes=10).eval()
    rows = {}
    loader = make_loader(a, data)
    rows["(a) loader alone"] = per_batch(loader, a.warmup, a.batches)
    batch = next(iter(loader))
    judge = Teacher(teacher).bind(loader)

    def forwards():
        while True:
            yield judge.logits(batch.images)
    rows["(b) teacher forward alone"] = per_batch(forwards(), a.warmup, a.batches)
    hard = np.arange(int(round((1 - a.keep_ratio) * batch.size)))

    def renders():
        while True:
            yield loader.render(batch.index[hard], 0.0, epoch=batch.epoch)
    rows[f"(e) render of the hard {1 - a.keep_ratio:.0%} alone"] = per_batch(renders(), a.warmup, a.batches)
    loader.close()
    for action in ("reweight", "drop", "fallback"):
        gate = ap.TeacherGate(teacher, keep_ratio=a.keep_ratio, action=action)
        gated = make_loader(a, data, gate)
        rows[f"(c) gated loader, {action}"] = per_batch(gated, a.warmup, a.batches)
        gated.close()
    scored = min(a.score_samples, len(loader.dataset))
    src = loader.dataset
    subset = ap.ArraySource(src.images[:scored], src.labels[:scored]) if src.in_memory else Subset(src, range(scored))
    start = time.perf_counter()
    ap.DifficultyTable.build(teacher, subset, magnitudes=range(0, 31, 3), views=1, batch_size=a.batch_size,
                             size=None if src.in_memory else 224, progress=False)
    rows["(d) augpipe score, samples x magnitudes / s"] = scored * 11 / (time.perf_counter() - start)
    return rows


def table(a, results: dict, command: str) -> str:
    lines = [f"command: {command}", f"machine: {machine()}",
             f"batch {a.batch_size}; {a.workers} workers; RandAugment(2) at magnitude {a.magnitude:g}; teacher "
             f"resnet20(width={a.teacher_width:g}), random weights; keep_ratio {a.keep_ratio:g}; "
             f"{a.batches} batches timed after {a.warmup} warm-up", "",
             f"| {'data':<6} | {'row':<44} | {'ms / batch':>10} | {'vs max(a, b)':>12} |",
             f"|{'-' * 8}|{'-' * 46}|{'-' * 11}:|{'-' * 13}:|"]
    for data, rows in results.items():
        base = max(rows["(a) loader alone"], rows["(b) teacher forward alone"])
        for name, value in rows.items():
            if name.startswith("(d)"):
                lines.append(f"| {data:<6} | {name:<44} | {value:>10,.0f} | {'-':>12} |")
                continue
            ratio = f"{value / base:.2f}x" if name.startswith("(c)") else "-"
            lines.append(f"| {data:<6} | {name:<44} | {1000 * value:>10.1f} | {ratio:>12} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=("32px", "224px", "all"), default="all")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--magnitude", type=float, default=14.0)
    p.add_argument("--keep-ratio", type=float, default=0.75)
    p.add_argument("--teacher-width", type=float, default=1.0)
    p.add_argument("--batches", type=int, default=20, help="batches timed per row")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--score-samples", type=int, default=1024, help="samples scored for row (d)")
    p.add_argument("--data-root", default=None, help="where the 224px JPEG set is built (default ~/.cache/augpipe)")
    p.add_argument("--jpeg-files", type=int, default=2000, help="size of the 224px JPEG set (smoke runs: fewer)")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    a = p.parse_args(argv)
    command = "python benchmarks/gate_bench.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = {d: measure(a, d) for d in (("32px", "224px") if a.data == "all" else (a.data,))}
    text = table(a, results, command)
    print(text)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": command, "machine": machine(), "args": vars(a), "seconds_per_batch": results,
                   "table": text}
        out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
