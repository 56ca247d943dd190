"""augpipe.Loader with the torch backend: determinism, resume, knob, caps, sharding, errors."""
import math
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import augpipe as ap
from augpipe.core.plan import make_plan
from augpipe.engine.exec_torch import apply_ops
from augpipe.engine.reference import crop_windows
from augpipe.sources import FashionMNIST


def batches(loader, limit=None):
    out = []
    for b in loader:
        out.append((b[0].clone(), b[1].clone(), b.index.clone(), b.magnitude.clone()))
        if limit is not None and len(out) == limit:
            break
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert torch.equal(u, v)


def test_batches_unpack_like_a_dataloader_and_carry_index_and_magnitude(fmnist):
    loader = ap.Loader(fmnist, batch_size=64, magnitude=7, num_workers=0, seed=0)
    assert len(loader) == 600 // 64 and loader.batch_size == 64 and len(loader.dataset) == 600
    images, labels = b = next(iter(loader))
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and torch.equal(labels, torch.from_numpy(fmnist[1][b.index.numpy()]))
    assert torch.all(b.magnitude == 7)


def test_loader_batch_equals_plan_then_executor(fmnist):
    """The loader adds nothing of its own: a batch is exactly plan + crop + flip + ops."""
    loader = ap.Loader(fmnist, batch_size=50, magnitude=12, num_workers=0, seed=4)
    b = next(iter(loader))
    idx = b.index.numpy()
    plan = make_plan(4, 0, idx, 28, 28, 12.0, None, loader.crop, ap.RandAugment(2).lower())
    assert loader.crop == ap.RandomCrop(28, padding=3)  # CIFAR-style default for arrays: pad size // 8
    x = torch.stack([torch.nn.functional.pad(im, [3] * 4)[:, t + 3:t + 31, l + 3:l + 31]
                     for im, (t, l, _, _) in zip(fmnist[0][idx], plan.box)])
    x = torch.where(torch.from_numpy(plan.flip)[:, None, None, None], x.flip(-1), x)
    assert torch.equal(x, crop_windows(fmnist[0][idx], plan.box, plan.flip))
    assert torch.equal(b[0], apply_ops(x, plan.ops, plan.mags, plan.space))
    assert not torch.equal(b[0], x)


WORKER_KINDS = pytest.mark.parametrize("kind", ["threads", "processes"])


@WORKER_KINDS
def test_same_seed_bit_identical_with_0_and_2_workers_other_seed_differs(fmnist, kind):
    a = batches(ap.Loader(fmnist, batch_size=64, num_workers=0, seed=3))
    b = batches(ap.Loader(fmnist, batch_size=64, num_workers=2, seed=3, backend_options={"workers": kind}))
    assert_same(a, b)
    c = batches(ap.Loader(fmnist, batch_size=64, num_workers=0, seed=4))
    assert not torch.equal(a[0][0], c[0][0])


def test_epochs_advance_and_set_epoch_replays(fmnist):
    loader = ap.Loader(fmnist, batch_size=100, num_workers=0)
    e0, e1 = batches(loader), batches(loader)
    assert loader.epoch == 2 and not torch.equal(e0[0][2], e1[0][2])
    loader.set_epoch(1)
    assert_same(batches(loader), e1)


@pytest.mark.parametrize("workers", [0, 2])
def test_state_dict_resumes_mid_epoch_identically(fmnist, workers):
    ref = ap.Loader(fmnist, batch_size=64, num_workers=workers, seed=11, backend_options={"workers": "processes"})
    ref.set_epoch(2)
    full = batches(ref)
    first = ap.Loader(fmnist, batch_size=64, num_workers=workers, seed=11)
    first.set_epoch(2)
    head = batches(first, limit=3)
    state = first.state_dict()
    assert state["step"] == 3 and state["epoch"] == 2
    resumed = ap.Loader(fmnist, batch_size=64, num_workers=workers, seed=11)
    resumed.load_state_dict(state)
    assert_same(head + batches(resumed), full)
    with pytest.raises(ValueError, match="seed"):
        ap.Loader(fmnist, batch_size=64, num_workers=0, seed=12).load_state_dict(state)


@WORKER_KINDS
def test_knob_change_mid_epoch_reaches_persistent_workers(fmnist, kind):
    workers, prefetch = 2, 2
    loader = ap.Loader(fmnist, batch_size=20, magnitude=9, num_workers=workers, prefetch_factor=prefetch,
                       backend_options={"workers": kind})
    lag = workers * prefetch
    assert loader.lag == lag
    seen = []
    for step, b in enumerate(loader):
        seen.append(float(b.magnitude[0]))
        assert torch.all(b.magnitude == b.magnitude[0])
        if step == 5:
            loader.magnitude = 3.5
    # resolved at dispatch: exactly the `lag` batches already dispatched keep the old value
    assert seen[:6 + lag] == [9.0] * (6 + lag) and seen[6 + lag:] == [3.5] * (len(seen) - 6 - lag), seen
    second = [float(b.magnitude[0]) for b in loader]  # next epoch, same workers
    assert second == [3.5] * len(loader)


