"""`AugpipeCallback`: drive an augpipe Loader's magnitude from a Lightning Trainer.

    from .lightning import AugpipeCallback
    trainer = lightning.Trainer(callbacks=[
        ModelPruning("l1_unstructured", amount=0.3, use_global_unstructured=True),
        AugpipeCallback(loader, schedule=CapacitySchedule.linear(9, 0, dense_params=n))])
    trainer.fit(module, train_dataloaders=loader)

At the first batch of every epoch the callback measures the module (its
weight sparsity, or its non-zero parameters for a CapacitySchedule) and the
loader makes the whole epoch with the magnitude the schedule gives; it works
with Lightning's ModelPruning, which prunes at epoch ends. It also keeps the
loader's epoch equal to the trainer's (so `limit_train_batches` and resuming
see the right augmentations) and attaches a teacher gate.
"""
from __future__ import annotations

import lightning.pytorch as pl

from ..driver.capacity import CapacitySchedule
from ..driver.prune import count_params, weight_sparsity
from ..loader import Loader


class AugpipeCallback(pl.Callback):
    """Args:
        loader: the augpipe Loader to drive. Default: the one found in
            `trainer.train_dataloader` when training starts (Lightning has
            already made the fit's first batch then; pass the loader to
            control that batch too).
        schedule: a CapacitySchedule (of the module's non-zero parameters), a
            float, or a callable (epoch, sparsity) -> magnitude, sparsity
            being the fraction of zero conv/linear weights of the module.
            None leaves the magnitude alone.
        gate: a teacher gate to attach as `loader.gate`.
    """

    def __init__(self, loader: Loader | None = None, schedule=None, gate=None):
        if schedule is not None and not (callable(schedule) or isinstance(schedule, (int, float))):
            raise TypeError(f"schedule must be a CapacitySchedule, a number or a callable (epoch, sparsity), "
                            f"got {type(schedule).__name__}")
        if loader is not None and not isinstance(loader, Loader):
            raise TypeError(f"loader must be an augpipe Loader, got {type(loader).__name__}")
        self.loader, self.schedule, self.gate = loader, schedule, gate
        self.magnitudes: dict[int, float] = {}  # epoch -> magnitude set
        self._module = None

    # ------------------------------------------------------------- hooks
    def on_fit_start(self, trainer, pl_module) -> None:
        self._module = pl_module
        if self.loader is not None:
            self._attach(self.loader)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.loader is None:
            self.loader = find_loader(trainer.train_dataloader)
            self._attach(self.loader)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.loader.epoch != trainer.current_epoch:  # never while an epoch's iterator runs
            self.loader.set_epoch(trainer.current_epoch)

    # ----------------------------------------------------------- helpers
    def _attach(self, loader: Loader) -> None:
        if self.gate is not None:
            loader.gate = self.gate
        if self.schedule is None:
            return
        if isinstance(self.schedule, (int, float)) and not isinstance(self.schedule, bool):
            loader.magnitude = float(self.schedule)
            return
        cache: dict = {}

        def per_batch(epoch: int, step: int) -> float:
            if cache.get("epoch") != epoch or step == 0:  # measure once, before the epoch's first batch
                cache.update(epoch=epoch, value=self.magnitude_for(epoch))
                self.magnitudes[epoch] = cache["value"]
            return cache["value"]

        loader.set_magnitude(per_batch)

    def magnitude_for(self, epoch: int) -> float:
        """The schedule's magnitude for `epoch` and the module as it is now."""
        if isinstance(self.schedule, CapacitySchedule):
            return self.schedule(count_params(self._module, nonzero=True))
        return float(self.schedule(epoch, weight_sparsity(self._module)))


def find_loader(dataloaders) -> Loader:
    """The augpipe Loader in what `trainer.train_dataloader` holds (a loader, or
    a list / dict / tuple of them); a ValueError if there is none."""
    stack = [dataloaders]
    while stack:
        item = stack.pop(0)
        if isinstance(item, Loader):
            return item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    raise ValueError(f"AugpipeCallback found no augpipe Loader among the trainer's train dataloaders "
                     f"({type(dataloaders).__name__}); pass loader= or train with an augpipe.Loader")
