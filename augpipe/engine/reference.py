"""Building a batch through the source: the reference path.

`build_part` turns (epoch, indices, knob) into planned, cropped, flipped and
augmented images by reading the source directly: a gather for in-memory
sources, one decode at a time otherwise. The torch backend runs it in its
workers; `contract.render` runs it in the caller for any backend (the gate's
weaker views), so every backend can re-render a sample exactly as planned.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.knob import Knob
from ..core.plan import Plan, make_plan
from ..core.policy import Crop, PolicyArrays
from ..kernels.crop import crop_flip
from ..sources import DecodeError, Source
from .firstuse import FirstUse


@dataclass
class BuildSpec:
    """What building a batch through the source needs: small and picklable
    (worker processes receive it), holding no device state."""

    source: Source
    policy: PolicyArrays
    crop: Crop
    knob: Knob
    seed: int
    on_error: str
    first_use: FirstUse | None = None  # set while the kernels compile in the background (engine/firstuse.py)

    def compiling(self) -> bool:
        """Whether batches come from the kernels' twins: their compiled code is not cached yet."""
        return self.first_use is not None and not self.first_use.ready()

    def plan(self, epoch: int, indices, heights, widths, knob, caps: bool = True) -> Plan:
        """Plan samples at `knob` (scalar or per sample), bounded by the live caps."""
        return make_plan(self.seed, epoch, indices, heights, widths, knob, self.knob.caps if caps else None,
                         self.crop, self.policy, interpreted=self.compiling())


def crop_one(image: torch.Tensor, box, size: tuple[int, int], fill: int = 0) -> torch.Tensor:
    """Crop `box` (top, left, h, w; may reach outside: padded with `fill`)
    from a CHW image and resize it to `size` (bilinear, antialiased)."""
    from torchvision.transforms.v2 import functional as F  # imported on use: torchvision costs ~110 MB

    top, left, h, w = (int(v) for v in box)
    height, width = image.shape[-2:]
    pads = [max(0, -left), max(0, -top), max(0, left + w - width), max(0, top + h - height)]
    if any(pads):
        image = F.pad(image, pads, fill=fill)
        top, left = top + pads[1], left + pads[0]
    image = image[..., top:top + h, left:left + w]
    if (h, w) != tuple(size):
        image = F.resize(image, list(size), antialias=True)
    return image


def crop_windows(images: torch.Tensor, boxes: np.ndarray, flips: np.ndarray | None = None, fill: int = 0) -> torch.Tensor:
    """Equal-size windows (boxes may reach into padding), mirrored where
    `flips`, in one pass of a numba kernel (20x faster than a torch gather)."""
    n, c = images.shape[:2]
    h, w = (int(boxes[0, 2]), int(boxes[0, 3])) if n else images.shape[2:]
    out = torch.empty((n, c, h, w), dtype=torch.uint8)
    flips = np.zeros(n, np.bool_) if flips is None else np.ascontiguousarray(flips)
    crop_flip(images.contiguous().numpy(), np.ascontiguousarray(boxes[:, 0]), np.ascontiguousarray(boxes[:, 1]),
              flips, np.uint8(fill), out.numpy())
    return out


def flip(images: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """Horizontal flip of the samples where `mask` is True."""
    if not mask.any():
        return images
    sel = torch.from_numpy(np.ascontiguousarray(mask)).to(images.device)
    return torch.where(sel[:, None, None, None], images.flip(-1), images)


def _stack(images: list[torch.Tensor], channels: int, size) -> torch.Tensor:
    if images:
        return torch.stack(images)
    return torch.empty((0, channels, *size), dtype=torch.uint8)


def build_part(spec: BuildSpec, epoch: int, indices: np.ndarray, knob, *, caps: bool = True,
               apply_ops: bool = True, parallel: bool = False) -> dict:
    """One batch's images and plan, built through the source.

    Args:
        knob: magnitude, scalar or one per sample.
        caps: bound magnitudes by the live per-sample caps.
        apply_ops: run the policy's ops with the numba executor (False: stop
            after crop + flip; CUDA batches run them on the GPU).
        parallel: spread the ops over numba's threads.

    Returns a dict of images (uint8 NCHW, CPU), plan (Plan) and skipped
    [(name, reason)] (files that failed to decode with on_error="skip").
    """
    source = spec.source
    skipped: list[tuple[str, str]] = []
    indices = np.asarray(indices, dtype=np.int64)
    if source.in_memory:
        _, height, width = source.fixed_shape
        raw = source.get_batch(indices)
        twins = spec.compiling()
        plan = spec.plan(epoch, indices, height, width, knob, caps)
        if (plan.box[:, 2:] == plan.size).all() and not twins:
            images = crop_windows(raw, plan.box, plan.flip, plan.fill)
        else:
            images = _stack([crop_one(im, b, plan.size, plan.fill) for im, b in zip(raw, plan.box)],
                            source.channels, plan.size)
            images = flip(images, plan.flip)
    else:
        # Decode, plan and crop one sample at a time: a sample's plan does not
        # depend on its batch, and only crops stay in memory.
        knobs = np.broadcast_to(np.asarray(knob, dtype=np.float64), indices.shape)
        crops, plans = [], []
        for i, k in zip(indices, knobs):
            try:
                image = source.load(int(i))
            except DecodeError as err:
                if spec.on_error == "raise":
                    raise
                skipped.append((source.describe(int(i)), str(err)))
                continue
            one = spec.plan(epoch, [i], image.shape[-2], image.shape[-1], k, caps)
            crops.append(crop_one(image, one.box[0], one.size, one.fill))
            plans.append(one)
        plan = Plan.concat(plans) if plans else spec.plan(epoch, indices[:0], 1, 1, 0.0, caps)
        images = flip(_stack(crops, source.channels, plan.size), plan.flip)
    if apply_ops and spec.compiling():
        from .exec_torch import apply_ops as apply_ops_torch  # bit-exact with the numba executor

        images = apply_ops_torch(images, plan.ops, plan.mags, plan.space)
    elif apply_ops:
        from .exec_cpu import apply_ops_cpu

        images = apply_ops_cpu(images, plan.ops, plan.mags, plan.space, parallel=parallel)
    return {"images": images, "plan": plan, "skipped": skipped}


def build_request(spec: BuildSpec, epoch: int, step: int, indices: np.ndarray, knob, *, apply_ops: bool = True,
                  parallel: bool = False) -> dict:
    """`build_part` as a backend's worker hands it out: images, skipped, and the plan's fields (labels, index,
    magnitude, ops, mags) with the request's epoch and step."""
    part = build_part(spec, epoch, indices, knob, apply_ops=apply_ops, parallel=parallel)
    plan = part.pop("plan")
    part.update(labels=spec.source.labels[plan.index], index=plan.index, magnitude=plan.magnitude,
                ops=plan.ops, mags=plan.mags, epoch=epoch, step=step)
    return part
