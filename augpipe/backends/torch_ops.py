"""Batched torch kernels for every op, bit-exact with torchvision.

Each kernel takes uint8 images (N, C, H, W), C in {1, 3}, on any device, and
one parameter per sample (a 1-D tensor, array or list of length N holding the
values `augpipe.ops.op_params` returns). It returns a new uint8 tensor of the
same shape and device; the input is never written to. There is no Python loop
over samples: per-sample parameters are broadcast as (N, 1, 1, 1) tensors, and
the geometric ops build one (N, 2, 3) affine matrix and sample once.

The arithmetic copies torchvision.transforms.v2.functional step by step as
RandAugment calls it (nearest interpolation, zero fill), so that results agree
bit for bit: the same float32 operations in the same order, the same rounding.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as nnf

from ..ops import OPS, op_params


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

def _inverse_affine(angle, tx, ty, shear_x, shear_y, cx, cy) -> np.ndarray:
    """torchvision's `_get_inverse_affine_matrix` (scale 1), vectorised.

    Same float64 expressions in the same order, so the (N, 6) result rounds to
    the same float32 theta.
    """
    rot, sx, sy = np.radians(angle), np.radians(shear_x), np.radians(shear_y)
    cos_sy, tan_sx = np.cos(sy), np.tan(sx)
    a = np.cos(rot - sy) / cos_sy
    b = -(a * tan_sx + np.sin(rot))
    c = np.sin(rot - sy) / cos_sy
    d = np.cos(rot) - c * tan_sx
    cx_tx, cy_ty = cx + tx, cy + ty
    m2 = 0.0 + (cx - d * cx_tx - (-b) * cy_ty)
    m5 = 0.0 + (cy - (-c) * cx_tx - a * cy_ty)
    return np.stack([d, -b, m2, -c, a, m5], axis=-1)


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """torchvision's `_affine_grid` with one theta per sample: (N, 2, 3) -> (N, H, W, 2)."""
    device = theta.device
    base = torch.empty(1, h, w, 3, dtype=torch.float32, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=device).unsqueeze_(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32, device=device)
    # bmm as torchvision does it (not an elementwise rewrite): the rounding of
    # this 3-term dot product decides nearest-neighbour ties.
    return base.view(1, h * w, 3).expand(theta.shape[0], -1, -1).bmm(scaled).view(-1, h, w, 2)


def _affine(images: torch.Tensor, angle, tx=0.0, ty=0.0, shear_x=0.0, shear_y=0.0, center=False) -> torch.Tensor:
    """One batched `affine_image`; `center=True` is center=[0, 0] (the top-left
    corner). Every argument may be per sample (length N) or a scalar."""
    n, _, h, w = images.shape
    if n == 0:
        return images.clone()
    corner = np.broadcast_to(np.asarray(center, dtype=bool), (n,))
    cx, cy = np.where(corner, -w * 0.5, 0.0), np.where(corner, -h * 0.5, 0.0)
    per_sample = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in (angle, tx, ty, shear_x, shear_y))
    matrix = _inverse_affine(*per_sample, cx, cy)
    theta = torch.as_tensor(matrix, dtype=torch.float32).view(n, 2, 3).to(images.device)
    out = nnf.grid_sample(images.float(), _affine_grid(theta, h, w), mode="nearest",
                          padding_mode="zeros", align_corners=False)
    return out.round_().to(images.dtype)


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


_KERNELS = {
    "Identity": identity, "ShearX": shear_x, "ShearY": shear_y, "TranslateX": translate_x,
    "TranslateY": translate_y, "Rotate": rotate, "Brightness": brightness, "Color": color,
    "Contrast": contrast, "Sharpness": sharpness, "Posterize": posterize, "Solarize": solarize,
    "AutoContrast": autocontrast, "Equalize": equalize, "Invert": invert,
}
KERNELS = tuple(_KERNELS[op.name] for op in OPS)  # indexed by op id


