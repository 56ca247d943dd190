"""litdata datasets: conversion (folders, arrays, WebDataset shards), the Loader over them, litdata's order
and partition, resume on the same and on another world size. litdata and webdataset run for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litdata")
pytest.importorskip("webdataset")

import augpipe as ap  # noqa: E402
from augpipe.sources import DecodeError  # noqa: E402
from augpipe.sources.litdata import LitdataSource, lockstep, restripe  # noqa: E402
from augpipe.sources.to_litdata import convert_litdata  # noqa: E402

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")


@pytest.fixture(scope="module")
def photo_ds(photo_folder, tmp_path_factory):
    """The photo folder converted, in small chunks (several chunks: the shuffle crosses them)."""
    out = tmp_path_factory.mktemp("lit") / "photos"
    convert_litdata(photo_folder, out, chunk_bytes=20_000, progress=False)
    return out


@pytest.fixture(scope="module")
def fmnist_ds(fmnist, tmp_path_factory):
    images, labels = fmnist
    out = tmp_path_factory.mktemp("lit") / "fmnist"
    convert_litdata((images[:400], labels[:400]), out, chunk_bytes=30_000, progress=False)
    return out


def _litdata_iteration(root, epoch, rank, world_size, shuffle=True, seed=0):
    """What litdata itself yields on `rank` of `world_size` (one process) in augpipe epoch `epoch`."""
    from litdata import StreamingDataset
    from litdata.utilities.env import _DistributedEnv

    ds = StreamingDataset(str(root), shuffle=shuffle, seed=seed, drop_last=True)
    ds.distributed_env = _DistributedEnv(world_size, rank, 1)
    ds.set_epoch(epoch + 1)
    return np.array([int(item["index"]) for item in ds], np.int64)


# ------------------------------------------------------------------ conversion

def test_folder_conversion_keeps_bytes_labels_sizes(photo_folder, photo_ds):
    folder, src = ap.sources.FolderSource(photo_folder), LitdataSource(photo_ds)
    assert len(src) == len(folder) == 24 and src.classes == folder.classes
    np.testing.assert_array_equal(src.labels, folder.labels)
    sizes, kinds, nbytes = folder.headers()
    for mine, theirs in zip(src.headers(), (sizes, kinds, nbytes)):
        np.testing.assert_array_equal(mine, theirs)
    for i in range(len(src)):  # every file stored byte for byte (no re-encoding)
        item = src.item(i)
        assert item["image"] == Path(folder.path(i)).read_bytes()
        assert (item["index"], item["label"], item["key"]) == (i, folder.labels[i], folder.path(i))
        assert (item["height"], item["width"]) == tuple(sizes[i])
        assert torch.equal(src.load(i), folder.load(i))
    meta = json.loads((photo_ds / "augpipe.json").read_text())
    assert meta["count"] == 24 and meta["encoding"] == "file"


def test_loader_batches_equal_the_folder_loaders(photo_folder, photo_ds):
    """Same seed: every sample gets the augmentation the folder loader gives it (plans keyed by index),
    through the fast path (JPEG) and torchvision's (PNG, CMYK) alike."""
    kw = dict(batch_size=5, size=40, seed=7, num_workers=2, magnitude=12)
    lit, folder = ap.Loader(f"litdata:{photo_ds}", **kw), ap.Loader(photo_folder, **kw)
    seen = []
    for batch in lit:
        ref = folder.render(batch.index, epoch=batch.epoch)
        assert torch.equal(batch.images, ref.images) and torch.equal(batch.labels, ref.labels)
        assert torch.equal(batch.ops, ref.ops) and torch.equal(batch.mags, ref.mags)
        seen += batch.index.tolist()
    assert len(seen) == len(set(seen)) == len(lit) * 5
    again = lit.render(torch.tensor(seen[:5]), epoch=0)
    assert torch.equal(again.images, folder.render(seen[:5], epoch=0).images)


