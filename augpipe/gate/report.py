"""Per-op difficulty report: the teacher's accuracy under each op alone at each magnitude.

    report = op_report(teacher, "fashion-mnist:test", samples=1000)
    write_report(report, "report/")                      # report.json + heatmap.png
    limits = ap.limits_from_report(report, drop=0.05)   # {"Solarize": 12.0, ...}
    policy = ap.RandAugment(2).with_limits(limits)       # a policy designed from the teacher

Each op of RandAugment's pool except Identity runs alone (RandAugment(
num_ops=1, ops=(name,)), signed ops with their random sign) on a fixed,
seeded subset, cropped as for evaluation (no random crop or flip), so the
table isolates the op. The baseline is the teacher on the same samples
without any op.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..core.ops import MAX_MAGNITUDE, OPS, RAND_AUGMENT_OPS, check_magnitude
from .metrics import score
from .teacher import Teacher

REPORT_OPS = tuple(OPS[i].name for i in RAND_AUGMENT_OPS if OPS[i].name != "Identity")


def op_report(teacher, source, samples: int = 1000, magnitudes=range(31), ops=REPORT_OPS, batch_size: int = 256,
              seed: int = 0, device=None, size=None, mean=None, std=None, amp: bool = False,
              progress: bool = True) -> dict:
    """Teacher accuracy and mean p_true per op and magnitude.

    Args:
        teacher: nn.Module or callable (see `augpipe.TeacherGate`).
        source: anything `augpipe.Loader` takes.
        samples: size of the seeded subset (all samples if larger than the source).
        magnitudes: ascending magnitudes (default 0..30).
        ops: op names (default: RandAugment's 13 ops other than Identity).
        batch_size, device, size, mean, std, amp: as for DifficultyTable.build.
        seed: the subset's and the plans' seed.

    Returns:
        {"ops": {name: {"accuracy": [...], "p_true": [...]}}, "magnitudes": [...],
         "baseline_accuracy", "baseline_p_true", "samples", "seed", "teacher",
         "dataset", "source", "augpipe", "seconds"}.
    """
    from tqdm import tqdm

    from .._version import __version__
    from ..core.policy import RandAugment
    from ..loader import Loader

    mags = [check_magnitude(m) for m in magnitudes]
    if not mags or mags != sorted(set(mags)):
        raise ValueError(f"magnitudes must be non-empty, distinct and ascending, got {list(magnitudes)}")
    common = dict(batch_size=batch_size, seed=seed, num_workers=0, device=device or "cpu", shuffle=False)
    base = Loader(source, train=False, size=size, policy="identity", **common)
    judge = Teacher(teacher, mean=mean, std=std, device=device, amp=amp).bind(base)
    n = len(base.dataset)
    rng = np.random.default_rng([seed, 1931])
    idx = np.sort(rng.choice(n, size=min(samples, n), replace=False)).astype(np.int64)
    chunks = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]

    def measure(loader, magnitude) -> tuple[float, float]:
        correct = p_true = 0.0
        for chunk in chunks:
            view = loader.render(chunk, magnitude, epoch=0)
            logits = judge.logits(view.images)
            labels = view.labels.to(logits.device)
            correct += float((logits.argmax(1) == labels).sum())
            p_true += float(score("p_true", logits, labels).sum())
        return correct / len(idx), p_true / len(idx)

    start = time.perf_counter()
    baseline = measure(base, None)
    table = {}
    with tqdm(total=len(ops) * len(mags), desc="per-op report", unit="cell", file=sys.stderr,
              disable=not progress) as bar:
        for name in ops:
            loader = Loader(base.dataset, train=True, crop=base.crop, policy=RandAugment(1, ops=(name,)), **common)
            rows = []
            for m in mags:
                rows.append(measure(loader, m))
                bar.update()
            table[name] = {"accuracy": [a for a, _ in rows], "p_true": [p for _, p in rows]}
    return {"ops": table, "magnitudes": mags, "baseline_accuracy": baseline[0], "baseline_p_true": baseline[1],
            "samples": int(len(idx)), "seed": seed, "teacher": judge.fingerprint(),
            "dataset": base.dataset.fingerprint(),
            "source": str(source) if isinstance(source, (str, os.PathLike)) else None, "augpipe": __version__,
            "seconds": time.perf_counter() - start}


def limits_from_report(report: dict, min_accuracy: float | None = None, drop: float | None = None) -> dict:
    """Per-op magnitude limits from a report, for `policy.with_limits(...)`.

    Each op's limit is the highest magnitude of the report up to which the
    teacher's accuracy stays >= the bound at every magnitude (monotone: the
    first failure stops it; 0 if it fails at the first magnitude). A limit
    equal to 30 is no limit.

    Args:
        report: `op_report`'s dict (or its report.json, loaded).
        min_accuracy: absolute bound on the accuracy, in [0, 1].
        drop: alternative: at most this accuracy drop below the clean
            baseline (bound = baseline_accuracy - drop).

    Raises:
        ValueError: both or neither of min_accuracy and drop.
    """
    if (min_accuracy is None) == (drop is None):
        raise ValueError(f"give exactly one of min_accuracy= and drop=, got min_accuracy={min_accuracy!r}, "
                         f"drop={drop!r}")
    bound = float(min_accuracy) if min_accuracy is not None else float(report["baseline_accuracy"]) - float(drop)
    limits = {}
    for name, row in report["ops"].items():
        limit = 0.0
        for m, acc in zip(report["magnitudes"], row["accuracy"]):
            if acc < bound:
                break
            limit = float(m)
        limits[name] = min(limit, MAX_MAGNITUDE)
    return limits


def plot_report(report: dict, path) -> Path:
    """A PNG heat map (ops x magnitudes) of the teacher's accuracy and mean p_true."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["ops"])
    mags = report["magnitudes"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.38 * len(names) + 1.8), constrained_layout=True)
    for ax, key, title in zip(axes, ("accuracy", "p_true"), ("teacher accuracy", "teacher mean p_true")):
        grid = np.array([report["ops"][n][key] for n in names])
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_yticks(range(len(names)), names)
        step = max(1, len(mags) // 10)
        ax.set_xticks(range(0, len(mags), step), [f"{mags[i]:g}" for i in range(0, len(mags), step)])
        ax.set_xlabel("magnitude")
        base = report["baseline_accuracy" if key == "accuracy" else "baseline_p_true"]
        ax.set_title(f"{title} (no op: {base:.3f}, {report['samples']} samples)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(report: dict, out, limits: dict | None = None) -> dict:
    """out/report.json, out/heatmap.png (and out/limits.json); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.json", "heatmap": plot_report(report, out / "heatmap.png")}
    files = [(paths["report"], report)]
    if limits is not None:
        paths["limits"] = out / "limits.json"
        files.append((paths["limits"], limits))
    for path, obj in files:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        tmp.replace(path)
    return paths
