"""Same call, same output, every backend.

One table of Loader calls (arrays with 1 and 3 channels, a JPEG folder;
training and evaluation; uint8 and float output) runs on every backend. What
the trainer receives must not depend on the backend: shape, channels, dtype,
value range, labels, order, and the plan (indices, magnitudes, ops, signed
magnitudes, epoch, step) are identical; pixels are identical for in-memory
arrays, and within the per-backend bounds below for JPEG folders:

    backend  folder bound over a run (mean |diff| in levels, share of values off by > 2)
    dali     0.75, 4 %  DALI's decoder and resampler (measured: 0.16-0.54, 0.1-3.1 %)
    ffcv     exact      the folder is converted losslessly (JPEG files stored as they are,
                        other images as pixels) and decoded with the accurate IDCT
                        (torchvision's), box-only decoding is bit-identical, the resize is
                        torch's arithmetic
One batch can exceed these (AutoContrast and Equalize spread a small input
difference over the image: up to 1.05 / 6.3 % measured for one DALI batch).

`loader.render` re-renders a batch exactly on every backend for arrays.
"""
import numpy as np
import pytest
import torch

import augpipe as ap
from augpipe.sources import FashionMNIST

BACKENDS = ("torch", "ffcv", "dali")
FOLDER_BOUND = {"dali": (0.75, 0.04), "ffcv": (0.0, 0.0)}


@pytest.fixture(scope="module")
def sources(photo_folder):
    grey = FashionMNIST("test")
    idx = np.arange(256)
    return {"grey": (grey.images[idx].clone(), grey.labels[idx]),
            "rgb": (FashionMNIST("test", channels=3).images[idx].clone(), grey.labels[idx]),
            "folder": str(photo_folder)}


CALLS = {  # name: (source, Loader keyword arguments)
    "arrays-1ch-train-uint8": ("grey", dict(train=True, output="uint8", magnitude=12)),
    "arrays-3ch-train-float": ("rgb", dict(train=True, output="float", magnitude=12)),
    "arrays-1ch-eval-float": ("grey", dict(train=False, output="float", batch_size=100)),
    "folder-train-uint8": ("folder", dict(train=True, output="uint8", size=48)),
    "folder-eval-float": ("folder", dict(train=False, output="float", size=40)),
    # mixing and erasing run after the backend, on what it delivers: the same batches stay the same
    "arrays-3ch-train-float-mixed": ("rgb", dict(train=True, output="float", magnitude=12,
                                                 mix=ap.Mixing(0.8, 1.0, label_smoothing=0.1),
                                                 erase=ap.RandomErasing(0.5, value="pixel", count=(1, 2)))),
    "arrays-1ch-train-uint8-mixed": ("grey", dict(train=True, output="uint8", magnitude=12, mix=ap.MixUp(0.4),
                                                  erase=ap.RandomErasing(0.5, fill=127))),
    "folder-train-uint8-mixed": ("folder", dict(train=True, output="uint8", size=48, mix=ap.CutMix(1.0),
                                                erase=ap.RandomErasing(0.5))),
    # two views per sample: each view is its own pipeline of the backend, planned from its own seed
    "arrays-3ch-train-float-views-mixed": ("rgb", dict(train=True, output="float", magnitude=12, views=2,
                                                       mix=ap.CutMix(1.0), erase=ap.RandomErasing(0.5))),
    "folder-train-uint8-views": ("folder", dict(train=True, output="uint8", size=48, views=2)),
}
MIX_FIELDS = ("targets", "lam", "mix_index", "mix_box", "erased")


def _levels(batch, loader) -> torch.Tensor:
    """Images on the 0..255 scale, whatever the output format."""
    if batch.images.dtype == torch.uint8:
        return batch.images.float()
    mean = torch.tensor(loader.mean).view(1, -1, 1, 1)
    std = torch.tensor(loader.std).view(1, -1, 1, 1)
    return (batch.images * std + mean) * 255


def _loader(sources, name, backend, tmp_path):
    source, kwargs = CALLS[name]
    kwargs = {"batch_size": 64 if source != "folder" else 8, "seed": 7, "num_workers": 1, **kwargs}
    options = {"cache": str(tmp_path / f"{name}.beton")} if backend == "ffcv" else None
    return ap.Loader(sources[source], backend=backend, backend_options=options, **kwargs)


