"""One PNG per run: training curves, accuracy against sparsity, the sweep."""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_train(epochs: list[dict], path, title: str = "") -> Path:
    """Loss, accuracy (train, val) and magnitude against epoch."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc, ax_m) = plt.subplots(1, 3, figsize=(12, 3.4))
    x = [e["epoch"] + 1 for e in epochs]
    ax_loss.plot(x, [e["loss"] for e in epochs], marker=".", label="train")
    ax_acc.plot(x, [e["accuracy"] for e in epochs], marker=".", label="train")
    if epochs and "val_accuracy" in epochs[0]:
        ax_loss.plot(x, [e["val_loss"] for e in epochs], marker=".", label="val")
        ax_acc.plot(x, [e["val_accuracy"] for e in epochs], marker=".", label="val")
    ax_m.plot(x, [e["magnitude"] for e in epochs], marker=".", color="tab:purple")
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_m, "mean magnitude")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_acc.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_prune(rounds: list[dict], path, title: str = "") -> Path:
    """Accuracy and fine-tuning magnitude against achieved sparsity, one point per round."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = [r["sparsity"] for r in rounds]
    if "accuracy" in rounds[0]:
        ax.plot(x, [r["accuracy"] for r in rounds], marker="o", label="accuracy")
    ax.set_xlabel("sparsity")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    if any(r["magnitude"] is not None for r in rounds):
        twin = ax.twinx()
        twin.plot(x, [r["magnitude"] for r in rounds], marker="s", color="tab:purple", label="magnitude")
        twin.set_ylabel("magnitude", color="tab:purple")
    ax.set_title(title)
    return _save(fig, path)


def plot_sweep(summary: dict, path, title: str = "") -> Path:
    """Accuracy (mean, seed std as error bars) against magnitude, one line per size."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for width, row in summary.items():
        ms = sorted(row["cells"], key=float)
        ax.errorbar([float(m) for m in ms], [row["cells"][m]["mean"] for m in ms],
                    yerr=[row["cells"][m]["std"] for m in ms], marker="o", capsize=3,
                    label=f"width {width} ({row['params']:,} params), best M={row['best_magnitude']:g}")
    ax.set_xlabel("magnitude M (RandAugment, 0..30)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
