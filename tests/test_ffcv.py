"""The FFCV backend, the .beton conversion and the crop/resize kernels."""
from __future__ import annotations

import os
import subprocess
import sys

import ffcv  # noqa: F401  (installed by the setup: a missing FFCV fails here, never skips)
import numpy as np
import pytest
import torch

from augpipe.core.policy import Identity, RandAugment, RandomCrop
from augpipe.loader import Loader
from augpipe.sources import ArraySource, DecodeError, FashionMNIST, FolderSource
from augpipe.sources.beton import BetonSource
from augpipe.sources.convert import convert

# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def photo_beton(photo_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("beton") / "photos.beton"
    convert(photo_folder, path, image_format="jpg", num_workers=2)
    return BetonSource(path)


@pytest.fixture(scope="module")
def fashion_beton(tmp_path_factory):
    src = FashionMNIST("test", channels=3)
    small = ArraySource(src.images[:512].numpy(), src.labels[:512])
    path = tmp_path_factory.mktemp("beton") / "fashion.beton"
    convert(small, path, image_format="raw", num_workers=2)
    return small, BetonSource(path)


def _pair(source, dct_scale=False, **kw):
    base = dict(batch_size=8, seed=5, num_workers=2)
    base.update(kw)
    ffcv = Loader(source, backend="ffcv", backend_options={"dct_scale": dct_scale}, **base)
    torch_ = Loader(source, backend="torch", **{**base, "num_workers": 0})
    return ffcv, torch_


# ------------------------------------------------------------------ kernels

@pytest.mark.parametrize("rgbx", [False, True], ids=["rgb", "rgbx"])
def test_resize_kernel_matches_torchvision_bit_for_bit(rgbx):
    from torchvision.transforms.v2 import functional as F

    from augpipe.kernels.resize import resize_box, resize_box_rgbx, resize_scratch_rgbx

    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    src4 = np.dstack([src, rng.integers(0, 256, (90, 120, 1), dtype=np.uint8)])  # X: anything
    tmp = np.empty(max(90 * 224 * 3, resize_scratch_rgbx(90, 120, 224, 224)), np.uint8)
    for out in ((32, 32), (224, 224), (50, 70), (60, 120)):
        for i in range(8):
            h, w = int(rng.integers(1, 91)), int(rng.integers(1, 121))
            if i == 0:
                h = out[0] if out[0] <= 90 else h  # one pass is a plain copy
            top, left = int(rng.integers(0, 91 - h)), int(rng.integers(0, 121 - w))
            flip = bool(rng.integers(0, 2))
            dst = np.empty((*out, 3), np.uint8)
            if rgbx:
                resize_box_rgbx(src4, top, left, h, w, flip, 0, dst, tmp)
            else:
                resize_box(src, top, left, h, w, flip, 0, dst, tmp)
            ref = F.resize(torch.from_numpy(src).permute(2, 0, 1)[:, top:top + h, left:left + w], list(out),
                           antialias=True)
            ref = (ref.flip(-1) if flip else ref).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(dst, ref, err_msg=str((top, left, h, w, out, flip)))


def test_copy_box_pads_with_fill():
    from augpipe.kernels.resize import resize_box, resize_box_rgbx

    src = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    src4 = np.dstack([src, np.full((4, 4, 1), 99, np.uint8)])
    for fn, image in ((resize_box, src), (resize_box_rgbx, src4)):
        dst = np.empty((4, 4, 3), np.uint8)
        fn(image, -1, 2, 4, 4, False, 7, dst, np.empty(64, np.uint8))
        assert (dst[0] == 7).all() and (dst[:, 2:] == 7).all()
        np.testing.assert_array_equal(dst[1:, :2], src[:3, 2:])


# --------------------------------------------------------------- conversion

