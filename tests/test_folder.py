"""The torch backend's fast path for image folders (augpipe/backends/folder.py).

JPEG files go straight from disk through one compiled pass per sample; the
result must equal the torchvision path (backend_options={"decoder":
"torchvision"}) bit for bit: both decode with libjpeg-turbo's accurate IDCT
and resize with torch's arithmetic. Grey, CMYK, progressive, PNG and palette
files are mixed into the folders below. Corrupt, truncated and zero-byte files
follow the contract in the module docstring.
"""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import augpipe as ap
from augpipe.sources import DecodeError

TORCHVISION = {"decoder": "torchvision"}


def run(loader, epochs=1):
    out = []
    for _ in range(epochs):
        for b in loader:
            out.append((b.images.clone(), b.labels, b.index, b.magnitude, b.ops, b.mags, b.epoch, b.step))
    return out


def assert_same(a, b):
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert x[6:] == y[6:]
        for u, v in zip(x[:6], y[:6]):
            assert torch.equal(u, v)


def _jpeg(array, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def mixed_folder(photo_folder, tmp_path_factory):
    """The photo folder plus progressive and grey-progressive JPEGs."""
    import shutil

    root = tmp_path_factory.mktemp("mixed") / "photos"
    shutil.copytree(photo_folder, root)
    rng = np.random.default_rng(5)
    photo = np.asarray(Image.open(root / "coffee" / "00.jpg").convert("RGB"))
    (root / "coffee" / "progressive.jpg").write_bytes(_jpeg(photo, progressive=True))
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    (root / "coffee" / "progressive-grey.jpg").write_bytes(_jpeg(grey, progressive=True))
    (root / "chelsea" / "subsampled.jpg").write_bytes(_jpeg(rng.integers(0, 255, (77, 91, 3), dtype=np.uint8),
                                                           subsampling=2))
    return root


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("output", ["uint8", "float"])
def test_equals_the_torchvision_path_bit_for_bit(mixed_folder, train, output):
    kw = dict(batch_size=9, size=40, train=train, output=output, magnitude=13, seed=2, num_workers=2)
    fast = ap.Loader(mixed_folder, **kw)
    slow = ap.Loader(mixed_folder, backend_options={**TORCHVISION, "workers": "processes"}, **kw)
    assert_same(run(fast, 2), run(slow, 2))


@pytest.mark.parametrize("policy", ["trivialaugment", "autoaugment"])
def test_other_policies_and_grey_output_equal(mixed_folder, policy):
    kw = dict(batch_size=9, size=(36, 44), policy=policy, magnitude=30, seed=4, num_workers=0)
    assert_same(run(ap.Loader(mixed_folder, **kw)), run(ap.Loader(mixed_folder, backend_options=TORCHVISION, **kw)))


def test_deterministic_over_worker_counts_resumes_and_shards(mixed_folder):
    kw = dict(batch_size=6, size=32, magnitude=9, seed=8)
    ref = run(ap.Loader(mixed_folder, num_workers=0, **kw), 2)
    assert_same(run(ap.Loader(mixed_folder, num_workers=2, **kw), 2), ref)
    loader = ap.Loader(mixed_folder, num_workers=2, **kw)
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    again = ap.Loader(mixed_folder, num_workers=2, **kw)
    again.load_state_dict(state)
    assert_same(run(again), ref[2:len(loader)])
    idx = [torch.cat([b.index for b in ap.Loader(mixed_folder, num_workers=1, rank=r, world_size=2, **kw)])
           for r in range(2)]
    assert not set(idx[0].tolist()) & set(idx[1].tolist())


def test_knob_lag_and_caps(mixed_folder):
    loader = ap.Loader(mixed_folder, batch_size=3, size=32, magnitude=9, num_workers=2, seed=1)
    assert loader.lag == 4
    seen = []
    for step, b in enumerate(loader):
        seen.append(float(b.magnitude[0]))
        if step == 1:
            loader.magnitude = 2.0
    assert seen[:2 + loader.lag] == [9.0] * (2 + loader.lag) and set(seen[2 + loader.lag:]) == {2.0}
    caps = np.random.default_rng(0).uniform(0, 20, len(loader.dataset)).astype(np.float32)
    loader.set_caps(caps)
    loader.magnitude = 12.0
    for b in loader:
        np.testing.assert_allclose(b.magnitude.numpy(), np.minimum(12, caps[b.index.numpy()]), rtol=1e-6)


def _folder_with(make_folder, jpeg_bytes, name: str, data: bytes):
    files = {f"a/{i}.jpg": jpeg_bytes((60, 70), seed=i) for i in range(5)}
    files[f"b/{name}"] = data
    files.update({f"b/{i}.jpg": jpeg_bytes((50, 64), seed=10 + i) for i in range(3)})
    return make_folder(files)


def test_truncated_jpeg_named_when_the_folder_is_first_used_or_skipped(make_folder, jpeg_bytes):
    good = jpeg_bytes((90, 120), seed=3)
    root = _folder_with(make_folder, jpeg_bytes, "cut.jpg", good[: len(good) * 2 // 3])
    with pytest.raises(DecodeError, match="cut.jpg.*end-of-image"):
        ap.Loader(root, batch_size=3, size=32, num_workers=0)
    loader = ap.Loader(root, batch_size=3, size=32, num_workers=0, on_error="skip", drop_last=False)
    assert [p.endswith("cut.jpg") for p, _ in loader.errors] == [True]
    bad = next(i for i in range(len(loader.dataset)) if loader.dataset.describe(i).endswith("cut.jpg"))
    for _ in range(2):
        seen = torch.cat([b.index for b in loader]).tolist()
        assert bad not in seen and len(seen) == len(loader.dataset) - 1
    assert len(loader.errors) == 1  # named once, not once per epoch


def test_corrupt_inside_named_at_batch_time_or_skipped(make_folder, jpeg_bytes):
    # Bogus code counts in the first Huffman table: PIL still reads the size and the end
    # marker is there, so the scan passes it; libjpeg (and torchvision) refuse to decode.
    # (Garbage inside the entropy-coded data is not an error for either: libjpeg
    # resynchronises and decodes the rest, with a warning.)
    data = bytearray(jpeg_bytes((90, 120), seed=4))
    at = data.find(b"\xff\xc4")
    data[at + 4:at + 20] = b"\xff" * 16
    root = _folder_with(make_folder, jpeg_bytes, "garbled.jpg", bytes(data))
    kw = dict(batch_size=9, size=32, num_workers=0, train=False)
    loader = ap.Loader(root, **kw)
    with pytest.raises(DecodeError, match="garbled.jpg"):
        run(loader)
    skip = ap.Loader(root, on_error="skip", **kw)
    batches = run(skip)
    assert sum(len(b[2]) for b in batches) == 8 and any("garbled.jpg" in p for p, _ in skip.errors)
    with pytest.raises(DecodeError, match="garbled.jpg"):  # validate="full" decodes every file up front
        ap.Loader(root, backend_options={"validate": "full"}, **kw)


def test_zero_byte_and_cmyk_files(make_folder, jpeg_bytes):
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes((40, 50), seed=1))).convert("CMYK").save(cmyk, "JPEG", quality=90)
    root = _folder_with(make_folder, jpeg_bytes, "cmyk.jpg", cmyk.getvalue())
    (root / "b" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DecodeError, match="empty.jpg"):
        ap.Loader(root, batch_size=3, size=32)
    kw = dict(batch_size=3, size=32, num_workers=0, on_error="skip", seed=3)
    fast, slow = ap.Loader(root, **kw), ap.Loader(root, backend_options=TORCHVISION, **kw)
    assert_same(run(fast), run(slow))  # the CMYK file goes through torchvision inside the fast path
    assert any(p.endswith("empty.jpg") for p, _ in fast.errors)


def test_bad_options_are_named(mixed_folder, fmnist):
    with pytest.raises(ValueError, match="validate"):
        ap.Loader(mixed_folder, backend_options={"validate": "deep"})
    with pytest.raises(ValueError, match="decoder"):
        ap.Loader(fmnist, backend_options={"decoder": "fused"})


def test_the_fused_folder_path_does_not_load_torchvision(photo_folder, tmp_path):
    """~110 MB of PSS and ~0.5 s of import that a JPEG folder's batches do not use (a PNG would load it)."""
    import shutil
    import subprocess
    import sys

    for name in ("astronaut", "chelsea"):
        (tmp_path / name).mkdir()
        for jpg in sorted((photo_folder / name).glob("0*.jpg")):
            shutil.copy(jpg, tmp_path / name / jpg.name)
    code = ("import sys, augpipe as ap\n"
            f"loader = ap.Loader({str(tmp_path)!r}, batch_size=4, size=32, num_workers=2)\n"
            "batch = next(iter(loader))\n"
            "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False"
