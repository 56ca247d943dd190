"""Checkpoints load with torch's safe loader, a crafted pickle runs nothing,
and bad arguments found by a bad-input sweep are named."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import augpipe as ap
from augpipe.gate.teacher import load_teacher
from augpipe.models import build_model, load_checkpoint, load_run_model


class _Payload:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_pickle_runs_nothing_and_the_error_names_the_file(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "teacher.pt"
    torch.save({"arch": "x", "model": _Payload(marker), "config": {}}, bad)
    for load in (lambda: load_teacher(bad), lambda: load_run_model(bad), lambda: load_checkpoint(bad)):
        with pytest.raises(ValueError, match=str(bad)) as err:
            load()
        assert "--trust-checkpoint" in str(err.value) and "trust=True" in str(err.value)
        assert not marker.exists()
    raw = tmp_path / "raw.pkl"  # not even a torch file: a bare pickle stream
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError):
        load_teacher(raw)
    assert not marker.exists()


def test_a_whole_pickled_module_needs_trust(tmp_path):
    model = build_model("cnn", 0.25)
    path = tmp_path / "module.pt"
    torch.save(model, path)
    with pytest.raises(ValueError, match="trust"):
        load_teacher(path)
    loaded = load_teacher(path, trust=True)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))


def test_loader_state_dict_holds_tensors_and_plain_values_only(fmnist, tmp_path):
    loader = ap.Loader(fmnist, batch_size=50, magnitude=7, num_workers=0, seed=3)
    loader.set_caps(np.linspace(0, 30, len(loader.dataset)).astype(np.float32))
    it = iter(loader)
    next(it)
    path = tmp_path / "state.pt"
    torch.save({"loader": loader.state_dict()}, path)
    state = torch.load(path, weights_only=True)["loader"]  # torch's default since 2.6
    resumed = ap.Loader(fmnist, batch_size=50, magnitude=1, num_workers=0, seed=3)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(resumed.caps, loader.caps)
    a, b = next(it), next(iter(resumed))
    assert torch.equal(a.images, b.images) and torch.equal(a.index, b.index)


def test_lightning_stop_at_step_50_and_resume_to_100_gives_the_uninterrupted_batches(fmnist, tmp_path):
    import lightning as L

    def fit(max_steps, seen, ckpt_path=None, save=None):
        train = ap.Loader(fmnist, batch_size=10, magnitude=7, num_workers=0, seed=3, output="float")

        class Net(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))

            def training_step(self, batch, batch_idx):
                seen.append((batch.epoch, batch.step, batch.index.tolist(), float(batch.images.sum())))
                x, y = batch
                return torch.nn.functional.cross_entropy(self.net(x), y)

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        trainer.fit(Net(), train_dataloaders=train, ckpt_path=ckpt_path)
        if save:
            trainer.save_checkpoint(save)

    whole, first, second = [], [], []
    fit(100, whole)  # 60 batches an epoch: step 50 is mid-epoch
    ckpt = tmp_path / "step50.ckpt"
    fit(50, first, save=ckpt)
    saved = torch.load(ckpt, weights_only=True)  # torch's safe loader, as Lightning's resume uses
    assert "caps" in repr(saved["loops"])  # Lightning keeps the loader's state_dict in its checkpoint
    fit(100, second, ckpt_path=ckpt)
    assert len(first) == 50 and first + second == whole


@pytest.mark.parametrize("kwargs, words", [
    ({"seed": 2 ** 70}, "seed must be an int in [0, 9223372036854775807]"),
    ({"seed": -1}, "seed must be an int in"),
    ({"size": -5}, "size must be a positive int or an (height, width) pair, got -5"),
    ({"size": (32, 0)}, "size must be"),
])
def test_bad_loader_arguments_are_named(fmnist, kwargs, words):
    with pytest.raises(ValueError) as err:
        ap.Loader(fmnist, batch_size=8, num_workers=0, **kwargs)
    assert words in str(err.value)


def test_a_state_dict_that_is_not_one_names_what_is_missing(fmnist):
    loader = ap.Loader(fmnist, batch_size=8, num_workers=0)
    with pytest.raises(ValueError, match="not a Loader state dict: missing epoch, step.*holds epoch"):
        loader.load_state_dict({"x": 1})
    with pytest.raises(TypeError, match="state_dict"):
        loader.load_state_dict([1, 2])


def test_an_empty_class_folder_is_refused_as_imagefolder_does(photo_folder, tmp_path):
    import shutil

    from torchvision.datasets import ImageFolder

    root = tmp_path / "tree"
    shutil.copytree(photo_folder, root)
    (root / "zzz-empty").mkdir()
    with pytest.raises(FileNotFoundError):
        ImageFolder(root)  # the reference behaviour
    with pytest.raises(FileNotFoundError, match=r"zzz-empty.*no image files"):
        ap.FolderSource(root)