def test_array_conversion_is_raw_pixels(fmnist, fmnist_ds):
    images, labels = fmnist
    src = LitdataSource(fmnist_ds)
    assert src.encoding == "raw" and not src.encoded and src.channels == 1
    for i in (0, 17, 399):
        assert torch.equal(src.load(i), images[i])
    kw = dict(batch_size=64, seed=1, num_workers=0)
    lit, arr = ap.Loader(str(fmnist_ds), **kw), ap.Loader((images[:400], labels[:400]), **kw)
    batch = next(iter(lit))
    assert torch.equal(batch.images, arr.render(batch.index, epoch=0).images)


def test_processes_read_litdata(photo_ds):
    """Worker processes reopen the dataset (its tables and litdata's reader are not pickled)."""
    kw = dict(batch_size=6, size=32, seed=2, num_workers=2)
    threads = list(ap.Loader(photo_ds, **kw))
    procs = list(ap.Loader(photo_ds, backend_options={"workers": "processes", "decoder": "torchvision"}, **kw))
    assert [b.index.tolist() for b in threads] == [b.index.tolist() for b in procs]
    assert all(torch.equal(a.images, b.images) for a, b in zip(threads, procs))


# ------------------------------------------------------------------ order and partition

@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_order_is_litdatas(photo_ds, world_size):
    src = LitdataSource(photo_ds)
    for epoch in (0, 1):
        for rank in range(world_size):
            mine = src.order(epoch, 0, True, rank, world_size, 4, True)
            np.testing.assert_array_equal(mine, _litdata_iteration(photo_ds, epoch, rank, world_size))
    np.testing.assert_array_equal(src.order(0, 0, False, 0, 1, 4, True),
                                  _litdata_iteration(photo_ds, 0, 0, 1, shuffle=False))
    assert not np.array_equal(src.order(0, 0, True, 0, 1, 4, True), src.order(1, 0, True, 0, 1, 4, True))


def test_ranks_get_equal_batches_and_disjoint_samples(photo_ds):
    loaders = [ap.Loader(photo_ds, batch_size=3, size=32, rank=r, world_size=3, num_workers=0) for r in range(3)]
    counts = {len(ld) for ld in loaders}
    assert len(counts) == 1 and counts.pop() >= 2
    seen = [i for ld in loaders for b in ld for i in b.index.tolist()]
    assert len(seen) == len(set(seen)) == 3 * 3 * len(loaders[0])


def test_lockstep_and_restripe_are_litdatas():
    from litdata.streaming.elastic import lockstep_stream_from_worker_seqs, restripe_items

    orders = [np.arange(r * 100, r * 100 + 10) for r in range(3)]
    seqs = [[(0, int(i)) for i in o[:9]] for o in orders]  # litdata's: full batches of 3
    stream = lockstep(orders, 3)
    assert stream.tolist() == [i for _, i in lockstep_stream_from_worker_seqs(seqs, world_size=3, num_workers=1,
                                                                              batch_size=3)]
    rest = stream[6:]
    plans = restripe_items([(0, int(i)) for i in rest], world_size=2, num_workers=1, batch_size=3, drop_last=True)
    for rank in range(2):
        assert restripe(rest, rank, 2, 3).tolist() == [i for _, items in plans[rank] for i in items]


# ------------------------------------------------------------------ resume

def _epoch(loader):
    return {int(i): img for b in loader for i, img in zip(b.index.tolist(), b.images)}


def test_same_world_size_resume_gives_the_same_batches(photo_ds):
    kw = dict(batch_size=2, size=32, seed=5, num_workers=2, rank=1, world_size=2)
    full = [b for b in ap.Loader(photo_ds, **kw)]
    first = ap.Loader(photo_ds, **kw)
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    again = ap.Loader(photo_ds, **kw)
    again.load_state_dict(state)
    rest = list(again)
    assert [b.step for b in rest] == [b.step for b in full[2:]]
    assert all(torch.equal(a.images, b.images) and torch.equal(a.index, b.index) for a, b in zip(rest, full[2:]))