def test_knob_change_is_immediate_without_workers(fmnist):
    loader = ap.Loader(fmnist, batch_size=100, magnitude=9, num_workers=0)
    mags = []
    for step, b in enumerate(loader):
        mags.append(float(b.magnitude[0]))
        loader.magnitude = step + 1.5
    assert mags == [9.0] + [s + 1.5 for s in range(len(mags) - 1)]


def test_schedule_is_exact_per_step_with_workers(fmnist):
    loader = ap.Loader(fmnist, batch_size=50, num_workers=2)
    loader.set_magnitude(lambda epoch, step: min(30.0, 2.0 * step + epoch))
    loader.set_epoch(3)
    got = [(b.step, float(b.magnitude[0])) for b in loader]
    assert got == [(s, min(30.0, 2.0 * s + 3)) for s in range(len(loader))]
    loader.set_magnitude(lambda e, s: 99)
    with pytest.raises(ValueError, match="schedule"):
        next(iter(loader))


@WORKER_KINDS
def test_caps_bound_per_sample_magnitudes_live(fmnist, kind):
    loader = ap.Loader(fmnist, batch_size=100, magnitude=10, num_workers=2, backend_options={"workers": kind})
    caps = np.random.default_rng(0).uniform(0, 20, 600).astype(np.float32)
    loader.set_caps(caps)  # after the workers exist: shared memory, not a copy
    for b in loader:
        np.testing.assert_allclose(b.magnitude.numpy(), np.minimum(10, caps[b.index.numpy()]), rtol=1e-6)
    with pytest.raises(ValueError, match="caps"):
        loader.set_caps(np.full(600, 31.0))


def test_explicit_rank_world_shards_are_disjoint_cover_and_equal(fmnist):
    shards = []
    for rank in range(2):
        loader = ap.Loader(fmnist, batch_size=30, num_workers=0, rank=rank, world_size=2, seed=5)
        shards.append(np.concatenate([b.index.numpy() for b in loader]))
        assert len(loader) == 10
    assert len(shards[0]) == len(shards[1]) == 300
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(600))
    # 601 samples: padded without drop_last so both ranks still yield the same batch count
    odd = (torch.cat([fmnist[0], fmnist[0][:1]]), np.concatenate([fmnist[1], fmnist[1][:1]]))
    counts = [len(list(ap.Loader(odd, batch_size=30, num_workers=0, rank=r, world_size=2, drop_last=False)))
              for r in range(2)]
    assert counts == [11, 11]


def _distributed_worker(rank, world, init_file, out_dir, images, labels):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    loader = ap.Loader((images, labels), batch_size=25, num_workers=0, seed=9)
    idx = np.concatenate([b.index.numpy() for b in loader])
    np.save(os.path.join(out_dir, f"rank{rank}.npy"), np.array([loader.rank, loader.world_size, len(loader), *idx]))
    dist.barrier()
    dist.destroy_process_group()


def test_torch_distributed_gloo_group_of_two(fmnist, tmp_path):
    init = tempfile.mktemp(dir=tmp_path)
    mp.spawn(_distributed_worker, args=(2, init, str(tmp_path), fmnist[0][:200], fmnist[1][:200]), nprocs=2)
    res = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    assert [r[:3].tolist() for r in res] == [[0, 2, 4], [1, 2, 4]]
    a, b = set(res[0][3:]), set(res[1][3:])
    assert len(a) == len(b) == 100 and not a & b and a | b == set(range(200))


def test_folder_source_random_resized_crop_and_float_output(photo_folder):
    loader = ap.Loader(photo_folder, batch_size=8, size=48, output="float", num_workers=2, seed=0)
    images, labels = next(iter(loader))
    assert images.shape == (8, 3, 48, 48) and images.dtype == torch.float32
    assert -2.2 < float(images.min()) < 0 < float(images.max()) < 2.7  # ImageNet-normalised
    ev = ap.Loader(photo_folder, batch_size=4, size=32, train=False, num_workers=0)
    assert not ev.shuffle and not ev.drop_last and len(ev) == math.ceil(len(ev.dataset) / 4)
    a, b = next(iter(ev)), next(iter(ev))
    assert torch.equal(a[0], b[0]) and torch.all(a.index == torch.arange(4))