def test_convert_corrupt_jpeg_raise_names_file_and_leaves_nothing(make_folder, jpeg_bytes, tmp_path):
    good = jpeg_bytes((40, 50), 1)
    root = make_folder({"a/0.jpg": jpeg_bytes((40, 50), 0), "a/1.jpg": good, "b/bad.jpg": good[: len(good) // 3],
                        "b/2.jpg": jpeg_bytes((30, 60), 2)})
    out = tmp_path / "x.beton"
    with pytest.raises(DecodeError, match="bad.jpg"):
        convert(root, out, num_workers=2)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    result = convert(root, out, on_error="skip", num_workers=2)
    assert result.written == 3 and len(result.skipped) == 1 and result.skipped[0][0].endswith("bad.jpg")
    beton = BetonSource(out)
    assert len(beton) == 3 and list(beton.labels) == [0, 0, 1] and list(beton.source_index) == [0, 1, 2]  # b/2.jpg sorts before b/bad.jpg
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_convert_raw_keeps_pixels_and_labels(photo_folder, tmp_path):
    out = tmp_path / "raw.beton"
    convert(photo_folder, out, image_format="raw", num_workers=2)
    folder, beton = FolderSource(photo_folder), BetonSource(out)
    assert len(beton) == len(folder)
    np.testing.assert_array_equal(beton.labels, folder.labels)
    for i in range(len(folder)):
        assert torch.equal(beton.load(i), folder.load(i))


# ------------------------------------------------------------------- parity

def test_parity_identity_policy_is_exact(photo_beton):
    ffcv, ref = _pair(photo_beton, policy=Identity(), size=32)
    for epoch in (0, 1):
        ffcv.set_epoch(epoch), ref.set_epoch(epoch)
        got, want = list(ffcv), list(ref)
        assert len(got) == len(want) == len(ref)
        for a, b in zip(got, want):
            assert torch.equal(a.index, b.index) and torch.equal(a.labels, b.labels)
            assert torch.equal(a.images.contiguous(), b.images)  # crop boxes, resize and flips identical
            assert torch.equal(a.magnitude, b.magnitude)


def test_dct_scaled_decoding_stays_close(photo_beton):
    ffcv, ref = _pair(photo_beton, dct_scale=True, policy=Identity(), size=32)
    diffs = []
    for a, b in zip(ffcv, ref):
        assert torch.equal(a.index, b.index)
        diffs.append((a.images.int() - b.images.int()).abs().float().flatten())
    diff = torch.cat(diffs)
    print(f"DCT-scaled decode vs full decode + resize: mean {diff.mean():.3f}, >2: {(diff > 2).float().mean():.4f}")
    assert diff.mean() < 4.0 and (diff > 2).float().mean() < 0.35


def test_parity_padded_crop_arrays_is_exact(fashion_beton):
    _, beton = fashion_beton
    ffcv, ref = _pair(beton, policy=Identity(), batch_size=64, crop=RandomCrop(28, padding=4))
    for a, b in zip(ffcv, ref):
        assert torch.equal(a.index, b.index) and torch.equal(a.images, b.images)


def test_parity_randaugment(photo_beton):
    from augpipe.core.ops import OPS

    ffcv, ref = _pair(photo_beton, policy=RandAugment(2), magnitude=9, size=32)
    for a, b in zip(ffcv, ref):
        assert torch.equal(a.index, b.index) and torch.equal(a.magnitude, b.magnitude)
        diff = (a.images.int() - b.images.int()).abs().float()
        assert diff.mean() < 1.0 and (diff > 2).float().mean() < 0.02, OPS


# ---------------------------------------------------------- loader contract

def test_determinism_across_runs_and_workers(photo_beton):
    runs = []
    for workers in (1, 2):
        loader = Loader(photo_beton, backend="ffcv", batch_size=6, policy=Identity(), size=24, seed=9,
                        num_workers=workers)
        runs.append([(b.index.clone(), b.images.clone()) for b in loader])
    for (i1, x1), (i2, x2) in zip(*runs):
        assert torch.equal(i1, i2) and torch.equal(x1, x2)


def test_resume_from_state_dict(photo_beton):
    kw = dict(backend="ffcv", batch_size=4, policy=Identity(), size=24, seed=2, num_workers=2)
    full = [b.images.clone() for b in Loader(photo_beton, **kw)]
    loader = Loader(photo_beton, **kw)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    del it
    other = Loader(photo_beton, **kw)
    other.load_state_dict(state)
    rest = [b for b in other]
    assert rest[0].step == 2 and len(rest) == len(full) - 2
    for a, b in zip(rest, full[2:]):
        assert torch.equal(a.images, b)


def test_knob_change_mid_epoch_is_seen_without_recompiling(fashion_beton):
    _, beton = fashion_beton
    loader = Loader(beton, backend="ffcv", batch_size=16, policy=Identity(), magnitude=9, num_workers=1,
                    backend_options={"batches_ahead": 1})
    code = loader._backend._ffcv.code
    it = iter(loader)
    first = next(it)
    assert (first.magnitude == 9).all()
    loader.magnitude = 3.0
    later = [next(it) for _ in range(4)]
    # batches already built or queued (batches_ahead + 1) keep 9; the first one not yet prefetched has 3
    mags = [float(b.magnitude[0]) for b in later]
    assert all(m in (9.0, 3.0) for m in mags[:2])
    assert mags[2:] == [3.0, 3.0] and (later[-1].magnitude == 3).all()
    assert loader._backend._ffcv.code is code  # nothing recompiled


def test_caps_and_schedule_are_live(fashion_beton):
    _, beton = fashion_beton
    loader = Loader(beton, backend="ffcv", batch_size=32, policy=Identity(), magnitude=20, num_workers=2,
                    shuffle=False)
    caps = np.full(len(beton), 30, np.float32)
    caps[::2] = 4.0
    loader.set_caps(caps)
    b = next(iter(loader))
    expected = np.minimum(20, caps[b.index.numpy()])
    np.testing.assert_array_equal(b.magnitude.numpy(), expected)
    loader.set_caps(np.full(len(beton), 30, np.float32))
    loader.set_epoch(0)
    loader.set_magnitude(lambda epoch, step: float(step))
    mags = [float(b.magnitude.max()) for b in loader]
    assert mags == [float(s) for s in range(len(mags))]  # schedules apply per step, exactly


def test_float_output_and_labels(fashion_beton):
    small, beton = fashion_beton
    loader = Loader(beton, backend="ffcv", batch_size=50, policy=Identity(), output="float", num_workers=2)
    b = next(iter(loader))
    assert b.images.dtype == torch.float32 and b.images.shape == (50, 3, 28, 28)
    np.testing.assert_array_equal(b.labels.numpy(), small.labels[b.index.numpy()])


def test_distributed_shards_are_disjoint(fashion_beton):
    _, beton = fashion_beton
    seen = []
    for rank in range(2):
        loader = Loader(beton, backend="ffcv", batch_size=32, policy=Identity(), rank=rank, world_size=2,
                        num_workers=1)
        seen.append(np.concatenate([b.index.numpy() for b in loader]))
    assert len(seen[0]) == len(seen[1]) and not set(seen[0]) & set(seen[1])


def test_non_beton_source_is_converted_into_cache(photo_folder, tmp_path):
    cache = tmp_path / "cache" / "photos.beton"
    loader = Loader(str(photo_folder), backend="ffcv", batch_size=4, policy=Identity(), size=24, num_workers=1,
                    backend_options={"cache": str(cache), "image_format": "raw"})
    assert cache.exists()
    ref = Loader(str(photo_folder), backend="torch", batch_size=4, policy=Identity(), size=24, num_workers=0)
    for a, b in zip(loader, ref):
        assert torch.equal(a.index, b.index) and torch.equal(a.images, b.images)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # FFCV's thread stops on it
def test_corrupt_stored_jpeg_names_the_sample(photo_beton, tmp_path):
    import shutil

    path = tmp_path / "corrupt.beton"
    shutil.copy(photo_beton.path, path)
    bad = 3
    ptr = int(photo_beton._ptrs[bad])
    size = int(photo_beton._alloc_sizes[np.searchsorted(photo_beton._alloc_ptrs, ptr)])
    with open(path, "r+b") as f:  # the sample's JPEG bytes -> zeros: libjpeg refuses the stream
        f.seek(ptr)
        f.write(bytes(size))
    source = BetonSource(path)
    loader = Loader(source, backend="ffcv", batch_size=8, seed=0, num_workers=2, policy=Identity(), size=32,
                    shuffle=False)
    with pytest.raises(DecodeError, match=rf"corrupt\.beton\[{bad}\].*could not decode"):
        list(loader)


def test_ffcv_leaves_numbas_shared_array_types_writable(fashion_beton):
    # FFCV 1.0.2 sets .mutable = False on numba's interned array types; unpatched, every later
    # compile in the process sees read-only uint8 arrays (TypingError / dispatcher KeyError).
    import numba as nb
    for os_cache in (True, False):
        for _ in Loader(fashion_beton[1], batch_size=64, backend="ffcv", backend_options={"os_cache": os_cache}):
            pass
    for t in (nb.uint8[::1], nb.uint8[:, ::1], nb.uint64[::1], nb.uint32[::1]):
        assert t.mutable, t


FFCV_CODE = """
import sys
import augpipe as ap
from augpipe.backends import ffcv_rows
first = ap.Loader(sys.argv[1], batch_size=8, magnitude=9, num_workers=2, size=64, backend="ffcv")
second = ap.Loader(sys.argv[1], batch_size=8, magnitude=3, num_workers=2, size=64, backend="ffcv")
for loader in (first, second):
    batch = next(iter(loader))
from augpipe.backends import ffcv
print("HITS", ffcv_rows._COMPILED["rows"].cache_hits, ffcv_rows._COMPILED["record"].cache_hits,
      sum(ffcv._READER[0].stats.cache_hits.values()), "COMPILED", len(ffcv_rows._COMPILED))
"""


@pytest.mark.slow
def test_the_ffcv_stage_is_compiled_once_per_install(photo_beton, tmp_path):
    """FFCV compiles a stage per Loader; the per-sample work inside it (`ffcv_rows.rows`, `.record`)
    and FFCV's .beton reader come from numba's cache in later processes and is shared by the Loaders of one."""
    cache = tmp_path / "numba"
    # compiled in this process (the foreground path); test_firstuse covers the background compile's cache
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "AUGPIPE_FIRST_USE": "wait"}

    def once():
        done = subprocess.run([sys.executable, "-c", FFCV_CODE, str(photo_beton.path)], capture_output=True, text=True,
                              env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("HITS")).split()
        return (int(line[1]), int(line[2]), int(line[3])), int(line[5]), done.stderr

    hits, compiled, err = once()
    assert (hits, compiled) == ((0, 0, 0), 2) and "compiling the FFCV stage once" in err
    rows_files = {f: t for f, t in _cache_files(cache).items() if "ffcv_rows" in f}
    assert rows_files
    hits, compiled, err = once()
    assert (hits, compiled) == ((1, 1, 1), 2), (hits, compiled)  # rows, record, FFCV's reader: from the cache
    assert "compiling the FFCV stage" not in err
    assert {f: t for f, t in _cache_files(cache).items() if "ffcv_rows" in f} == rows_files


def _cache_files(cache):
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def test_ffcv_is_imported_without_compiling_a_typed_dict():
    """sources/ffcv_import: FFCV's IMAGE_MODES becomes a plain dict (numba's typed Dict put back), and the
    writer and decoders that read it work (the conversion tests above write and read with it)."""
    code = ("import augpipe.backends.ffcv, numba.typed, numba.typed.typeddict as td\n"
            "from ffcv.fields.rgb_image import IMAGE_MODES\n"
            "assert numba.typed.Dict is td.Dict, numba.typed.Dict\n"
            "assert type(IMAGE_MODES) is dict and IMAGE_MODES == {'jpg': 0, 'raw': 1}, IMAGE_MODES\n"
            "print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
