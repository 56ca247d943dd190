"""A numba kernel's pure-Python twin, for the minute before its compiled code exists.

`interpreted(kernel)` is the kernel's own Python function with every numba
kernel it calls by global name swapped for that kernel's twin, so calling it
compiles nothing. The kernels are written for numba's semantics on numpy
scalars (uint64 wrap-around, float64 libm calls), which the interpreter shares:
the twin returns the same values, about 100x slower (tests/test_firstuse.py
checks the planner's twin against the compiled planner).
"""
from __future__ import annotations

import os
import types

from numba.core.registry import CPUDispatcher

_TWINS: dict = {}  # kernel -> twin
_CACHED: set = set()  # kernels seen in numba's cache (they stay there for the process's life)


def cached(kernel) -> bool:
    """Whether numba's on-disk cache holds an index for `kernel` (any signature)."""
    cache = getattr(kernel, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    return index is not None and os.path.exists(index)


def cached_or_twin(kernel):
    """`kernel` when numba's cache holds it, else its twin: for callers that must not wait for a compile
    (the torch executor, which serves a first use: engine/firstuse.py)."""
    if kernel in _CACHED or cached(kernel):
        _CACHED.add(kernel)  # a hot path (per op of every torch-executor batch): stat until it is there, then never
        return kernel
    return interpreted(kernel)


def _names(code: types.CodeType):
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions and comprehensions
            yield from _names(const)


def interpreted(kernel):
    """The pure-Python twin of `kernel` (a numba dispatcher); cached per kernel."""
    if not isinstance(kernel, CPUDispatcher):
        raise TypeError(f"interpreted() takes a numba @njit kernel, got {type(kernel).__name__}")
    twin = _TWINS.get(kernel)
    if twin is not None:
        return twin
    func = kernel.py_func
    scope = dict(func.__globals__)  # the twin's own globals: callees swapped below, the module untouched
    twin = types.FunctionType(func.__code__, scope, func.__name__, func.__defaults__, func.__closure__)
    twin.__doc__ = func.__doc__
    _TWINS[kernel] = twin  # before recursing: kernels that call each other terminate
    for name in set(_names(func.__code__)):
        callee = scope.get(name)
        if isinstance(callee, CPUDispatcher):
            scope[name] = interpreted(callee)
    return twin