@pytest.mark.parametrize("before,after", [(2, 1), (1, 2), (4, 2), (2, 3)])
def test_elastic_resume_sees_each_remaining_sample_once(photo_ds, before, after):
    """A job on `before` ranks stopped after 1 step resumes on `after` ranks: nothing consumed comes
    again, the rest of the global stream comes once (whole rounds), each sample with the pixels the
    uninterrupted run gives it."""
    kw = dict(batch_size=2, size=32, seed=9, magnitude=14, num_workers=0)
    reference = _epoch(ap.Loader(photo_ds, **kw))  # any world size: a sample's pixels depend on its index only
    old = [ap.Loader(photo_ds, rank=r, world_size=before, **kw) for r in range(before)]
    consumed, states = [], []
    for ld in old:
        batch = next(iter(ld))
        consumed += batch.index.tolist()
        states.append(ld.state_dict())
    assert len({s["sample_in_epoch"] for s in states}) == 1 and states[0]["sample_in_epoch"] == 2 * before
    stream = lockstep([old[0].dataset.order(0, 9, True, r, before, 2, True) for r in range(before)], 2)
    assert sorted(consumed) == sorted(stream[:2 * before].tolist())
    new = [ap.Loader(photo_ds, rank=r, world_size=after, **kw) for r in range(after)]
    resumed = {}
    for ld in new:
        ld.load_state_dict(states[0])
        batches = list(ld)
        for b in batches:
            for i, img in zip(b.index.tolist(), b.images):
                assert i not in resumed and i not in consumed
                resumed[i] = img
    rest = stream[2 * before:]
    whole = len(rest) // (2 * after) * 2 * after
    assert sorted(resumed) == sorted(rest[:whole].tolist())
    assert len({len(ld) - ld.state_dict()["step"] for ld in new}) == 1  # equal batch counts on every rank
    for i, img in resumed.items():
        assert torch.equal(img, reference[i])


def test_elastic_state_chains(photo_ds):
    """2 ranks -> 1 rank (one step) -> 3 ranks: still each remaining sample once."""
    kw = dict(batch_size=2, size=32, seed=4, num_workers=0)
    olds = [ap.Loader(photo_ds, rank=r, world_size=2, **kw) for r in range(2)]
    consumed = [i for ld in olds for i in next(iter(ld)).index.tolist()]
    mid = ap.Loader(photo_ds, **kw)
    mid.load_state_dict(olds[0].state_dict())
    it = iter(mid)
    consumed += next(it).index.tolist()
    state = mid.state_dict()
    assert state["epoch_world_size"] == 2 and state["sample_in_epoch"] == 6
    last = [ap.Loader(photo_ds, rank=r, world_size=3, **kw) for r in range(3)]
    rest = []
    for ld in last:
        ld.load_state_dict(state)
        rest += [i for b in ld for i in b.index.tolist()]
    assert not set(rest) & set(consumed) and len(rest) == len(set(rest)) == 18  # 24 - 6 consumed, 3 rounds of 6


# ------------------------------------------------------------------ bad input

