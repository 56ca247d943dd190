"""AugpipeCallback with a real lightning.Trainer and Lightning's ModelPruning:
the magnitude every batch was made with follows the schedule."""
from __future__ import annotations

import lightning
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelPruning
from test_driver import one_thread  # noqa: F401 (autouse: one intra-op thread in this module)

import augpipe as ap
from augpipe import driver as D
from augpipe.integrations.lightning import AugpipeCallback


def fmnist_loader(n=640, magnitude=30.0):
    src = ap.FashionMNIST("train")
    idx = np.arange(n)
    return ap.Loader(ap.ArraySource(src.images[idx], src.labels[idx]), batch_size=64, num_workers=0, output="float",
                     seed=0, magnitude=magnitude)


class Classifier(lightning.LightningModule):
    """A small CNN that records, per training batch, the epoch and the
    magnitudes the batch was augmented with."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = D.build_model("cnn", 0.25)
        self.seen: list[tuple[int, int, float, float]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        self.seen.append((self.current_epoch, int(batch.epoch), float(batch.magnitude.min()),
                          float(batch.magnitude.max())))
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def fit(module, loader, callbacks, epochs=3):
    trainer = lightning.Trainer(max_epochs=epochs, accelerator="cpu", limit_train_batches=5, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=callbacks)
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def pruning(module):
    """Global L1 over conv and linear weights, half of what is left at each epoch end."""
    params = [(m, "weight") for m in module.net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return ModelPruning("l1_unstructured", amount=0.5, use_global_unstructured=True, parameters_to_prune=params,
                        make_pruning_permanent=False, verbose=0)


def test_magnitude_follows_sparsity_under_model_pruning():
    module, loader = Classifier(), fmnist_loader()
    callback = AugpipeCallback(loader, schedule=lambda epoch, sparsity: 12.0 * (1 - sparsity))
    fit(module, loader, [pruning(module), callback])
    # ModelPruning prunes at each epoch end: sparsity 0, 0.5, 0.75 at the starts of epochs 0, 1, 2.
    expected = {0: 12.0, 1: 6.0, 2: 3.0}
    assert [s[0] for s in module.seen] == [0] * 5 + [1] * 5 + [2] * 5
    for epoch, loader_epoch, low, high in module.seen:
        assert loader_epoch == epoch  # the loader's epochs follow the trainer's despite limit_train_batches
        assert low == high == pytest.approx(expected[epoch], abs=1e-3)
    assert callback.magnitudes == pytest.approx(expected, abs=1e-3)


def test_capacity_schedule_and_loader_found_in_the_trainer():
    module, loader = Classifier(), fmnist_loader()
    dense = D.count_params(module.net)
    schedule = D.CapacitySchedule.linear(10.0, 0.0, dense_params=dense)
    callback = AugpipeCallback(schedule=schedule)  # finds the loader itself
    fit(module, loader, [pruning(module), callback], epochs=2)
    assert callback.loader is loader
    capacity_after_one = dense - round(0.5 * sum(p.numel() for n, p in module.net.named_parameters()
                                                  if n.endswith("weight_orig") and p.ndim > 1))
    expected = {0: 10.0, 1: schedule(capacity_after_one)}
    for epoch, _, low, high in module.seen:
        assert low == high == pytest.approx(expected[epoch], abs=1e-3)


def test_no_augpipe_loader_is_a_clear_error():
    data = torch.utils.data.TensorDataset(torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="found no augpipe Loader"):
        fit(Classifier(), torch.utils.data.DataLoader(data, batch_size=4), [AugpipeCallback(schedule=5.0)], epochs=1)
    with pytest.raises(TypeError, match="schedule"):
        AugpipeCallback(schedule="strong")
