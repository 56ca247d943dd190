"""`augpipe show`: a PNG grid of a policy's ops across magnitudes.

Rows are ops, columns magnitudes; each cell is a real image from the source
with that one op applied at that magnitude (positive sign), through the same
executor the loaders use. It is the picture to look at when choosing M.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..core.ops import OPS, STANDARD, WIDE
from ..core.policy import Policy, get_policy
from ..engine.exec_torch import apply_ops

DEFAULT_MAGNITUDES = (0, 5, 9, 14, 20, 25, 30)


def policy_ops(policy: Policy) -> list[int]:
    arrays = policy.lower()
    ops = arrays.pool.tolist() if arrays.pool.size else sorted(set(arrays.sub_ops.ravel().tolist()))
    return [op for op in ops if op != 0] or [0]


def sample_images(source, count: int, size: int, seed: int = 0) -> torch.Tensor:
    """`count` images of the source, center-cropped/resized to `size`, 3 channels."""
    from ..loader import Loader

    loader = Loader(source, batch_size=count, train=False, shuffle=True, seed=seed, num_workers=0, size=size,
                    policy="identity")
    images = next(iter(loader))[0]
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images


def render_grid(images: torch.Tensor, ops: list[int], magnitudes, space: int = STANDARD, cell: int = 96) -> Image.Image:
    """One row per op (cycling through `images`), one column per magnitude."""
    n_rows, n_cols = len(ops), len(magnitudes)
    rows = []
    for r, op in enumerate(ops):
        base = images[r % len(images)].unsqueeze(0).expand(n_cols, -1, -1, -1).contiguous()
        out = apply_ops(base, np.full((n_cols, 1), op, np.int8), np.asarray(magnitudes, np.float32)[:, None], space)
        rows.append(out)
    grid = torch.stack(rows)  # (rows, cols, C, H, W)
    label_w, head_h = 110, 22
    canvas = Image.new("RGB", (label_w + n_cols * cell, head_h + n_rows * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for c, m in enumerate(magnitudes):
        draw.text((label_w + c * cell + cell // 2 - 12, 4), f"M={m:g}", fill="black")
    for r, op in enumerate(ops):
        draw.text((6, head_h + r * cell + cell // 2 - 6), OPS[op].name, fill="black")
        for c in range(n_cols):
            tile = Image.fromarray(grid[r, c].permute(1, 2, 0).cpu().numpy()).resize((cell - 4, cell - 4), Image.NEAREST)
            canvas.paste(tile, (label_w + c * cell + 2, head_h + r * cell + 2))
    return canvas


def show(source="fashion-mnist:test", policy="randaugment", magnitudes=DEFAULT_MAGNITUDES, out="augpipe-grid.png",
         size: int = 64, seed: int = 0) -> Path:
    """Write the grid PNG for `policy` on images of `source`; return its path."""
    pol = get_policy(policy)
    ops = policy_ops(pol)
    images = sample_images(source, min(len(ops), 8), size, seed)
    space = WIDE if pol.lower().space == WIDE else STANDARD
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    render_grid(images, ops, list(magnitudes), space).save(tmp, format="PNG")
    tmp.replace(path)
    return path
