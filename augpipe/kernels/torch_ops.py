"""Batched torch kernels for every op (the torch executor's, CPU and CUDA).

Each kernel takes uint8 images (N, C, H, W), C in {1, 3}, on any device, and
one parameter per sample (a 1-D tensor, array or list of length N holding the
values `augpipe.core.ops.op_params` returns). It returns a new uint8 tensor of the
same shape and device; the input is never written to. There is no Python loop
over samples: per-sample parameters are broadcast as (N, 1, 1, 1) tensors, and
the geometric ops build one (N, 2, 3) affine matrix and sample once.

The arithmetic copies torchvision.transforms.v2.functional step by step as
RandAugment calls it (nearest interpolation, zero fill): the same float32
operations in the same order, the same rounding, so results equal
torchvision's bit for bit for every op whose torchvision arithmetic does not
depend on the CPU. The geometric ops sample on a grid of their own that does
not depend on it either (`affine_sample`; bounds against torchvision in
tests/test_conformance.py). This module knows nothing of the op table.
"""
from __future__ import annotations

import numpy as np
import torch

from .interpreted import cached_or_twin
from .ops import affine_thetas


def _host(values) -> np.ndarray:
    """Per-sample parameters as a 1-D float64 host array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _per_sample(values: np.ndarray, like: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Host values as an (N, 1, 1, 1) tensor on `like`'s device.

    float64 -> float32 here is the same cast torchvision's kernels apply to
    their Python-float arguments.
    """
    return torch.as_tensor(values, dtype=dtype).to(like.device).view(-1, 1, 1, 1)


# ------------------------------------------------------------------ geometry

def affine_grid(theta: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampling grid of one float32 theta (N, 6) per sample: (gx, gy),
    float32 (N, H, W) each, in [-1, 1] units.

    torchvision builds it with a batched matmul whose float32 rounding depends
    on the CPU's BLAS kernel (AVX2 and AVX-512 differ in the last bit, and
    nearest-neighbour sampling turns that into whole pixels). Here each
    coordinate is float32((x * s0 + y * s1) + s2) with s = theta / [w/2, h/2]
    in float32: both products are exact in float64 (a half-integer times a
    float32), the sums round in float64, the result once to float32. The
    numba kernels (augpipe.kernels.ops._grid_row) repeat these operations one
    by one: the same bits on every CPU and on CUDA.
    """
    n = theta.shape[0]
    device = theta.device
    half = torch.tensor([0.5 * w] * 3 + [0.5 * h] * 3, dtype=torch.float32, device=device)
    s = (theta.to(torch.float32) / half).double()  # (N, 6): s0x s1x s2x s0y s1y s2y
    xs = torch.arange(w, dtype=torch.float64, device=device).sub_((w - 1) * 0.5).view(1, 1, w)
    ys = torch.arange(h, dtype=torch.float64, device=device).sub_((h - 1) * 0.5).view(1, h, 1)
    return tuple(((xs * s[:, k].view(n, 1, 1)) + (ys * s[:, k + 1].view(n, 1, 1))).add_(s[:, k + 2].view(n, 1, 1))
                 .float() for k in (0, 3))


def affine_sample(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour sampling with zero fill over `affine_grid(theta)`:
    torchvision's `affine_image` (grid_sample mode="nearest",
    padding_mode="zeros", align_corners=False), with the source index
    ((g + 1) * size - 1) / 2 computed in float32 and rounded half to even
    as grid_sample does, then an integer gather (no grid_sample, whose own
    arithmetic may differ between CPUs)."""
    n, c, h, w = images.shape
    flat = torch.zeros((n, h, w), dtype=torch.int64, device=images.device)
    inside = torch.ones((n, h, w), dtype=torch.bool, device=images.device)
    for g, size, stride in zip(affine_grid(theta.to(images.device), h, w), (w, h), (1, w)):
        f = g.add_(1.0).mul_(float(size)).sub_(1.0).div_(2.0).clamp_(-1.0, float(size)).round_()
        inside &= (f >= 0) & (f < size)
        flat += f.clamp_(0, size - 1).long() * stride
    out = images.reshape(n, c, h * w).gather(2, flat.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return out.mul_(inside.unsqueeze(1))


def _affine(images: torch.Tensor, angle, tx=0.0, ty=0.0, shear_x=0.0, shear_y=0.0, center=False) -> torch.Tensor:
    """One batched `affine_image`; `center=True` is center=[0, 0] (the top-left
    corner). Every argument may be per sample (length N) or a scalar. The
    matrices come from the numba kernels' `inverse_affine` (libm, as
    torchvision), so both executors sample with the same theta."""
    n, _, h, w = images.shape
    if n == 0:
        return images.clone()
    corner = np.broadcast_to(np.asarray(center, dtype=bool), (n,))
    cx = np.ascontiguousarray(np.where(corner, -w * 0.5, 0.0))
    cy = np.ascontiguousarray(np.where(corner, -h * 0.5, 0.0))
    per_sample = (np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)))
                  for v in (angle, tx, ty, shear_x, shear_y))
    theta = cached_or_twin(affine_thetas)(*per_sample, cx, cy)  # a first use must not wait for a compile
    return affine_sample(images, torch.from_numpy(theta))


