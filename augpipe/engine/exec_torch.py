"""The torch executor: a plan's ops on a batch of tensors, CPU or CUDA.

Vectorised over the batch: per op slot, samples are sorted by op so that
every op runs on a contiguous slice with its batched kernel
(`augpipe.kernels.torch_ops`, named by the op table), and all the geometric ops of
a slot share one sampling pass. Bit-exact with the numba executor
(augpipe.engine.exec_cpu) on any CPU; see tests/test_kernels.py and
tests/test_conformance.py for what is exact against torchvision.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.dispatch import op_params
from ..core.ops import OPS
from ..kernels.torch_ops import _affine

_AFFINE = -2  # group key: every sampled geometric op of a slot, sampled together
_IDENTITY = next(i for i, op in enumerate(OPS) if op.name == "Identity")


def apply_op(images: torch.Tensor, op_id: int, params) -> torch.Tensor:
    """Apply op `op_id` (an index into augpipe.core.ops.OPS) with per-sample `params`.

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
    return OPS[int(op_id)].torch(images, params)


def _mixed_affine(images: torch.Tensor, op_ids: np.ndarray, params: np.ndarray) -> torch.Tensor:
    """The geometric ops of one slot as a single sampling pass: each sample's
    matrix is computed exactly as its own op would compute it."""
    n = len(op_ids)
    args = {name: np.zeros(n) for name in ("angle", "tx", "ty", "shear_x", "shear_y")}
    corner = np.zeros(n, dtype=bool)
    for op_id in np.unique(op_ids):
        spec = OPS[op_id].affine
        sel = op_ids == op_id
        args[spec.arg][sel] = -params[sel] if spec.negate else params[sel]
        corner[sel] = spec.corner
    return _affine(images, center=corner, **args)


def _group_keys(col: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Per-sample group: -1 skip, _AFFINE, or the op id (right angles of an
    op that declares torchvision's short cuts keep its own kernel)."""
    keys = col.astype(np.int64)
    keys[keys == _IDENTITY] = -1
    for op_id in np.unique(keys[keys >= 0]):
        spec = OPS[op_id].affine
        if spec is None:
            continue
        sel = keys == op_id
        if spec.right_angles:
            sel &= np.mod(params, 90.0) != 0
        keys[sel] = _AFFINE
    return keys


def apply_ops(images: torch.Tensor, ops, mags, space: int) -> torch.Tensor:
    """Apply each sample's ops in order.

    Args:
        images: uint8 (N, C, H, W).
        ops: int (N, K) op ids, -1 for no op; slot k is applied before k + 1.
        mags: float (N, K) signed magnitudes on the 0..30 scale.
        space: augpipe.core.ops.STANDARD or augpipe.core.ops.WIDE.

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