def test_ops_applied_after_transfer_equal_ops_in_workers(fmnist):
    """The CUDA layout (workers crop, the main process applies the ops) gives
    the same batches; exercised here on CPU."""
    a = batches(ap.Loader(fmnist, batch_size=100, num_workers=2, seed=2))
    late = ap.Loader(fmnist, batch_size=100, num_workers=2, seed=2, backend_options={"ops": "device"})
    assert_same(batches(late), a)
    with pytest.raises(ValueError, match="backend_options\\['ops'\\]"):
        ap.Loader(fmnist, batch_size=100, num_workers=0, backend_options={"ops": "gpu"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_output_equals_cpu(fmnist):
    a = batches(ap.Loader(fmnist, batch_size=100, num_workers=2, seed=2))
    b = ap.Loader(fmnist, batch_size=100, num_workers=2, seed=2, device="cuda")
    got = [tuple(t.cpu() for t in x) for x in batches(b)]
    assert_same(got, a)


@pytest.mark.parametrize("policy", ["trivialaugment", "autoaugment", ap.RandAugment(3), "identity"])
def test_every_policy_runs_through_the_loader(fmnist, policy):
    b = next(iter(ap.Loader(fmnist, batch_size=64, policy=policy, magnitude=20, num_workers=0)))
    assert b[0].shape == (64, 1, 28, 28)


def test_fashion_mnist_by_name_resized_to_32_three_channels():
    loader = ap.Loader(FashionMNIST("test", channels=3), batch_size=16, size=32, num_workers=0)
    assert next(iter(loader))[0].shape == (16, 3, 32, 32)
    assert len(ap.Loader("fashion-mnist:test", batch_size=100, num_workers=0)) == 100


@pytest.mark.parametrize("magnitude", [-1, 31, float("nan"), "high"])
def test_bad_magnitude_is_a_value_error_naming_it(fmnist, magnitude):
    with pytest.raises(ValueError, match="magnitude"):
        ap.Loader(fmnist, magnitude=magnitude)
    loader = ap.Loader(fmnist, num_workers=0)
    with pytest.raises(ValueError, match="magnitude"):
        loader.magnitude = magnitude


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"backend": "tensorflow"}, "backend"),
    ({"policy": "randaugmentation"}, "policy"),
    ({"output": "int"}, "output"),
    ({"on_error": "ignore"}, "on_error"),
    ({"rank": 2, "world_size": 2}, "rank"),
])
def test_bad_arguments_are_named(fmnist, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ap.Loader(fmnist, **kwargs)


def test_corrupt_jpeg_raises_naming_the_file_or_is_skipped_and_counted(make_folder, jpeg_bytes):
    good = jpeg_bytes()
    files = {f"a/{i}.jpg": jpeg_bytes(seed=i) for i in range(6)}
    files["a/broken.jpg"] = good[: len(good) // 2]
    files["b/garbage.jpg"] = b"\xff\xd8 not a jpeg at all"
    root = make_folder(files)
    with pytest.raises(ap.DecodeError, match=r"broken\.jpg.*truncated"):  # the fast path checks ends up front
        ap.Loader(root, batch_size=8, size=32, num_workers=2, drop_last=False)
    slow = ap.Loader(root, batch_size=8, size=32, num_workers=2, drop_last=False,
                     backend_options={"decoder": "torchvision"})
    with pytest.raises(ap.DecodeError, match=r"(broken|garbage)\.jpg"):  # the torchvision path: at decode time
        list(slow)
    skip = ap.Loader(root, batch_size=8, size=32, num_workers=2, drop_last=False, on_error="skip")
    got = [b for b in skip]
    assert sum(len(b[1]) for b in got) == 6
    assert sorted(os.path.basename(p) for p, _ in skip.errors) == ["broken.jpg", "garbage.jpg"]
    with pytest.raises(ValueError, match="workers"):
        ap.Loader(root, backend_options={"workers": "fibers"})


def test_zero_byte_file_and_empty_folder(make_folder, jpeg_bytes):
    root = make_folder({"a/ok.jpg": jpeg_bytes(), "a/empty.jpg": b""})
    with pytest.raises(ValueError, match="empty.jpg"):
        ap.Loader(root)
    loader = ap.Loader(root, on_error="skip", batch_size=1, num_workers=0, size=16)
    assert len(loader.dataset) == 1 and "empty.jpg" in loader.errors[0][0]
    empty = make_folder({"a/readme.txt": b"no images"})
    with pytest.raises(ValueError, match=str(empty)):
        ap.Loader(empty)