def apply_op(images: torch.Tensor, op_id: int, params) -> torch.Tensor:
    """Apply op `op_id` (an index into augpipe.ops.OPS) with per-sample `params`.

    Args:
        images: uint8 (N, C, H, W), C in {1, 3}.
        op_id: op id.
        params: length-N parameters as `op_params` returns them (ignored by
            parameterless ops).

    Returns:
        A new uint8 tensor of the same shape and device.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 (N, 1|3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    return KERNELS[int(op_id)](images, params)


_AFFINE = -2  # group key: every grid-sampled geometric op of a slot, sampled together
_ID = {op.name: i for i, op in enumerate(OPS)}
_AFFINE_ARGS = {  # op id -> which _affine argument its parameter is, and the centre it uses
    _ID["ShearX"]: ("shear_x", True), _ID["ShearY"]: ("shear_y", True),
    _ID["TranslateX"]: ("tx", False), _ID["TranslateY"]: ("ty", False), _ID["Rotate"]: ("angle", False),
}


def _mixed_affine(images: torch.Tensor, op_ids: np.ndarray, params: np.ndarray) -> torch.Tensor:
    """Shears, translations and rotations of one slot as a single grid_sample:
    each sample's matrix is computed exactly as its own op would compute it."""
    n = len(op_ids)
    args = {name: np.zeros(n) for name in ("angle", "tx", "ty", "shear_x", "shear_y")}
    center = np.zeros(n, dtype=bool)
    for op_id, (name, corner) in _AFFINE_ARGS.items():
        sel = op_ids == op_id
        args[name][sel] = -params[sel] if name == "angle" else params[sel]  # rotate() negates too
        center[sel] = corner
    return _affine(images, center=center, **args)


def _group_keys(col: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Per-sample group: -1 skip, _AFFINE, or the op id (rotations by a
    multiple of 90 degrees keep Rotate's own short cut)."""
    keys = col.astype(np.int64)
    keys[keys == _ID["Identity"]] = -1
    affine = np.isin(keys, list(_AFFINE_ARGS))
    right_angle = (keys == _ID["Rotate"]) & (np.mod(params, 90.0) == 0)
    keys[affine & ~right_angle] = _AFFINE
    return keys


def apply_ops(images: torch.Tensor, ops, mags, space: int) -> torch.Tensor:
    """Apply each sample's ops in order.

    Per slot, samples are sorted by op so that every op runs on a contiguous
    slice (no per-op gather/scatter), and all the geometric ops of the slot
    share one grid_sample.

    Args:
        images: uint8 (N, C, H, W).
        ops: int (N, K) op ids, -1 for no op; slot k is applied before k + 1.
        mags: float (N, K) signed magnitudes on the 0..30 scale.
        space: augpipe.ops.STANDARD or augpipe.ops.WIDE.

    Returns:
        A new uint8 tensor.
    """
    ops, mags = np.asarray(ops), np.asarray(mags)
    if ops.ndim != 2 or ops.shape != mags.shape or ops.shape[0] != images.shape[0]:
        raise ValueError(f"ops {ops.shape} and mags {mags.shape} must both be (N={images.shape[0]}, K)")
    n, _, h, w = images.shape
    out = images.clone()
    for k in range(ops.shape[1]):
        col = ops[:, k].astype(np.int64)
        params = np.zeros(n)
        for op_id in np.unique(col[col >= 0]):
            sel = col == op_id
            params[sel] = op_params(int(op_id), mags[sel, k], space, h, w)
        keys = _group_keys(col, params)
        if (keys == -1).all():
            continue
        order = np.argsort(keys, kind="stable")
        keys, col, params = keys[order], col[order], params[order]
        perm = torch.from_numpy(order).to(out.device)
        work = out.index_select(0, perm)
        bounds = np.flatnonzero(np.diff(keys)) + 1
        for a, b in zip(np.r_[0, bounds], np.r_[bounds, n]):
            key = keys[a]
            if key == -1:
                continue
            part = work[a:b]
            if key == _AFFINE:
                part.copy_(_mixed_affine(part, col[a:b], params[a:b]))
            else:
                part.copy_(apply_op(part, key, params[a:b]))
        # index_select with the inverse permutation: index_copy_ is ~8x slower on CPU
        out = work.index_select(0, torch.from_numpy(np.argsort(order)).to(out.device))
    return out
