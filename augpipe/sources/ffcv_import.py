"""Import FFCV without the seconds its import spends compiling a dict.

FFCV 1.0.2's ffcv/fields/rgb_image.py fills IMAGE_MODES, a module-level
numba typed Dict that only Python code reads (the decoders' generate_code
and the writer). Filling it compiles numba's typed-dict methods, which numba
never caches: 6-12 s of every process that imports any part of FFCV, on 2
cores (11.7 s of a 13.5 s import, measured). Imported through `load()`, the
table is a plain dict, which behaves the same there; numba's Dict is put back
at once, so nothing else sees the change.
"""
from __future__ import annotations

import sys


def load() -> None:
    """Import the `ffcv` package (once per process; raises ImportError as `import ffcv` does)."""
    if "ffcv.fields.rgb_image" in sys.modules:
        return
    import numba.typed

    typed_dict, numba.typed.Dict = numba.typed.Dict, dict
    try:
        import ffcv  # noqa: F401  (its __init__ imports the loader, the fields and rgb_image)
    finally:
        numba.typed.Dict = typed_dict
