"""Training throughput: `augpipe train`'s loop fed by augpipe's Loader against
the same model fed by a torch DataLoader with torchvision's RandAugment.

Both pipelines: Fashion-MNIST as 3-channel 32 px images (resized once, as
augpipe does for arrays), RandomCrop(32, padding=4) + horizontal flip +
RandAugment(num_ops=2, magnitude=9), normalised float32, the same batch
size, the same number of workers, the same model and optimizer, trained by
`augpipe.driver.train`. Each pipeline runs a warm-up epoch (worker start,
compilation) and a timed one of `--steps` batches.

    python benchmarks/train_throughput.py                       # ResNet-20 x1, 50 steps of 128
    python benchmarks/train_throughput.py --model cnn --width 0.25 --steps 3 --batch-size 32   # smoke

Prints a Markdown table: images/s and the share of the epoch spent waiting
for the next batch (0 %: the loader is never the bottleneck).
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys

import numpy as np
import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


class Augmented(torch.utils.data.Dataset):
    """uint8 CHW images through a per-sample torchvision transform."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), int(self.labels[i])


def torchvision_loader(images: torch.Tensor, labels: np.ndarray, a, mean, std):
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                            v2.RandAugment(num_ops=2, magnitude=int(a.magnitude)),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    return torch.utils.data.DataLoader(Augmented(images, labels, transform), batch_size=a.batch_size, shuffle=True,
                                       drop_last=True, num_workers=a.workers, persistent_workers=a.workers > 0)


def measure(name: str, loader, a) -> dict:
    from augpipe import driver

    torch.manual_seed(0)
    model = driver.build_model(a.model, a.width, in_channels=3, num_classes=10)
    history = driver.train(model, loader, 2, lr=0.05, progress=False)  # epoch 0 warms up
    timed = history[1]
    return {"pipeline": name, "images_per_s": timed["images_per_s"], "data_wait": timed["data_wait"],
            "step_ms": 1000 * timed["seconds"] / max(timed["batches"], 1)}


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=50, help="timed batches per pipeline")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--magnitude", type=float, default=9.0)
    a = p.parse_args(argv)

    import augpipe as ap

    n = a.steps * a.batch_size
    source = ap.FashionMNIST("train", channels=3)
    idx = np.random.default_rng(0).permutation(len(source))[:n]
    subset = ap.ArraySource(source.images[idx], source.labels[idx]).resized((32, 32))
    ours = ap.Loader(subset, batch_size=a.batch_size, policy=ap.RandAugment(num_ops=2), magnitude=a.magnitude,
                     num_workers=a.workers, output="float", seed=0)
    theirs = torchvision_loader(subset.images, subset.labels, a, ours.mean, ours.std)
    rows = [measure("augpipe Loader", ours, a), measure("torch DataLoader + torchvision v2 RandAugment", theirs, a)]
    ours.close()
    lines = [f"Command: `python benchmarks/train_throughput.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
             f"({torch.get_num_threads()} intra-op threads)",
             f"Model: {a.model} width {a.width:g}, 3 x 32 x 32, batch {a.batch_size}, {a.workers} workers, "
             f"{a.steps} timed steps, RandAugment(2, {a.magnitude:g}) + crop + flip", "",
             "| pipeline | images/s | waiting for data | step ms |", "|---|---:|---:|---:|"]
    lines += [f"| {r['pipeline']} | {r['images_per_s']:,.0f} | {r['data_wait']:.1%} | {r['step_ms']:.1f} |"
              for r in rows]
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
