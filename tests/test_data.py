"""Image sources against the real decoders and the real Fashion-MNIST files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg, read_file
from torchvision.transforms.v2 import functional as F

from augpipe.sources import (
    FASHION_MNIST_CLASSES,
    ArraySource,
    DecodeError,
    FashionMNIST,
    FolderSource,
    Source,
    open_source,
)


def pil_rgb(path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)


def index_of(source: FolderSource, relpath: str) -> int:
    matches = [i for i in range(len(source)) if source.describe(i).endswith(relpath)]
    assert len(matches) == 1, relpath
    return matches[0]


@pytest.fixture(scope="module")
def photos(photo_folder) -> FolderSource:
    return FolderSource(photo_folder)


# ---------------------------------------------------------------- FolderSource

def test_folder_scan_classes_labels_and_order(photos, photo_folder):
    assert photos.classes == ["astronaut", "chelsea", "coffee"]
    assert len(photos) == 24 and photos.labels.dtype == np.int64
    assert photos.labels.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    paths = [photos.describe(i) for i in range(len(photos))]
    assert paths == sorted(paths) and all(Path(p).parent.parent == photo_folder for p in paths)
    assert Path(paths[8]).name == "00.jpg" and Path(paths[0]).parent.name == "astronaut"
    assert any(p.endswith("upper.JPG") for p in paths)  # extensions are case-insensitive
    assert photos.fixed_shape is None and photos.skipped == []


def test_folder_jpeg_pixels_equal_torchvision_decode_jpeg(photos):
    checked = 0
    for i in range(len(photos)):
        path = photos.describe(i)
        if Path(path).name[:2].isdigit():
            assert torch.equal(photos.load(i), decode_jpeg(read_file(path))), path
            checked += 1
    assert checked == 18


def test_every_photo_loads_as_rgb_uint8_of_the_file_size(photos):
    sizes = set()
    for i in range(len(photos)):
        image = photos.load(i)
        w, h = Image.open(photos.describe(i)).size
        assert image.dtype == torch.uint8 and image.shape == (3, h, w), photos.describe(i)
        assert 40 <= h <= 120 and 40 <= w <= 120
        sizes.add((h, w))
    assert len(sizes) > 10  # crops really vary


@pytest.mark.parametrize("relpath", ["astronaut/rgb.png", "astronaut/rgba.png", "coffee/palette.png"])
def test_png_modes_equal_pil_rgb_conversion(photos, relpath):
    i = index_of(photos, relpath)
    assert Image.open(photos.describe(i)).mode == {"rgb": "RGB", "rgba": "RGBA", "palette": "P"}[
        Path(relpath).stem]
    image = photos.load(i)
    assert image.shape[0] == 3
    assert torch.equal(image, pil_rgb(photos.describe(i)))  # RGBA: alpha dropped, not composited


def test_grey_jpeg_is_repeated_into_three_equal_channels(photos):
    i = index_of(photos, "chelsea/grey.jpg")
    assert Image.open(photos.describe(i)).mode == "L"
    image = photos.load(i)
    assert image.shape[0] == 3
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    grey = torch.from_numpy(np.asarray(Image.open(photos.describe(i))).copy())
    assert torch.equal(image[0], grey)


def test_cmyk_jpeg_colours_match_pil(photos):
    i = index_of(photos, "chelsea/cmyk.jpg")
    assert Image.open(photos.describe(i)).mode == "CMYK"
    image = photos.load(i)
    diff = (image.int() - pil_rgb(photos.describe(i)).int()).abs()
    assert image.shape[0] == 3 and diff.float().mean() < 1.0 and diff.max() <= 8
    assert image.float().std() > 10  # a photo, not a flat/inverted failure


def test_16_bit_png_is_scaled_to_uint8(make_folder):
    deep = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 32)  # spans 0..63968
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, "PNG")
    image = FolderSource(make_folder({"a/deep.png": buf.getvalue()})).load(0)
    assert image.dtype == torch.uint8 and image.shape == (3, 40, 50)
    assert torch.equal(image, torch.from_numpy((deep >> 8).astype(np.uint8)).expand(3, -1, -1))


def test_load_returns_fresh_tensors(photos):
    a = photos.load(3)
    a.zero_()
    assert photos.load(3).any()


def test_folder_has_no_batch_gather(photos):
    with pytest.raises(TypeError, match="load"):
        photos.get_batch(np.arange(2))


def test_non_image_and_hidden_files_are_ignored(make_folder, jpeg_bytes):
    root = make_folder({"a/x.jpg": jpeg_bytes(), "a/notes.txt": b"hi", "a/.hidden.jpg": jpeg_bytes(),
                        ".cache/y.jpg": jpeg_bytes(), "b/sub/z.jpeg": jpeg_bytes(seed=1)})
    src = FolderSource(root)
    assert src.classes == ["a", "b"] and len(src) == 2 and src.labels.tolist() == [0, 1]
    assert src.load(1).shape == (3, 48, 64)


def test_custom_extensions(make_folder, jpeg_bytes):
    root = make_folder({"a/x.jpg": jpeg_bytes(), "a/y.JFIF": jpeg_bytes(seed=2)})
    assert [Path(FolderSource(root, extensions=("jfif",)).describe(0)).name] == ["y.JFIF"]


def test_corrupt_bytes_raise_decode_error_naming_the_file(make_folder, jpeg_bytes):
    root = make_folder({"a/good.jpg": jpeg_bytes(), "a/junk.jpg": b"this is not an image at all"})
    src = FolderSource(root)  # scanning does not decode
    src.load(0)
    with pytest.raises(DecodeError, match=r"junk\.jpg.*Unsupported image") as info:
        src.load(1)
    assert isinstance(info.value, ValueError) and info.value.path == str(root / "a" / "junk.jpg")
    assert ".cpp" not in str(info.value)  # torchvision's source location is stripped


@pytest.mark.parametrize("cut", ["half", "eoi"])
def test_truncated_jpeg_raises_decode_error(make_folder, jpeg_bytes, cut):
    # Observed with torchvision 0.29: libjpeg-turbo's truncation warning is an error.
    data = jpeg_bytes((96, 96))
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    root = make_folder({"a/cut.jpg": data[: len(data) // 2] if cut == "half" else data[:-2]})
    with pytest.raises(DecodeError, match=r"cut\.jpg.*truncated"):
        FolderSource(root).load(0)


def test_truncated_png_raises_decode_error(make_folder, photo_folder):
    data = (photo_folder / "astronaut" / "rgb.png").read_bytes()
    with pytest.raises(DecodeError, match=r"half\.png"):
        FolderSource(make_folder({"a/half.png": data[: len(data) // 2]})).load(0)


def test_zero_byte_file_raises_at_scan(make_folder, jpeg_bytes):
    root = make_folder({"a/ok.jpg": jpeg_bytes(), "b/empty.jpg": b""})
    with pytest.raises(DecodeError, match=r"empty\.jpg.*0 bytes"):
        FolderSource(root)


def test_skip_mode_records_zero_byte_files(make_folder, jpeg_bytes):
    root = make_folder({"a/ok.jpg": jpeg_bytes(), "a/e1.jpg": b"", "b/e2.png": b"", "b/ok.png": jpeg_bytes()})
    src = FolderSource(root, on_error="skip")
    assert len(src) == 2 and src.labels.tolist() == [0, 1]
    assert sorted(Path(p).name for p, _ in src.skipped) == ["e1.jpg", "e2.png"]
    assert all("0 bytes" in reason for _, reason in src.skipped)


def test_only_zero_byte_files_is_an_error_even_when_skipping(make_folder):
    with pytest.raises(ValueError, match="no usable image files"):
        FolderSource(make_folder({"a/e.jpg": b""}), on_error="skip")


def test_bad_folders(make_folder, tmp_path, jpeg_bytes):
    empty = make_folder({})
    with pytest.raises(ValueError, match=rf"{empty}.*no class subfolders"):
        FolderSource(empty)
    flat = make_folder({"x.jpg": jpeg_bytes()})  # images but no class dirs
    with pytest.raises(ValueError, match=rf"{flat}.*no class subfolders"):
        FolderSource(flat)
    no_images = make_folder({"a/readme.txt": b"x", "b/c.gif": b"GIF89a"})
    with pytest.raises(ValueError, match=rf"{no_images}.*no usable image files"):
        FolderSource(no_images)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderSource(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="on_error.*'ignore'"):
        FolderSource(make_folder({"a/x.jpg": jpeg_bytes()}), on_error="ignore")


def test_folder_index_out_of_range(photos):
    with pytest.raises(IndexError, match="24"):
        photos.load(24)


# ---------------------------------------------------------------- ArraySource

@pytest.fixture(scope="module")
def rgb_nchw() -> torch.Tensor:
    return torch.randint(0, 256, (6, 3, 10, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("as_torch", [False, True])
def test_array_layouts_give_identical_nchw(rgb_nchw, as_torch):
    nhwc = rgb_nchw.permute(0, 2, 3, 1).contiguous()
    grey = rgb_nchw[:, 0]
    conv = (lambda t: t) if as_torch else (lambda t: t.numpy())
    labels = np.arange(6) % 3
    assert torch.equal(ArraySource(conv(rgb_nchw), labels).images, rgb_nchw)
    assert torch.equal(ArraySource(conv(nhwc), labels).images, rgb_nchw)
    for g in (grey, grey[:, None], grey[..., None]):  # NHW, N1HW, NHW1
        src = ArraySource(conv(g.contiguous()), labels)
        assert src.fixed_shape == (1, 10, 14) and torch.equal(src.images, grey[:, None])
    src = ArraySource(conv(nhwc), labels)
    assert src.images.is_contiguous() and src.images.is_shared() and src.fixed_shape == (3, 10, 14)


def test_array_source_copies_its_input(rgb_nchw):
    arr = rgb_nchw.numpy().copy()
    src = ArraySource(arr, np.zeros(6, dtype=np.int32))
    arr[:] = 0
    assert torch.equal(src.images, rgb_nchw)
    src.load(0).zero_()
    assert torch.equal(src.load(0), rgb_nchw[0])
    ro = rgb_nchw.numpy().copy()
    ro.flags.writeable = False
    assert torch.equal(ArraySource(ro, [0] * 6).images, rgb_nchw)


def test_array_labels_classes_and_describe(rgb_nchw):
    src = ArraySource(rgb_nchw, torch.tensor([0, 4, 1, 1, 2, 0]), name="mine")
    assert src.labels.dtype == np.int64 and src.labels.tolist() == [0, 4, 1, 1, 2, 0]
    assert src.classes == ["0", "1", "2", "3", "4"] and len(src) == 6
    assert src.describe(3) == "mine[3]" and ArraySource(rgb_nchw, [0] * 6).describe(12) == "array[12]"
    assert isinstance(src, Source) and src.skipped == []


def test_get_batch_equals_stacked_loads(rgb_nchw):
    src = ArraySource(rgb_nchw, np.zeros(6, dtype=np.int64))
    idx = np.array([5, 0, 3, 3, 1])
    batch = src.get_batch(idx)
    assert batch.dtype == torch.uint8 and batch.shape == (5, 3, 10, 14)
    assert torch.equal(batch, torch.stack([src.load(i) for i in idx]))
    batch.zero_()
    assert torch.equal(src.images, rgb_nchw)
    assert src.get_batch(np.array([], dtype=np.int64)).shape == (0, 3, 10, 14)
    with pytest.raises(IndexError, match="6"):
        src.get_batch(np.array([0, 6]))
    with pytest.raises(IndexError):
        src.load(-1)


def test_resized_equals_per_image_torchvision_resize(rgb_nchw, monkeypatch):
    import augpipe.sources.array

    monkeypatch.setattr(augpipe.sources.array, "_RESIZE_CHUNK", 4)  # exercise the chunk boundary
    src = ArraySource(rgb_nchw, np.arange(6))
    out = src.resized((7, 20))
    assert out.fixed_shape == (3, 7, 20) and out is not src and out.images.is_shared()
    for i in range(6):
        want = F.resize(rgb_nchw[i], [7, 20], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        assert torch.equal(out.load(i), want)
    assert out.labels.tolist() == list(range(6)) and torch.equal(src.images, rgb_nchw)
    with pytest.raises(ValueError, match="positive"):
        src.resized((0, 5))


def test_with_channels(rgb_nchw):
    rgb = ArraySource(rgb_nchw, np.arange(6))
    grey = rgb.with_channels(1)
    assert grey.fixed_shape == (1, 10, 14)
    assert torch.equal(grey.images, F.rgb_to_grayscale(rgb_nchw))
    back = grey.with_channels(3)
    assert back.fixed_shape == (3, 10, 14) and all(torch.equal(back.images[:, c], grey.images[:, 0])
                                                    for c in range(3))
    assert rgb.with_channels(3) is rgb
    with pytest.raises(ValueError, match="2"):
        rgb.with_channels(2)


@pytest.mark.parametrize("images, labels, exc, pattern", [
    (np.zeros((2, 4, 4), np.float32), [0, 1], TypeError, r"float32.*astype\(np\.uint8\)"),
    (torch.zeros(2, 4, 4), [0, 1], TypeError, r"torch\.float32.*to_dtype"),
    (np.zeros((2, 4, 4), np.int64), [0, 1], TypeError, "int64"),
    ([[1, 2]], [0], TypeError, "list"),
    (np.zeros((8,), np.uint8), [0] * 8, ValueError, r"\(8,\)"),
    (np.zeros((2, 5, 5, 5), np.uint8), [0, 1], ValueError, r"\(2, 5, 5, 5\)"),
    (np.zeros((1, 2, 3, 4, 3), np.uint8), [0], ValueError, r"\(1, 2, 3, 4, 3\)"),
    (np.zeros((0, 4, 4), np.uint8), [], ValueError, "empty"),
    (np.zeros((3, 4, 4), np.uint8), [0, 1], ValueError, "2 labels for 3 images"),
    (np.zeros((2, 4, 4), np.uint8), [0, -3], ValueError, "-3"),
    (np.zeros((2, 4, 4), np.uint8), [[0, 1]], ValueError, "1-D"),
    (np.zeros((2, 4, 4), np.uint8), [0.0, 1.0], TypeError, "float64"),
])
def test_array_source_rejects_bad_input(images, labels, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ArraySource(images, labels)


def test_too_few_class_names():
    with pytest.raises(ValueError, match="2 class names"):
        ArraySource(np.zeros((2, 4, 4), np.uint8), [0, 2], classes=["a", "b"])


# ---------------------------------------------------------------- FashionMNIST

def test_fashion_mnist_train():
    src = FashionMNIST("train")
    assert len(src) == 60000 and src.fixed_shape == (1, 28, 28) and src.classes == FASHION_MNIST_CLASSES
    assert np.bincount(src.labels).tolist() == [6000] * 10
    assert src.images.double().mean().item() == pytest.approx(72.94035, abs=1e-4)
    assert src.describe(12) == "fashion-mnist train[12]"
    assert FashionMNIST("train").images is src.images  # parsed once per process


def test_fashion_mnist_test_split_and_rgb():
    grey = FashionMNIST(split="test")
    assert len(grey) == 10000 and np.bincount(grey.labels).tolist() == [1000] * 10
    assert grey.labels.min() == 0 and grey.labels.max() == 9
    rgb = FashionMNIST("test", channels=3)
    assert rgb.fixed_shape == (3, 28, 28) and np.array_equal(rgb.labels, grey.labels)
    batch = rgb.get_batch(np.arange(0, 10000, 7))
    for c in range(3):
        assert torch.equal(batch[:, c], grey.get_batch(np.arange(0, 10000, 7))[:, 0])
    assert grey.fixed_shape == (1, 28, 28)  # the cached grey tensor was not touched


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(ValueError, match="'val'"):
        FashionMNIST("val")
    with pytest.raises(ValueError, match="channels"):
        FashionMNIST(channels=2)
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        FashionMNIST(root=tmp_path)


# ---------------------------------------------------------------- open_source

def test_open_source_dispatch(photo_folder, rgb_nchw):
    src = ArraySource(rgb_nchw, np.arange(6))
    assert open_source(src) is src
    pair = open_source((rgb_nchw, np.arange(6)))
    assert isinstance(pair, ArraySource) and torch.equal(pair.images, rgb_nchw)
    assert isinstance(open_source([rgb_nchw.numpy(), list(range(6))]), ArraySource)
    assert open_source("fashion-mnist").describe(0) == "fashion-mnist train[0]"
    assert len(open_source("fashion-mnist:test")) == 10000
    assert type(open_source(photo_folder)) is FolderSource
    assert len(open_source(str(photo_folder))) == 24


def test_open_source_skip_reaches_folder(make_folder, jpeg_bytes):
    root = make_folder({"a/x.jpg": jpeg_bytes(), "a/y.jpg": b""})
    assert len(open_source(root, on_error="skip").skipped) == 1


def test_open_source_errors(tmp_path, photo_folder):
    with pytest.raises(FileNotFoundError, match=r"data\.beton"):
        open_source(tmp_path / "data.beton")
    (tmp_path / "fake.beton").write_bytes(b"not a beton")
    with pytest.raises(ValueError, match=r"fake\.beton is not a readable FFCV \.beton"):
        open_source(tmp_path / "fake.beton")
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        open_source(str(tmp_path / "missing_dir"))
    with pytest.raises(ValueError, match="rgb.png"):
        open_source(photo_folder / "astronaut" / "rgb.png")
    with pytest.raises(ValueError, match="'valid'"):
        open_source("fashion-mnist:valid")
    for bad, name in [(42, "int"), (np.zeros((2, 4, 4), np.uint8), "ndarray"), (None, "NoneType")]:
        with pytest.raises(TypeError, match=name):
            open_source(bad)
