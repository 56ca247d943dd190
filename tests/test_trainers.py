"""A Batch survives the collection utilities of the trainers users plug in.

Real libraries, no stand-ins: Lightning's apply_to_collection and
move_data_to_device (and a real Trainer.fit with an augpipe training loader
and an augpipe evaluation loader), HF Accelerate's send_to_device, torch's
pin-memory and torch.utils._pytree.
"""
import dataclasses

import numpy as np
import torch

import augpipe as ap
from augpipe.core.batch import TENSOR_FIELDS


def _batch(fmnist, gated=False) -> ap.Batch:
    loader = ap.Loader(fmnist, batch_size=32, magnitude=9, num_workers=0, seed=1)
    batch = next(iter(loader))
    if gated:
        n = batch.size
        batch = dataclasses.replace(batch, weight=torch.rand(n), difficulty=torch.rand(n), gated=torch.rand(n) > 0.5)
    return batch


def _same_fields(a: ap.Batch, b: ap.Batch, dtype_of=None) -> None:
    assert type(b) is ap.Batch and (b.epoch, b.step) == (a.epoch, a.step)
    for name in TENSOR_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x.to(y.dtype), y), name
            if dtype_of is not None:
                assert y.dtype == dtype_of(x), name


def test_unpacks_indexes_and_is_a_dataclass_not_a_tuple(fmnist):
    batch = _batch(fmnist)
    images, labels = batch
    assert images is batch.images and labels is batch[1] and len(batch) == 2 and batch.size == 32
    assert dataclasses.is_dataclass(batch) and not isinstance(batch, tuple)
    assert batch.ops.shape == (32, 2) and batch.ops.dtype == torch.int8 and batch.mags.dtype == torch.float32
    np.testing.assert_array_equal(np.abs(batch.mags.numpy()), 9.0)


def test_lightning_apply_to_collection_and_move_data_to_device(fmnist):
    from lightning.fabric.utilities.apply_func import move_data_to_device
    from lightning_utilities.core.apply_func import apply_to_collection

    for gated in (False, True):
        batch = _batch(fmnist, gated)
        doubled = apply_to_collection(batch, torch.Tensor, lambda t: t.double() if t.is_floating_point() else t)
        _same_fields(batch, doubled, lambda t: torch.float64 if t.is_floating_point() else t.dtype)
        moved = move_data_to_device(batch, torch.device("cpu"))
        _same_fields(batch, moved)
        nested = apply_to_collection({"train": [batch]}, torch.Tensor, lambda t: t.clone())
        _same_fields(batch, nested["train"][0])


def test_accelerate_send_to_device(fmnist):
    from accelerate.utils import send_to_device

    for gated in (False, True):
        batch = _batch(fmnist, gated)
        _same_fields(batch, send_to_device(batch, "cpu", non_blocking=True))
        _same_fields(batch, send_to_device({"b": batch}, torch.device("cpu"))["b"])


def test_pin_memory_and_to(fmnist):
    from torch.utils.data._utils.pin_memory import pin_memory

    batch = _batch(fmnist, gated=True)
    pinned = pin_memory(batch)
    _same_fields(batch, pinned)
    if torch.cuda.is_available():
        assert all(getattr(pinned, k).is_pinned() for k in TENSOR_FIELDS)
    half = batch.to(torch.float16)  # a dtype reaches floating tensors only, as nn.Module.to
    _same_fields(batch, half, lambda t: torch.float16 if t.is_floating_point() else t.dtype)


def test_pytree_tree_map_and_flatten(fmnist):
    from torch.utils import _pytree as pytree

    batch = _batch(fmnist)
    leaves, spec = pytree.tree_flatten(batch)
    assert len(leaves) == 6 and all(isinstance(x, torch.Tensor) for x in leaves)  # no None leaves
    _same_fields(batch, pytree.tree_map(lambda t: t.clone(), batch))
    gated = _batch(fmnist, gated=True)
    mapped = pytree.tree_map(lambda t: t + 0 if t.dtype != torch.bool else t, gated)
    _same_fields(gated, mapped)
    _same_fields(gated, pytree.tree_unflatten(*pytree.tree_flatten(gated)))


def test_lightning_trainer_fit_with_augpipe_train_and_val_loaders(fmnist, tmp_path):
    import lightning as L

    train = ap.Loader(fmnist, batch_size=50, magnitude=7, num_workers=2, seed=3, output="float")
    val = ap.Loader(fmnist, batch_size=100, train=False, num_workers=0, output="float")
    seen = {"train": [], "val": []}

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))

        def training_step(self, batch, batch_idx):
            assert isinstance(batch, ap.Batch) and batch.ops is not None and batch.index.dtype == torch.int64
            seen["train"].append((batch.epoch, batch.step, float(batch.magnitude.mean())))
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            assert isinstance(batch, ap.Batch)
            seen["val"].append(batch.index.clone())
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Net(), train_dataloaders=train, val_dataloaders=val)
    assert [s[:2] for s in seen["train"]] == [(e, s) for e in range(2) for s in range(len(train))]
    assert all(m == 7.0 for _, _, m in seen["train"])
    evaluated = torch.cat(seen["val"][-len(val):])  # the last validation pass: every sample once, in order
    assert torch.equal(evaluated, torch.arange(len(fmnist[1])))