@pytest.mark.parametrize("name", CALLS)
def test_same_call_same_output_on_every_backend(sources, name, tmp_path):
    ref_loader = _loader(sources, name, "torch", tmp_path)
    ref = list(ref_loader)
    channels = 1 if CALLS[name][0] == "grey" else 3
    assert ref and ref[0].images.shape[1] == channels
    for backend in BACKENDS[1:]:
        loader = _loader(sources, name, backend, tmp_path)
        got = list(loader)
        assert len(got) == len(ref) == len(loader), backend
        diffs = []
        for a, b in zip(ref, got):
            assert b.images.shape == a.images.shape and b.images.dtype == a.images.dtype, backend
            assert (b.epoch, b.step) == (a.epoch, a.step), backend
            for field in ("labels", "index", "magnitude", "ops", "mags", *MIX_FIELDS, "view"):
                x, y = getattr(a, field), getattr(b, field)
                if x is None and y is None and field in (*MIX_FIELDS, "view"):
                    continue
                assert x.dtype == y.dtype and torch.equal(x, y), (backend, field)
            if CALLS[name][0] == "folder":
                diffs.append((_levels(a, ref_loader) - _levels(b, loader)).abs().flatten())
            else:
                assert torch.equal(a.images, b.images), backend
        if diffs:
            diff = torch.cat(diffs)
            mean, share = FOLDER_BOUND[backend]
            assert diff.mean() <= mean and (diff > 2).float().mean() <= share, \
                (backend, float(diff.mean()), float((diff > 2).float().mean()))
        if b.images.dtype == torch.uint8:
            assert int(b.images.max()) <= 255 and int(b.images.min()) >= 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["arrays-3ch-train-float", "arrays-3ch-train-float-mixed",
                                  "arrays-3ch-train-float-views-mixed"])
def test_render_reproduces_a_batch_and_keeps_its_choices(sources, backend, name, tmp_path):
    loader = _loader(sources, name, backend, tmp_path)
    batch = next(iter(loader))
    view = batch.view  # None with one view; a multi-view batch is rendered view by view
    assert (view is None) == (loader.views == 1)
    again = loader.render(batch.index, batch.magnitude, epoch=batch.epoch, view=view)
    assert torch.equal(again.images, batch.images) and torch.equal(again.ops, batch.ops)
    if loader.mix is not None:  # the mixed and erased batch, bit for bit, and its soft targets
        assert (batch.lam < 1).any() and (batch.erased[:, :, 2] > 0).any()
        for field in MIX_FIELDS:
            assert torch.equal(getattr(again, field), getattr(batch, field)), field
        plain = loader.render(batch.index, batch.magnitude, epoch=batch.epoch, mix=False, view=view)
        assert plain.lam is None and not torch.equal(plain.images, batch.images)
    weak = loader.render(batch.index, 0.0, epoch=batch.epoch, view=view)
    assert torch.equal(weak.ops, batch.ops) and torch.all(weak.mags == 0) and torch.all(weak.magnitude == 0)
    half = loader.render(batch.index, batch.magnitude / 2, epoch=batch.epoch, view=view)
    torch.testing.assert_close(half.mags, batch.mags / 2)  # same ops and signs, half the strength
    with pytest.raises(ValueError, match="indices"):
        loader.render([len(loader.dataset)])
    with pytest.raises(ValueError, match="magnitude"):
        loader.render(batch.index, 31.0)


def test_dali_reads_a_uniform_size_beton(tmp_path):
    """A .beton whose images share one size is a fixed-shape source that is not
    in memory: the DALI backend decodes it through the source."""
    from augpipe.sources.convert import convert

    small = ap.ArraySource(FashionMNIST("test", channels=3).images[:128].numpy(), FashionMNIST("test").labels[:128])
    path = tmp_path / "uniform.beton"
    convert(small, path, image_format="raw", num_workers=1)
    beton = ap.open_source(str(path))
    assert beton.fixed_shape == (3, 28, 28) and not beton.in_memory
    kwargs = dict(batch_size=32, seed=1, num_workers=1, magnitude=9)
    ref = list(ap.Loader(small, backend="torch", **kwargs))
    got = list(ap.Loader(beton, backend="dali", **kwargs))
    assert len(got) == len(ref) == 4
    for a, b in zip(ref, got):
        assert torch.equal(a.index, b.index) and torch.equal(a.images, b.images)