def shear_x(images: torch.Tensor, degrees) -> torch.Tensor:
    """ShearX by `degrees` (torchvision: shear=[deg, 0], center=[0, 0])."""
    return _affine(images, 0.0, shear_x=_host(degrees), center=True)


def shear_y(images: torch.Tensor, degrees) -> torch.Tensor:
    """ShearY by `degrees` (torchvision: shear=[0, deg], center=[0, 0])."""
    return _affine(images, 0.0, shear_y=_host(degrees), center=True)


def translate_x(images: torch.Tensor, pixels) -> torch.Tensor:
    """TranslateX by `pixels` (op_params truncates them to whole pixels, as torchvision does)."""
    return _affine(images, 0.0, tx=_host(pixels))


def translate_y(images: torch.Tensor, pixels) -> torch.Tensor:
    """TranslateY by `pixels`."""
    return _affine(images, 0.0, ty=_host(pixels))


def rotate(images: torch.Tensor, degrees) -> torch.Tensor:
    """Rotate counter-clockwise by `degrees` about the image centre, no expand.

    torchvision short-cuts 0 and 180 degrees (and 90/270 on square images) to
    clone/rot90 instead of grid sampling; those samples take the same short
    cut here so that no rounding of the sampling grid can tell them apart.
    """
    n, _, h, w = images.shape
    angle = np.mod(_host(degrees), 360.0)  # np.mod == Python's float %
    turns = np.full(n, -1)
    turns[angle == 0] = 0
    turns[angle == 180] = 2
    if h == w:
        turns[angle == 90] = 1
        turns[angle == 270] = 3
    if (turns < 0).all():
        return _affine(images, -angle)
    out = torch.empty_like(images)
    for k in np.unique(turns):
        sel = np.nonzero(turns == k)[0]
        idx = torch.from_numpy(sel).to(images.device)
        part = images.index_select(0, idx)
        part = _affine(part, -angle[sel]) if k < 0 else torch.rot90(part, k=int(k), dims=(-2, -1))
        out.index_copy_(0, idx, part)
    return out


# -------------------------------------------------------------------- colour

def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """float32 (N, 1, H, W) luma, floored, exactly as torchvision computes it."""
    r, g, b = images.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze_(-3)


