"""Crop + resize of JPEG files without decoding what the crop leaves out.

The torch backend's folder path decodes whole images (torchvision) and crops
them afterwards. For a JPEG the planner only needs the header's size; then
`kernels.jpeg.decode_box` decodes just the box with libjpeg-turbo's accurate
IDCT -- the pixels torchvision.io.decode_jpeg gives, bit for bit -- and
`kernels.resize.resize_box_rgbx` resizes it as torchvision's antialiased
bilinear does, bit for bit. The result equals the torchvision path's.

Anything this path does not cover returns None and takes the torchvision
path: other formats, CMYK JPEGs, boxes reaching outside the image (padded
crops), and files with corrupt or truncated data anywhere (decoded strictly,
so torchvision's own error reaches the user).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch

from ..kernels.jpeg import decode_box, jpeg_size
from ..kernels.resize import resize_box_rgbx, resize_scratch_rgbx

_local = threading.local()  # per-thread scratch: thread workers share this module


def _scratch(name: str, n: int) -> np.ndarray:
    buf = getattr(_local, name, None)
    if buf is None or buf.size < n:
        buf = np.empty(max(n, 1 << 20), np.uint8)
        setattr(_local, name, buf)
    return buf


def is_jpeg(data: np.ndarray) -> bool:
    return data.size > 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF


def crop_jpeg(data: np.ndarray, plan_for: Callable[[int, int], object]):
    """(CHW uint8 crop, plan) for JPEG bytes, or None when the torchvision path must do it.

    plan_for(height, width) -> a one-sample Plan (augpipe.plan.make_plan).
    """
    if not is_jpeg(data):
        return None
    hw = np.zeros(2, np.int64)
    if jpeg_size(data, 1, hw) != 0:
        return None
    height, width = int(hw[0]), int(hw[1])
    plan = plan_for(height, width)
    top, left, h, w = (int(v) for v in plan.box[0])
    if top < 0 or left < 0 or top + h > height or left + w > width:
        return None
    out_h, out_w = plan.size
    region = np.zeros(2, np.int64)
    # decoded columns: the box, one margin column each side, MCU alignment (<= 32 px) on the left
    buf = _scratch("decoded", h * (w + 34) * 4)
    if decode_box(data, top, left, h, w, 1, 0, buf, region, 4, 1) != 0:
        return None
    src = buf[: h * region[1] * 4].reshape(h, region[1], 4)
    out = np.empty((out_h, out_w, 3), np.uint8)
    resize_box_rgbx(src, 0, left - int(region[0]), h, w, False, np.uint8(plan.fill), out,
                    _scratch("resize", resize_scratch_rgbx(h, w, out_h, out_w)))
    return torch.from_numpy(out).permute(2, 0, 1), plan


def warm_up() -> None:
    """Compile the kernels (before DataLoader workers fork, so they inherit them)."""
    region = np.zeros(2, np.int64)
    decode_box(np.zeros(16, np.uint8), 0, 0, 1, 1, 1, 0, np.zeros(64, np.uint8), region, 4, 1)
    jpeg_size(np.zeros(16, np.uint8), 1, region)
    resize_box_rgbx(np.zeros((4, 4, 4), np.uint8), 0, 0, 3, 3, False, np.uint8(0), np.zeros((2, 2, 3), np.uint8),
                    np.zeros(resize_scratch_rgbx(4, 4, 2, 2), np.uint8))
