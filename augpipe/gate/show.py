"""`augpipe show --caps TABLE.npz`: the samples a teacher finds hardest, next to their views.

One row per sample, lowest caps first (ties: lowest mean score); one column
per magnitude of the table (at most 11, spread; view 0: the plan of epoch 0,
the same crop, flip and ops in every column; a clean magnitude-0 column
first when the table has none), each labelled with the view-averaged score. Columns at or
below the sample's cap have a green frame, those above it a red one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .table import DifficultyTable, policy_from_spec

MAX_COLUMNS = 11


def show_caps(table: DifficultyTable, source=None, out="augpipe-caps.png", threshold: float = 0.5,
              rows: int = 8, cell: int = 80) -> Path:
    """Write the PNG; `source` defaults to the one recorded in the table.

    Raises:
        ValueError: no source given nor recorded, or a source other than the
            table's (both fingerprints named).
    """
    from ..loader import Loader

    meta = table.metadata
    source = source if source is not None else meta.get("source")
    if source is None:
        raise ValueError("this table records no source path; pass the source it was built on (--source)")
    loader = Loader(source, batch_size=rows, policy=policy_from_spec(meta["policy_spec"]), seed=meta["seed"],
                    size=tuple(meta["size"]), num_workers=0, train=True, shuffle=False)
    if loader.dataset.fingerprint() != meta["dataset"]:
        raise ValueError(f"the table was built on dataset {meta['dataset']}, but {source} is dataset "
                         f"{loader.dataset.fingerprint()}; pass the source the table was built on")
    caps = table.caps(threshold)
    mean = table.mean_scores
    picked = np.lexsort((mean.mean(1), caps))[:rows]  # lowest cap first, then lowest mean score
    columns = np.linspace(0, len(table.magnitudes) - 1, min(MAX_COLUMNS, len(table.magnitudes))).round().astype(int)
    columns = np.unique(columns)
    clean = [] if table.magnitudes[0] == 0 else [loader.render(picked, 0.0, epoch=0).images]
    tiles = clean + [loader.render(picked, float(table.magnitudes[j]), epoch=0).images for j in columns]
    label_w, head_h = 170, 22
    canvas = Image.new("RGB", (label_w + len(tiles) * cell, head_h + len(picked) * cell), "white")
    draw = ImageDraw.Draw(canvas)
    titles = ["M=0 (clean)"] * len(clean) + [f"M={table.magnitudes[j]:g}" for j in columns]
    for c, title in enumerate(titles):
        draw.text((label_w + c * cell + 6, 4), title, fill="black")
    classes = loader.dataset.classes
    for r, i in enumerate(picked):
        label = classes[int(loader.dataset.labels[i])]
        draw.text((6, head_h + r * cell + cell // 2 - 14), f"#{i} {label}"[:26], fill="black")
        draw.text((6, head_h + r * cell + cell // 2 + 2), f"cap {caps[i]:g}", fill="black")
        for c, images in enumerate(tiles):
            x, y = label_w + c * cell, head_h + r * cell
            canvas.paste(_tile(images[r], cell - 6), (x + 3, y + 3))
            if c >= len(clean):
                j = columns[c - len(clean)]
                ok = table.magnitudes[j] <= caps[i]
                draw.rectangle((x + 1, y + 1, x + cell - 2, y + cell - 2), outline="green" if ok else "red", width=2)
                draw.rectangle((x + 4, y + cell - 17, x + 32, y + cell - 5), fill="black")
                draw.text((x + 5, y + cell - 17), f"{mean[i, j]:.2f}", fill="yellow")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    canvas.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def _tile(image: torch.Tensor, side: int) -> Image.Image:
    array = image.cpu()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).contiguous().numpy()).resize((side, side), Image.NEAREST)