def _fused_add(x: torch.Tensor, other: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """float32 `x + alpha * other` rounded once, like torchvision's `x.add_(other, alpha=...)`.

    torch's add-with-alpha is a fused multiply-add (CPU and CUDA). With a
    per-sample alpha tensor we evaluate it in float64 instead: alpha * other is
    exact there (float32 * float32) and so, for these 0..255 operands, is the
    sum, so the single cast back to float32 gives the fused result. Two float32
    ops (multiply, then add) would differ in the last bit and flip truncations.
    """
    return x.double().add_(other.double() * alpha.double()).float()


def _blend(images: torch.Tensor, other: torch.Tensor, factors) -> torch.Tensor:
    """torchvision's `_blend(images, other, factor)` with per-sample factors."""
    f = _host(factors)
    ratio = _per_sample(f, images)
    alpha = _per_sample(1.0 - f, images)  # Python-float 1 - ratio, then float32
    return _fused_add(images.mul(ratio), other, alpha).clamp_(0, 255).to(images.dtype)


def brightness(images: torch.Tensor, factors) -> torch.Tensor:
    """Multiply by `factors` (>= 0), clamp, truncate to uint8."""
    return images.mul(_per_sample(_host(factors), images)).clamp_(0, 255).to(images.dtype)


def color(images: torch.Tensor, factors) -> torch.Tensor:
    """Saturation: blend with the floored grayscale; a no-op on 1-channel images."""
    if images.shape[-3] == 1:  # torchvision matches PIL here
        return images.clone()
    return _blend(images, _grayscale(images), factors)


def contrast(images: torch.Tensor, factors) -> torch.Tensor:
    """Blend with the mean of the (floored) grayscale over (C, H, W)."""
    gray = _grayscale(images) if images.shape[-3] == 3 else images.to(torch.float32)
    return _blend(images, gray.mean(dim=(-3, -2, -1), keepdim=True), factors)


def sharpness(images: torch.Tensor, factors) -> torch.Tensor:
    """Blend with the rounded 3x3 smoothing [1,1,1;1,5,1;1,1,1]/13; borders kept."""
    if images.numel() == 0 or images.shape[-2] <= 2 or images.shape[-1] <= 2:
        return images.clone()
    out = images.to(torch.float32)
    # torchvision rounds a float32 conv2d with this kernel. Its exact value is
    # k/13 for an integer k, never within float error of a .5 tie, so rounding
    # the exactly summed k / 13 gives the same integers, and separable sums are
    # far cheaper than a depthwise conv2d on CPU.
    rows = out[..., :-2] + out[..., 1:-1] + out[..., 2:]
    k = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :] + 4.0 * out[..., 1:-1, 1:-1]
    blurred = k.div_(13.0).round_()
    inner = out[..., 1:-1, 1:-1]
    f = _host(factors)
    inner.copy_(_fused_add(inner, blurred.sub_(inner), _per_sample(1.0 - f, images)))
    return out.clamp_(0, 255).to(images.dtype)


def posterize(images: torch.Tensor, bits) -> torch.Tensor:
    """Keep the top `bits` (0..8) bits of every value."""
    bits = np.clip(np.round(_host(bits)), 0, 8).astype(np.int64)
    masks = (0xFF << (8 - bits)) & 0xFF
    return images.bitwise_and(_per_sample(masks, images, dtype=torch.uint8))


def solarize(images: torch.Tensor, thresholds) -> torch.Tensor:
    """Invert values >= threshold (compared in float32, as torchvision does)."""
    hit = images >= _per_sample(_host(thresholds), images)
    return images.bitwise_xor(hit.view(torch.uint8).mul_(255))  # xor 255 == invert; cheaper than where


def autocontrast(images: torch.Tensor, _params=None) -> torch.Tensor:
    """Stretch each channel's [min, max] to [0, 255]; flat channels unchanged."""
    x = images.to(torch.float32)
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    flat = hi == lo
    inv_scale = hi.sub_(lo).mul_(1.0 / 255).masked_fill_(flat, 1.0)
    return x.sub_(lo.masked_fill_(flat, 0.0)).div_(inv_scale).clamp_(0, 255).to(images.dtype)


def equalize(images: torch.Tensor, _params=None) -> torch.Tensor:
    """Per-channel histogram equalisation with PIL's lookup table.

    lut[v] = (cum_hist[v - 1] + step // 2) // step, lut[0] = 0, where step is
    (pixels not at the channel's maximum value) // 255; step == 0 -> unchanged.
    """
    n, c, h, w = images.shape
    if images.numel() == 0:
        return images.clone()
    flat = images.reshape(n, c, h * w).long()
    hist = torch.zeros(n, c, 256, dtype=torch.int64, device=images.device)
    hist.scatter_add_(-1, flat, torch.ones_like(flat))
    top_count = hist.gather(-1, flat.amax(dim=-1, keepdim=True))
    step = (h * w - top_count) // 255
    lut = (hist.cumsum(-1)[..., :-1] + step // 2).div_(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([lut.new_zeros(n, c, 1), lut], dim=-1)
    lut = torch.where(step != 0, lut, torch.arange(256, device=images.device))  # step 0: unchanged
    return lut.to(torch.uint8).gather(-1, flat).view_as(images)


def invert(images: torch.Tensor, _params=None) -> torch.Tensor:
    """255 - x."""
    return images.bitwise_not()


def identity(images: torch.Tensor, _params=None) -> torch.Tensor:
    """A copy (every kernel returns a new tensor)."""
    return images.clone()
