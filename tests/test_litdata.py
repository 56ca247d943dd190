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


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["dali", "ffcv"])
def test_dali_and_ffcv_read_litdata_as_the_torch_backend_does(fmnist_ds, backend):
    """The DALI and FFCV backends take litdata's order too (FFCV converts the dataset to a .beton
    first): in a later epoch, on one rank of two, and resumed on one rank, the batches equal the torch
    backend's, sample for sample and pixel for pixel."""
    pytest.importorskip({"dali": "nvidia.dali", "ffcv": "ffcv"}[backend])
    kw = dict(batch_size=32, seed=3, magnitude=9, num_workers=2, rank=1, world_size=2)

    def batches(backend_name, state=None, **extra):
        loader = ap.Loader(fmnist_ds, backend=backend_name, **{**kw, **extra})
        if state is None:
            loader.set_epoch(1)
        else:
            loader.load_state_dict(state)
        return [(b.index, b.labels, b.images) for b in loader], loader

    ours, _ = batches(backend)
    theirs, _ = batches("torch")
    assert len(ours) == len(theirs) > 1
    for a, b in zip(ours, theirs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    first = ap.Loader(fmnist_ds, backend="torch", **kw)
    next(iter(first))
    state = first.state_dict()
    ours, _ = batches(backend, state, rank=0, world_size=1)
    theirs, _ = batches("torch", state, rank=0, world_size=1)
    assert len(ours) == len(theirs) > 1
    for a, b in zip(ours, theirs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


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


# ------------------------------------------------------------------ object storage (moto's S3 server)

@pytest.fixture(scope="module")
def s3_url(photo_ds):
    """The photo dataset uploaded to a bucket of moto's standalone S3 server on localhost: litdata's real
    client code (boto3 for the index, obstore for chunks) speaks S3 to it over http."""
    pytest.importorskip("moto")
    import socket
    import time

    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        for _ in range(100):
            try:
                client.create_bucket(Bucket="augpipe-test")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.1)
        for f in photo_ds.iterdir():
            client.upload_file(str(f), "augpipe-test", f"photos/{f.name}")
        yield "s3://augpipe-test/photos"
    finally:
        server.terminate()
        server.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_s3_dataset_streams_like_the_local_one(s3_url, photo_ds, tmp_path):
    kw = dict(batch_size=4, size=32, seed=3, num_workers=2, rank=1, world_size=2)
    remote = ap.Loader(ap.LitdataSource(s3_url, cache_dir=tmp_path / "node0"), **kw)
    local = ap.Loader(photo_ds, **kw)
    assert remote.dataset.fingerprint() == local.dataset.fingerprint()
    pairs = list(zip(remote, local))
    assert len(pairs) == len(local) == 3
    for a, b in pairs:
        assert torch.equal(a.index, b.index) and torch.equal(a.images, b.images)
    assert list((tmp_path / "node0" / "chunks").rglob("index.json"))  # litdata's cache is the node's own
    via_string = ap.Loader(f"litdata:{s3_url}", batch_size=4, size=32, num_workers=0)
    assert via_string.dataset.remote and len(via_string.dataset) == 24


def test_s3_missing_files_are_named(s3_url, tmp_path):
    import boto3

    with pytest.raises(OSError, match=r"cannot fetch s3://augpipe-test/nothing/augpipe.json"):
        ap.LitdataSource("s3://augpipe-test/nothing", cache_dir=tmp_path / "a")
    client = boto3.client("s3")
    for f in ("index.json", "augpipe.json", *(f"augpipe-{t}.npy" for t in ("labels", "sizes", "kinds", "nbytes"))):
        client.copy_object(Bucket="augpipe-test", Key=f"broken/{f}", CopySource={"Bucket": "augpipe-test",
                                                                                 "Key": f"photos/{f}"})
    src = ap.LitdataSource("s3://augpipe-test/broken", cache_dir=tmp_path / "b")  # no chunk was copied
    with pytest.raises(OSError, match=r"s3://augpipe-test/broken\[0\].*chunk s3://augpipe-test/broken/chunk-0-0.bin"):
        src.load(0)


# ------------------------------------------------------------------ multi-node, for real on one machine

def _torchrun(args: list[str], nnodes: int, nproc: int, port: int, out: Path, dataset: str, timeout=240):
    """`torchrun --nnodes N --nproc-per-node P` launched once per node (--node-rank), rendezvous on localhost."""
    script = str(Path(__file__).with_name("litdata_ranks.py"))
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    launches = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}",
                                  f"--nproc-per-node={nproc}", f"--node-rank={node}", "--master-addr=127.0.0.1",
                                  f"--master-port={port}", script, dataset, str(out), *args],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for node in range(nnodes)]
    logs = []
    for p in launches:
        try:
            logs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in launches:
                q.kill()
            raise
    return [p.returncode for p in launches], "\n".join(logs)


