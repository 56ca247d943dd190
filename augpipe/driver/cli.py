"""`augpipe train | prune | sweep`: the commands, over runs.py and sweep.py
(their options are in options.py)."""
from __future__ import annotations

import sys

from . import options
from .options import GATE_OPTIONS, _command, _config


def add_parsers(sub) -> None:
    """Register train, prune and sweep on the `augpipe` command's subparsers."""
    options.add_parsers(sub, {"train": cmd_train, "prune": cmd_prune, "sweep": cmd_sweep})


def _run(fn, cfg: dict) -> None:
    from . import distributed

    try:
        fn(cfg, _command(cfg["kind"], cfg))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"augpipe {cfg['kind']}: error: {err}")
    finally:
        distributed.shutdown()


def cmd_train(a) -> None:
    from .runs import run_train

    cfg = _config(a, "train")
    if cfg.get("gate") == "off":
        cfg["gate"] = None
    _run(run_train, {k: v for k, v in cfg.items() if not (k in GATE_OPTIONS and v is None)})


def cmd_prune(a) -> None:
    from .runs import run_prune

    _run(run_prune, _config(a, "prune"))


def cmd_sweep(a) -> None:
    from .sweep import run_sweep

    _run(run_sweep, _config(a, "sweep"))
