"""`augpipe demo`, step 4: a short real training on Fashion-MNIST.

The same small CNN trained twice on the same subset, once at a moderate
magnitude and once at a constant strong one (M=30): the paper's finding B in
one minute (strong augmentation hurts a small model).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

MODERATE, STRONG = 5.0, 30.0


def train_demo(out=None, train_size: int = 10000, epochs: int = 4, width: float = 0.5, seed: int = 0,
               magnitudes=(MODERATE, STRONG), print_fn=print) -> list[dict]:
    """Train `cnn` at each magnitude; print and return test accuracies.

    Args:
        out: folder for demo.json (optional).
        train_size: Fashion-MNIST training images (a seeded subset).
        epochs: epochs per run (defaults take about 30 s per run on 2 cores).
        width: CNN width multiplier (0.5: 8 base channels, 8.6k parameters).
        seed: seeds the model init, the subset and the loader.
        magnitudes: one run per magnitude.
    """
    from ..models import build_model
    from .data import make_data, make_loaders
    from .prune import count_params
    from .train import evaluate, train

    data = make_data("fashion-mnist", train_size=train_size, val_size=0, seed=seed)
    rows = []
    for m in magnitudes:
        loader, _, test = make_loaders(data, batch_size=128, magnitude=m, seed=seed, workers=2)
        torch.manual_seed(seed)
        model = build_model("cnn", width, data.in_channels, data.num_classes)
        start = time.perf_counter()
        history = train(model, loader, epochs, lr=0.05, magnitude=m, progress=False)
        seconds = time.perf_counter() - start
        result = evaluate(model, test)
        rows.append({"magnitude": m, "test_accuracy": result["accuracy"], "train_seconds": seconds,
                     "images_per_s": history.last["images_per_s"], "params": count_params(model)})
        loader.close()
        test.close()
    print_fn(f"   cnn width {width:g} ({rows[0]['params']:,} params), {train_size:,} training images, "
             f"{epochs} epochs, test on 10,000")
    print_fn(f"   {'magnitude':>9} | {'test accuracy':>13} | {'train s':>7} | {'images/s':>8}")
    for r in rows:
        print_fn(f"   {r['magnitude']:>9g} | {r['test_accuracy']:>13.4f} | {r['train_seconds']:>7.1f} | "
                 f"{r['images_per_s']:>8.0f}")
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "demo.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows
