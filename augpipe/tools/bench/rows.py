"""Which rows a bench run has: torchvision's and augpipe-torch's always; a
backend's own rows are the `ROWS` of the module named after it in this
package (`dali`, `ffcv`, and `litdata` for the litdata source), so adding a backend's rows is one new file."""
from __future__ import annotations

import importlib

from .loaders import augpipe_loader, tv_32, tv_224

ROWS = {
    "32px": {
        "torchvision crop+flip": lambda a: tv_32(a, randaugment=False),
        "torchvision crop+flip+RandAugment": tv_32,
        "augpipe-torch crop+flip+RandAugment": augpipe_loader,
        "augpipe-torch, per-sample caps": lambda a: augpipe_loader(a, caps=True),
    },
    "224px": {
        "torchvision RRC+flip": lambda a: tv_224(a, randaugment=False),
        "torchvision RRC+flip+RandAugment": tv_224,
        "augpipe-torch RRC+flip (no RandAugment)": lambda a: augpipe_loader(a, "224px", randaugment=False),
        "augpipe-torch RRC+flip+RandAugment": lambda a: augpipe_loader(a, "224px"),
        "augpipe-torch, per-sample caps": lambda a: augpipe_loader(a, "224px", caps=True),
        "augpipe-torch, torchvision decoder": lambda a: augpipe_loader(a, "224px", options={"decoder": "torchvision"}),
    },
}


def rows_for(backend: str, data: str, mix: bool = False) -> dict:
    """The rows of a run: torchvision and augpipe-torch always; a backend's
    own rows come from augpipe.tools.bench.<backend>.ROWS[data]. With `mix`:
    the mixing rows of augpipe.tools.bench.mixing instead."""
    if mix:
        from .mixing import rows

        return rows(backend)[data]
    rows = dict(ROWS[data])
    for name in (("ffcv", "dali", "litdata") if backend == "all" else (backend,)):
        if name != "torch":
            module = importlib.import_module(f"{__package__}.{name}")
            rows.update(module.ROWS[data])
    return rows