def test_bad_datasets_are_named(tmp_path, photo_ds):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ap.Loader(f"litdata:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="index.json"):
        LitdataSource(tmp_path / "empty")
    half = tmp_path / "half"
    half.mkdir()
    (half / "index.json").write_text((photo_ds / "index.json").read_text())
    with pytest.raises(ValueError, match="unfinished conversion"):
        ap.Loader(f"litdata:{half}")


def test_state_from_another_dataset_or_a_fixed_world_source(photo_ds, fmnist_ds, fmnist):
    a = ap.Loader(photo_ds, batch_size=2, size=32)
    state = a.state_dict()
    other = ap.Loader(fmnist_ds, batch_size=2)
    state["num_samples"] = len(other.dataset)
    with pytest.raises(ValueError, match="another dataset"):
        other.load_state_dict(state)
    images, labels = fmnist
    arrays = [ap.Loader((images[:40], labels[:40]), batch_size=2, rank=r, world_size=2) for r in range(2)]
    next(iter(arrays[0]))
    with pytest.raises(ValueError, match="only streaming sources"):
        ap.Loader((images[:40], labels[:40]), batch_size=2).load_state_dict(arrays[0].state_dict())


def test_corrupt_files_raise_or_are_skipped_and_output_is_atomic(make_folder, jpeg_bytes, tmp_path):
    good = jpeg_bytes()
    root = make_folder({"a/1.jpg": good, "a/2.jpg": good[:-200], "b/3.jpg": jpeg_bytes(seed=2),
                        "b/4.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 40})
    out = tmp_path / "out"
    with pytest.raises(DecodeError, match="2.jpg"):
        convert_litdata(root, out, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nothing that looks like a dataset
    r = convert_litdata(root, out, on_error="skip", progress=False)
    assert r.written == 2 and sorted(Path(p).name for p, _ in r.skipped) == ["2.jpg", "4.png"]
    assert len(ap.Loader(out, batch_size=1, size=16)) == 2
    with pytest.raises(FileExistsError):
        convert_litdata(root, out, progress=False)


# ------------------------------------------------------------------ WebDataset shards

def _shards(tmp_path, jpeg_bytes, n=10, per_shard=4, broken=None):
    import webdataset as wds

    paths = []
    for s in range(-(-n // per_shard)):
        path = tmp_path / f"train-{s:03d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i in range(s * per_shard, min(n, (s + 1) * per_shard)):
                sample = {"__key__": f"sample{i:04d}", "jpg": jpeg_bytes((40 + i, 50), seed=i), "cls": i % 3}
                if broken and i in broken:
                    sample = broken[i](sample)
                sink.write(sample)
        paths.append(path)
    return paths


def test_webdataset_shards_convert_byte_for_byte(tmp_path, jpeg_bytes):
    paths = _shards(tmp_path, jpeg_bytes)
    out = tmp_path / "wds"
    r = convert_litdata(str(tmp_path / "train-{000..002}.tar"), out, progress=False)
    assert r.written == 10
    src = LitdataSource(out)
    assert src.classes == ["0", "1", "2"] and src.labels.tolist() == [i % 3 for i in range(10)]
    for i in range(10):
        item = src.item(i)
        assert item["image"] == jpeg_bytes((40 + i, 50), seed=i)
        assert item["key"] == f"{paths[i // 4]}:sample{i:04d}" and (item["height"], item["width"]) == (40 + i, 50)
    folder_of_shards = convert_litdata(tmp_path, tmp_path / "wds2", progress=False)
    assert folder_of_shards.written == 10
    batch = next(iter(ap.Loader(out, batch_size=4, size=24, num_workers=0)))
    assert batch.images.shape == (4, 3, 24, 24)


def test_webdataset_bad_members_are_named(tmp_path, jpeg_bytes):
    def no_label(s):
        return {k: v for k, v in s.items() if k != "cls"}

    def truncated(s):
        return dict(s, jpg=s["jpg"][:-300])

    _shards(tmp_path, jpeg_bytes, n=8, broken={2: no_label, 5: truncated})
    with pytest.raises(DecodeError, match=r"train-000.tar:sample0002.*no label"):
        convert_litdata(tmp_path, tmp_path / "o1", progress=False)
    r = convert_litdata(tmp_path, tmp_path / "o2", on_error="skip", progress=False)
    assert r.written == 6 and [n.rsplit(":", 1)[1] for n, _ in r.skipped] == ["sample0002", "sample0005"]
    bad = tmp_path / "cut" / "x.tar"
    bad.parent.mkdir()
    bad.write_bytes((tmp_path / "train-000.tar").read_bytes()[:3000])
    with pytest.raises(ValueError, match="x.tar is not a readable tar"):
        convert_litdata(bad, tmp_path / "o3", progress=False)
    with pytest.raises(FileNotFoundError, match="8 of 10 WebDataset shards do not exist, the first: .*train-002.tar"):
        convert_litdata(str(tmp_path / "train-{000..009}.tar"), tmp_path / "o4", progress=False)


def test_cli_converts_and_reports_throughput(photo_folder, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "augpipe", "convert", str(photo_folder), str(out), "--format", "litdata"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "24 samples" in r.stdout and "img/s" in r.stdout
    r = subprocess.run([sys.executable, "-m", "augpipe", "convert", str(photo_folder), str(out), "--format", "litdata"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "exists" in r.stderr
