"""Executing a MixPlan on a delivered batch, in place: numba kernels on CPU
batches (augpipe/kernels/mixing.py), batched torch on CUDA ones.

Every backend (torch, DALI, FFCV) hands the Loader a Batch of the same pixels
for the same plans, so one executor after them serves all of them and keeps
them identical. The batch's images are the consumer's own fresh tensor, so
they are changed in place (no copy of the batch). Erasing runs first (per
sample, as timm's transform does), mixing second (across the batch, from the
erased originals). Formulas are timm's and torchvision v2's, so pixels equal
theirs given the same choices: MixUp x·λ + x_partner·(1-λ) in float32
(rounded half-to-even for uint8, as timm's FastCollateMixup), CutMix the
partner's box pasted, erasing a fill.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.mixing import CUTMIX, MIXUP, MixPlan, Mixing, RandomErasing
from ..kernels.mixing import erase_const, mix_pairs, normalize_mix
from ..kernels.rng import sample_key


def _rows_cols(size, device):
    h, w = size
    return (torch.arange(h, device=device).view(1, h, 1), torch.arange(w, device=device).view(1, 1, w))


def erase(images: torch.Tensor, plan: MixPlan, erasing: RandomErasing, seed: int, epoch: int,
          index: np.ndarray, torch_ops: bool = False) -> torch.Tensor:
    """Erase each sample's planned rectangles (in order; a later one overwrites an earlier one), in place.
    Constant fills use the CPU kernel on CPU unless `torch_ops` (the CUDA path, testable on CPU)."""
    if not plan.rects.shape[1] or not (plan.rects[:, :, 2] > 0).any():
        return images
    out, device = images, images.device
    if erasing.value == "const" and device.type == "cpu" and not torch_ops:
        erase_const(images.numpy(), plan.rects, float(erasing.fill) if images.is_floating_point() else int(erasing.fill))
        return images
    ys, xs = _rows_cols(images.shape[-2:], device)
    if erasing.value == "const":
        rects = torch.from_numpy(plan.rects.astype(np.int64)).to(device)
        mask = torch.zeros((images.shape[0],) + tuple(images.shape[-2:]), dtype=torch.bool, device=device)
        for r in range(rects.shape[1]):
            top, left, h, w = (rects[:, r, k].view(-1, 1, 1) for k in range(4))
            mask |= (ys >= top) & (ys < top + h) & (xs >= left) & (xs < left + w)
        fill = torch.tensor(erasing.fill, dtype=images.dtype, device=device)
        return out.masked_fill_(mask.unsqueeze(1), fill)
    # random values: one normal per channel ("rand") or per pixel ("pixel"), from a generator keyed by
    # the sample, so they do not depend on the batch or the device
    for i in np.flatnonzero(plan.rects[:, :, 2].any(axis=1)):
        g = torch.Generator().manual_seed(int(sample_key(np.uint64(seed), np.uint64(epoch), np.uint64(index[i])))
                                          & 0x7FFF_FFFF_FFFF_FFFF)
        for top, left, h, w in plan.rects[i]:
            if h == 0:
                continue
            shape = (images.shape[1], int(h), int(w)) if erasing.value == "pixel" else (images.shape[1], 1, 1)
            values = torch.randn(shape, generator=g, dtype=torch.float32).to(device, images.dtype)
            out[i, :, top:top + h, left:left + w] = values
    return out


def mix(images: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """MixUp and CutMix rows of the batch, each from its partner's unmixed image."""
    kind = plan.kind
    if not (kind != 0).any():
        return images
    device = images.device
    if device.type == "cpu":
        mix_pairs(images.numpy(), kind, plan.lam, plan.box, not images.is_floating_point())
        return images
    return mix_torch(images, plan)


def mix_torch(images: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """`mix` in batched torch ops (the CUDA path; on any device, equal to the CPU kernels)."""
    kind, device = plan.kind, images.device
    partner = images[torch.from_numpy(plan.partner).to(device)]
    out = images.clone()
    rows = np.flatnonzero(kind == MIXUP)
    if rows.size:
        at = torch.from_numpy(rows).to(device)
        lam = torch.from_numpy(plan.lam[rows]).to(device).view(-1, 1, 1, 1)
        mixed = images[at].float() * lam + partner[at].float() * (1 - lam)
        out[at] = mixed.round_().to(images.dtype) if not images.is_floating_point() else mixed.to(images.dtype)
    if (kind == CUTMIX).any():
        ys, xs = _rows_cols(images.shape[-2:], device)
        box = torch.from_numpy(plan.box.astype(np.int64)).to(device)
        y1, y2, x1, x2 = (box[:, k].view(-1, 1, 1) for k in range(4))
        inside = (ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)
        inside &= torch.from_numpy(kind == CUTMIX).to(device).view(-1, 1, 1)
        out = torch.where(inside.unsqueeze(1), partner, out)
    return out


def execute(images: torch.Tensor, plan: MixPlan, erasing: RandomErasing | None, seed: int, epoch: int,
            index: np.ndarray, normalize=None) -> torch.Tensor:
    """The stage on a backend's uint8 batch: erase, mix, and with `normalize` (the BackendContext of an
    output="float" loader) normalise first. On CPU with a constant fill, the three are one pass
    (kernels/mixing.normalize_mix); otherwise torch's normalisation, then `erase`, then `mix`."""
    if normalize is not None:
        if images.device.type == "cpu" and (erasing is None or erasing.value == "const"):
            out = torch.empty(images.shape, dtype=torch.float32)
            scale = normalize.norm_scale.reshape(-1).cpu().numpy()
            shift = normalize.norm_shift.reshape(-1).cpu().numpy()
            fill = float(erasing.fill) if erasing is not None else 0.0
            normalize_mix(images.contiguous().numpy(), out.numpy(), scale, shift, plan.kind, plan.lam, plan.box, plan.rects, fill)
            return out
        images = normalize.normalize(images)
    if erasing is not None:
        images = erase(images, plan, erasing, seed, epoch, index)
    return mix(images, plan)


def soft_targets(labels: torch.Tensor, partner_labels: torch.Tensor, lam: torch.Tensor, num_classes: int,
                 smoothing: float) -> torch.Tensor:
    """timm's mixup_target per sample: λ·smooth(y) + (1-λ)·smooth(y_partner), float32 (N, C)."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off

    def one_hot(y):
        return torch.full((y.shape[0], num_classes), off, device=y.device).scatter_(1, y.long().view(-1, 1), on)

    lam = lam.to(torch.float32).view(-1, 1)
    return one_hot(labels) * lam + one_hot(partner_labels) * (1.0 - lam)


def check_for_output(mixing: Mixing | None, erasing: RandomErasing | None, output: str) -> None:
    """What a uint8 batch cannot hold: random normal fills, fractional or out-of-range constants."""
    if mixing is not None and not isinstance(mixing, Mixing):
        raise TypeError(f"mix must be an augpipe Mixing (ap.MixUp(...), ap.CutMix(...), or both joined by |), "
                        f"got {type(mixing).__name__}")
    if erasing is None:
        return
    if not isinstance(erasing, RandomErasing):
        raise TypeError(f"erase must be an augpipe RandomErasing(...), got {type(erasing).__name__}")
    if output == "uint8":
        if erasing.value != "const":
            raise ValueError(f"RandomErasing(value={erasing.value!r}) fills with normal draws of the normalised "
                             "image: use output='float', or value='const' with a fill in 0..255")
        if not (float(erasing.fill).is_integer() and 0 <= erasing.fill <= 255):
            raise ValueError(f"RandomErasing(fill={erasing.fill!r}) on uint8 output needs an integer in 0..255")
