"""Progress bars (tqdm) for epochs, batches and rounds: rank 0 only."""
from __future__ import annotations

from . import distributed


class Bars:
    """An outer bar (epochs or rounds) and an inner one for batches; rank 0
    only, off with progress=False, and off by itself when not on a terminal
    (tqdm's disable=None)."""

    def __init__(self, progress: bool, total: int, start: int, per_epoch: int, unit: str = "epoch"):
        from tqdm.auto import tqdm

        self.tqdm, self.per_epoch = tqdm, per_epoch
        self.disable = None if progress and distributed.is_main() else True
        self.outer = tqdm(total=total, initial=start, desc=f"{unit}s", unit=unit, disable=self.disable,
                          dynamic_ncols=True)
        self.inner = None

    def batches(self):
        self.inner = self.tqdm(total=self.per_epoch, desc="batches", unit="batch", leave=False,
                               disable=self.disable, dynamic_ncols=True)
        step = 0
        while True:
            yield step
            step += 1

    def step(self, loss: float) -> None:
        self.inner.update()
        self.inner.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def epoch_done(self, record: dict) -> None:
        if self.inner is not None:
            self.inner.close()
        shown = {"acc": f"{record['accuracy']:.3f}", "M": f"{record['magnitude']:.1f}"}
        if "sparsity" in record:
            shown["sparsity"] = f"{record['sparsity']:.2f}"
        if "val_accuracy" in record:
            shown["val"] = f"{record['val_accuracy']:.3f}"
        self.outer.set_postfix(shown)
        self.outer.update()

    def close(self) -> None:
        self.outer.close()
