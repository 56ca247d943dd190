"""The engines a Loader can run on, by name.

A backend is a module with `make_backend(ctx: BackendContext) -> Backend`
(the protocol in `augpipe.engine.contract`). The registry maps each name to
its module and to the install line shown when the module's library is
missing; modules are imported only when a Loader asks for them, so
`import augpipe` loads neither FFCV nor DALI.

A backend of your own, in your package: `augpipe.backends.register("mine",
"mypackage.mybackend")`, then `Loader(..., backend="mine")`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    module: str
    install: str | None = None  # what to run when the module's library is missing


REGISTRY: dict[str, Entry] = {
    "torch": Entry("augpipe.backends.torch"),
    "ffcv": Entry("augpipe.backends.ffcv",
                  "pip install 'augpipe[ffcv]' (needs apt-get install pkg-config libopencv-dev libturbojpeg0-dev)"),
    "dali": Entry("augpipe.backends.dali", "pip install 'augpipe[dali]'"),
}


def register(name: str, module: str, install: str | None = None) -> None:
    """Make `Loader(..., backend=name)` build its engine with `module.make_backend`."""
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"backend name must be a non-empty string other than 'auto', got {name!r}")
    REGISTRY[name] = Entry(module, install)


def names() -> tuple[str, ...]:
    return ("auto", *REGISTRY)


def make_backend(name: str, ctx):
    """The backend `name` for `ctx`; a missing library is an ImportError with the install line."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose one of {names()}")
    entry = REGISTRY[name]
    try:
        module = importlib.import_module(entry.module)
    except ImportError as err:
        hint = f"; {entry.install}" if entry.install else ""
        raise ImportError(f"backend {name!r} needs a library that is not installed ({err}){hint}") from err
    return module.make_backend(ctx)
