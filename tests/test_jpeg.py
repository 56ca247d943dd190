"""Box-restricted JPEG decoding (kernels/jpeg.py, csrc/jpeg_box.c) against torchvision's decoder."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import _photo
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from augpipe.kernels.decode import scaled_size
from augpipe.kernels.jpeg import ERRORS, decode_box


def _jpeg(image: np.ndarray, **kw) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=90, **kw)
    return np.frombuffer(buf.getvalue(), np.uint8).copy()


def _decode(data, top, left, h, w, denom=1, fast_dct=0):
    out = np.full(8 * 1024 * 1024, 77, np.uint8)
    region = np.zeros(2, np.int64)
    rc = decode_box(data, top, left, h, w, denom, fast_dct, out, region)
    assert rc == 0, ERRORS.get(rc, rc)
    x0, width = region
    assert x0 <= left and x0 + width >= left + w
    return out[: h * width * 3].reshape(h, width, 3)[:, left - x0:left - x0 + w]


@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["444", "422", "420"])
def test_boxes_equal_torchvision_full_decode(subsampling):
    # accurate IDCT = torchvision's decoder, bit for bit; any box of it, edges included
    image = np.ascontiguousarray(_photo("astronaut")[:301, :437])
    data = _jpeg(image, subsampling=subsampling)
    full = decode_jpeg(torch.from_numpy(data)).permute(1, 2, 0).numpy()
    rng = np.random.default_rng(subsampling)
    boxes = [(0, 0, 301, 437), (0, 436, 301, 1), (300, 0, 1, 437), (17, 31, 1, 1)]
    for _ in range(60):
        h, w = rng.integers(1, 302), rng.integers(1, 438)
        boxes.append((rng.integers(0, 302 - h), rng.integers(0, 438 - w), h, w))
    for top, left, h, w in boxes:
        got = _decode(data, top, left, h, w)
        np.testing.assert_array_equal(got, full[top:top + h, left:left + w], err_msg=str((top, left, h, w)))


def test_grey_jpeg_decodes_to_rgb():
    grey = np.asarray(Image.fromarray(_photo("coffee")[:120, :150]).convert("L"))
    data = _jpeg(grey)
    full = decode_jpeg(torch.from_numpy(data), mode=ImageReadMode.RGB)
    got = _decode(data, 10, 20, 50, 60)
    np.testing.assert_array_equal(got, full.permute(1, 2, 0).numpy()[10:60, 20:80])


@pytest.mark.parametrize("denom", [2, 4, 8])
def test_dct_scaled_boxes_equal_the_scaled_full_decode(denom):
    data = _jpeg(np.ascontiguousarray(_photo("chelsea")))  # 300 x 451
    h, w = scaled_size(300, denom), scaled_size(451, denom)  # libjpeg's scaled size: one more row is outside
    out, region = np.empty(300 * 451 * 3, np.uint8), np.zeros(2, np.int64)
    assert decode_box(data, 0, 0, h + 1, w, denom, 1, out, region) == -2
    full = _decode(data, 0, 0, h, w, denom, 1)
    rng = np.random.default_rng(denom)
    for _ in range(20):
        bh, bw = rng.integers(1, h + 1), rng.integers(1, w + 1)
        t, l = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        np.testing.assert_array_equal(_decode(data, t, l, bh, bw, denom, 1), full[t:t + bh, l:l + bw])
    # and near a full decode + antialiased downscale (a different filter: the
    # DCT drops high frequencies; measured mean |diff| 2.5 / 2.0 / 5.6 at 1/2, 1/4, 1/8)
    ref = F.resize(torch.from_numpy(_decode(data, 0, 0, 300, 451)).permute(2, 0, 1), [h, w], antialias=True)
    diff = (torch.from_numpy(full).permute(2, 0, 1).int() - ref.int()).abs().float().mean().item()
    print(f"1/{denom}: mean |diff| {diff:.2f}")
    assert diff < {2: 3.5, 4: 3.0, 8: 7.0}[denom]


def test_bad_input_gives_codes_not_crashes():
    data = _jpeg(np.ascontiguousarray(_photo("astronaut")[:64, :64]))
    out, region = np.empty(64 * 64 * 3, np.uint8), np.zeros(2, np.int64)
    assert decode_box(np.zeros(500, np.uint8), 0, 0, 8, 8, 1, 1, out, region) == -1  # not a JPEG
    assert decode_box(data[:40].copy(), 0, 0, 8, 8, 1, 1, out, region) == -1  # header cut off
    assert decode_box(data, 60, 0, 8, 8, 1, 1, out, region) == -2  # box past the bottom
    assert decode_box(data, 0, 0, 64, 64, 1, 1, out[:100], region) == -3  # buffer too small
    cmyk = io.BytesIO()
    Image.fromarray(_photo("astronaut")[:32, :32]).convert("CMYK").save(cmyk, "JPEG")
    assert decode_box(np.frombuffer(cmyk.getvalue(), np.uint8).copy(), 0, 0, 8, 8, 1, 1, out, region) == -4
    # truncated scan data: libjpeg warns and fills, as TurboJPEG and torchvision's PIL path do
    assert decode_box(data[: len(data) * 2 // 3].copy(), 0, 0, 64, 64, 1, 1, out, region) == 0


def test_progressive_jpeg_boxes_equal_torchvision():
    image = np.ascontiguousarray(_photo("coffee")[:200, :260])
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=85, progressive=True)
    data = np.frombuffer(buf.getvalue(), np.uint8).copy()
    full = decode_jpeg(torch.from_numpy(data)).permute(1, 2, 0).numpy()
    for top, left, h, w in ((0, 0, 200, 260), (37, 51, 90, 120), (150, 200, 50, 60)):
        np.testing.assert_array_equal(_decode(data, top, left, h, w), full[top:top + h, left:left + w])
