"""Compiled once per install, and saying so.

numba keeps compiled kernels on disk (beside each module, or under
NUMBA_CACHE_DIR) and later processes load them in about a second. The first
process after an install compiles instead, which takes tens of seconds on two
cores; `notice` prints one line when that is about to happen, so the wait is
not silent. `augpipe warmup` (augpipe.tools.warmup) does it ahead of time.
"""
from __future__ import annotations

import sys

from ..kernels.interpreted import cached

_SAID: set[str] = set()


def notice(dispatcher, what: str, seconds: int) -> None:
    """One line on stderr, once per process, when `dispatcher` is not cached yet."""
    if what in _SAID:  # checked once per process: callers sit on per-batch paths
        return
    _SAID.add(what)
    if cached(dispatcher):
        return
    where = getattr(getattr(dispatcher, "_cache", None), "_cache_path", "numba's cache")
    print(f"augpipe: compiling {what} once (about {seconds} s on 2 cores; `augpipe warmup` does it ahead of "
          f"time); cached in {where}", file=sys.stderr, flush=True)
