"""Fork safety for objects that own native threads (DALI pipelines).

A forked child inherits the parent's objects but none of its threads. If such
an object becomes garbage in the child (say a DALI loader that was already
unreachable, but not yet collected, when a DataLoader forked its workers),
its finalizer runs there and waits for threads that do not exist: DALI's
`Pipeline.__del__` -> `Shutdown()` hung a forked child's `gc.collect()`
here, and aborted DataLoader workers elsewhere ("terminate called after
throwing std::system_error"). Every pipeline augpipe builds is registered
with `protect`; in a forked child all of them are pinned (referenced until
the child ends, which for DataLoader workers is `os._exit`), so garbage
collection there never finalizes them. The parent is unaffected.
"""
from __future__ import annotations

import os
import weakref

_LIVE: "weakref.WeakSet" = weakref.WeakSet()
_PINNED: list = []


def protect(obj):
    """Never finalize `obj` in a forked child; returns it."""
    _LIVE.add(obj)
    return obj


def _pin_in_child() -> None:
    _PINNED.extend(_LIVE)


os.register_at_fork(after_in_child=_pin_in_child)
