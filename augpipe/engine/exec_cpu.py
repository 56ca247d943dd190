"""The CPU executor: augpipe's numba kernels on torch batches.

Bit-exact with the torch executor (exec_torch.py; tests/test_kernels.py), and
3-4x faster on CPU: each sample's ops run fused in compiled code instead of
one batched torch call per op. Backends use it whenever their batches live on
the CPU; the torch executor serves CUDA.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from ..core.dispatch import compiled
from ..core.ops import param_tables


def apply_ops_cpu(images: torch.Tensor, ops, mags, space: int, parallel: bool = False,
                  threads: int | None = None) -> torch.Tensor:
    """Each sample's ops, in slot order, on uint8 NCHW CPU images.

    Args:
        images: uint8 (N, C, H, W) on the CPU; not modified.
        ops: int (N, K) op ids, -1 for none. mags: float (N, K) signed magnitudes.
        space: augpipe.core.ops.STANDARD or WIDE.
        parallel: spread samples over numba's threads (the caller's process
            is not itself one of several workers).
        threads: with `parallel`, how many numba threads (default: all).

    Returns:
        A new contiguous uint8 (N, C, H, W) tensor.
    """
    n, _, h, w = images.shape
    ops = np.ascontiguousarray(ops, dtype=np.int8)
    if n == 0 or ops.size == 0 or (ops <= 0).all():
        return images.clone()
    nhwc = images.permute(0, 2, 3, 1).contiguous()  # kernels work on HWC images
    pixels = nhwc.numpy()
    args = (pixels, ops, np.ascontiguousarray(mags, dtype=np.float32), param_tables(space, h, w),
            np.empty_like(pixels))
    gen = compiled()
    if not parallel:
        gen.apply_ops_serial(*args)
    else:
        numba.set_num_threads(min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS))
        gen.apply_ops_batch(*args)
    return nhwc.permute(0, 3, 1, 2).contiguous()