def _steps(out: Path, world_size: int, below: int | None = None) -> dict[int, list[list[int]]]:
    found = {}
    for r in range(world_size):
        files = sorted(out.glob(f"rank{r}-step*.json"), key=lambda f: int(f.stem.split("step")[1]))
        found[r] = [json.loads(f.read_text()) for f in files
                    if below is None or int(f.stem.split("step")[1]) < below]
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_of_two_ranks_then_a_kill_and_a_restart_on_three(s3_url, photo_ds, tmp_path):
    """torchrun, 2 nodes x 2 processes (gloo), each node with its own cache, reading the s3:// dataset:
    every sample once per epoch over the 4 ranks, equal batch counts. Then rank 3 is killed at step 1;
    the job restarts on 3 ranks from the last checkpoint: nothing consumed comes again, the rest of the
    epoch's stream comes once."""
    full = tmp_path / "full"
    full.mkdir()
    codes, log = _torchrun([], 2, 2, _free_port(), full, s3_url)
    assert codes == [0, 0], log
    steps = _steps(full, 4)
    assert {len(s) for s in steps.values()} == {3}  # 24 samples / 4 ranks / batch 2
    seen = [i for s in steps.values() for b in s for i in b]
    assert sorted(seen) == list(range(24))
    assert {json.loads((full / f"rank{r}-len.json").read_text())["len"] for r in range(4)} == {3}
    assert (full / "cache-node0").is_dir() and (full / "cache-node1").is_dir()

    killed, again = tmp_path / "killed", tmp_path / "again"
    killed.mkdir(), again.mkdir()
    codes, log = _torchrun(["--die-rank", "3", "--die-step", "1"], 2, 2, _free_port(), killed, s3_url)
    assert codes != [0, 0], log
    state = torch.load(killed / "state.pt", weights_only=True)
    assert state["sample_in_epoch"] == 8 and state["world_size"] == 4  # the checkpoint after step 0
    consumed = [i for s in _steps(killed, 4, below=1).values() for b in s for i in b]
    codes, log = _torchrun(["--resume", str(killed / "state.pt")], 1, 3, _free_port(), again, s3_url)
    assert codes == [0], log
    resumed = [i for s in _steps(again, 3).values() for b in s for i in b]
    assert not set(resumed) & set(consumed) and len(resumed) == len(set(resumed))
    src = LitdataSource(photo_ds)
    stream = lockstep([src.order(0, 11, True, r, 4, 2, True) for r in range(4)], 2)
    assert sorted(consumed) == sorted(stream[:8].tolist())
    assert sorted(resumed) == sorted(stream[8:20].tolist())  # 2 whole rounds of 3 ranks x 2; 4 left at the tail
    assert {len(s) for s in _steps(again, 3).values()} == {2}


def test_augpipe_train_streams_a_litdata_dataset_under_torchrun(photo_ds, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "augpipe",
           "train", "--data", f"litdata:{photo_ds}", "--val-size", "0", "--model", "cnn", "--width", "0.25",
           "--size", "32", "--batch-size", "4", "--epochs", "2", "--workers", "0", "--no-progress",
           "--record-indices", "--out", str(out)]
    r = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    seen = [np.load(out / f"indices-rank{r}.npy") for r in (0, 1)]
    src = LitdataSource(photo_ds)
    for epoch in (0, 1):  # each rank's samples are litdata's for that rank, in litdata's order
        for rank in (0, 1):
            mine = seen[rank][seen[rank][:, 0] == epoch, 1]
            assert mine.tolist() == src.order(epoch, 0, True, rank, 2, 4, True)[:len(mine)].tolist()
            assert len(mine) == 12


def test_a_cut_short_chunk_is_named(photo_ds, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(photo_ds, copy)
    chunk = copy / "chunk-0-0.bin"
    chunk.write_bytes(chunk.read_bytes()[:1000])
    src = LitdataSource(copy)
    with pytest.raises(OSError, match=r"\[0\]: litdata could not read it from chunk .*chunk-0-0.bin"):
        src.load(0)
    assert torch.equal(src.load(23), LitdataSource(photo_ds).load(23))  # another chunk still reads


def test_the_teacher_gate_and_caps_act_on_litdata_as_on_the_arrays(tmp_path):
    """One epoch of fallback gating with cap feedback: per sample, the same gating, magnitude, pixels
    and final cap as over the same arrays (the orders differ: litdata's and augpipe's)."""
    from test_gate import POLICY, SIDE, ShiftTeacher, scripted_data

    data = scripted_data(seed=1)
    convert_litdata(data[:2], tmp_path / "scripted", chunk_bytes=4096, progress=False)

    def run(source):
        gate = ap.TeacherGate(ShiftTeacher(), threshold=0.2, action="fallback", fallback="half", mean=0, std=1,
                              feedback=ap.CapFeedback(down=2, up=0.5))
        loader = ap.Loader(source, batch_size=64, num_workers=0, seed=0, policy=POLICY, magnitude=30,
                           crop=ap.FullImage(SIDE), gate=gate)
        loader.set_caps(data[2])
        per_sample = {}
        for b in loader:
            for k, i in enumerate(b.index.tolist()):
                per_sample[i] = (bool(b.gated[k]), float(b.magnitude[k]), b.images[k])
        return per_sample, loader.caps.copy(), gate.state_dict()

    ref, ref_caps, ref_state = run(data[:2])
    mine, caps, state = run(LitdataSource(tmp_path / "scripted"))
    assert 0 < ref_state["gated"] and state["gated"] == ref_state["gated"]
    assert ref.keys() == mine.keys()
    for i, (gated, magnitude, image) in ref.items():
        assert mine[i][:2] == (gated, magnitude) and torch.equal(mine[i][2], image), i
    np.testing.assert_array_equal(caps, ref_caps)
