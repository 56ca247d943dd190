"""`augpipe show`: a PNG grid of a policy's ops across magnitudes.

Rows are ops, columns magnitudes; each cell is a real image from the source
with that one op applied at that magnitude (positive sign), through the same
executor the loaders use. It is the picture to look at when choosing M.

With mixing or erasing (`--mix`, `--erase`): rows are training samples of
one batch, columns magnitudes; each cell is `loader.render` of that sample at
that magnitude with the batch's mixing and erasing (same partner, λ, box and
rectangles; with follow="prob" their probability changes with M).
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


def render_mixed_grid(loader, magnitudes, rows: int = 8, cell: int = 96) -> Image.Image:
    """One row per sample of the loader's first batch, one column per magnitude, mixed and erased."""
    batch = next(iter(loader))
    cols = []
    for m in magnitudes:  # partners are positions in the batch: render it whole, show the first `rows`
        view = loader.render(batch.index, float(m), epoch=batch.epoch)
        images = view.images[:rows]
        cols.append(images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images)
    label_w, head_h = 150, 22
    n = cols[0].shape[0]
    canvas = Image.new("RGB", (label_w + len(magnitudes) * cell, head_h + n * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for c, m in enumerate(magnitudes):
        draw.text((label_w + c * cell + cell // 2 - 12, 4), f"M={m:g}", fill="black")
    for r in range(n):
        text = f"#{int(view.index[r])}"
        if view.lam is not None and float(view.lam[r]) < 1:
            text += f" λ={float(view.lam[r]):.2f}\n+ #{int(view.mix_index[r])}"
        if view.erased is not None and int(view.erased[r, :, 2].max()) > 0:
            text += " erased"
        draw.text((6, head_h + r * cell + cell // 2 - 12), text, fill="black")
        for c in range(len(magnitudes)):
            tile = Image.fromarray(cols[c][r].permute(1, 2, 0).cpu().numpy()).resize((cell - 4, cell - 4),
                                                                                    Image.NEAREST)
            canvas.paste(tile, (label_w + c * cell + 2, head_h + r * cell + 2))
    return canvas


def show_mixed(source="fashion-mnist:test", policy="randaugment", mix=None, erase=None,
               magnitudes=DEFAULT_MAGNITUDES, out="augpipe-mixed.png", size: int = 64, seed: int = 0,
               rows: int = 8) -> Path:
    """Write the mixed-and-erased grid PNG (see the module docstring); return its path."""
    from ..loader import Loader

    loader = Loader(source, batch_size=rows, policy=policy, train=True, seed=seed, num_workers=0, size=size,
                    mix=mix, erase=erase)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    render_mixed_grid(loader, list(magnitudes), rows).save(tmp, format="PNG")
    tmp.replace(path)
    return path
