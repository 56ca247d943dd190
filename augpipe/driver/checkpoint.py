"""Checkpoints and run directories.

Writes are atomic (a temporary file in the same folder, then os.replace), so
a run killed at any instant leaves either the previous checkpoint or the new
one, never a torn file. A checkpoint records the model's `arch`; loading it
into another model is an error naming both.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from .._files import atomic_write
from ..models import load_checkpoint, load_model, model_arch  # noqa: F401  (load_model: re-exported)
from . import distributed

RUN_FILE = "run.json"
# Config keys that do not change a run's result: a rerun may differ in them.
NOT_IDENTITY = frozenset({"progress", "workers", "command", "jobs", "eval_every", "trust_checkpoint"})


def atomic_save(obj, path) -> None:
    """torch.save, atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_json(obj, path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n"))


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def load(path, trust: bool = False) -> dict:
    """Load a checkpoint written by the driver, safely (see augpipe.models.checkpoint)."""
    return load_checkpoint(path, trust=trust)


def save_model(model: nn.Module, path, **extra) -> None:
    """{"arch", "model": state_dict, **extra}, atomically, on rank 0 only."""
    if distributed.is_main():
        target = getattr(model, "module", model)
        atomic_save({"arch": model_arch(target), "model": target.state_dict(), **extra}, path)
    distributed.barrier()


def numbered(folder, prefix: str) -> list[Path]:
    """Files `prefix-NNNN.pt` in folder, by number."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)\.pt$")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_old(folder, prefix: str, keep: int) -> None:
    if distributed.is_main() and keep > 0:
        for p in numbered(folder, prefix)[:-keep]:
            p.unlink(missing_ok=True)


def prepare_run_dir(out, config: dict, command: str) -> bool:
    """Claim `out` for a run. Returns True when `out` holds this same run
    (resume), False for a new one.

    Raises:
        ValueError: `out` holds another run (the differing settings are named),
            or files that are not an augpipe run.
    """
    out = Path(out)
    run_file = out / RUN_FILE
    # An unset (None) option equals a missing one: a run started before an option existed resumes.
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY and v is not None}
    if run_file.is_file():
        saved = json.loads(run_file.read_text())
        old = {k: v for k, v in saved.get("config", {}).items() if k not in NOT_IDENTITY and v is not None}
        if saved.get("kind") != config.get("kind") or old != identity:
            diff = "; ".join(f"{k}: {old.get(k)!r} here, {identity.get(k)!r} now"
                             for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k))
            diff = diff or f"kind: {saved.get('kind')!r} here, {config.get('kind')!r} now"
            raise ValueError(f"{out}/ holds another run: {diff}. Use another --out, or delete {out}/ to start over")
        return True
    if out.exists() and (not out.is_dir() or any(p for p in out.iterdir() if not p.name.startswith("."))):
        raise ValueError(f"{out}/ exists and holds files that are not an augpipe run; choose an empty or new --out")
    distributed.barrier()  # every rank has looked before rank 0 writes
    if distributed.is_main():
        write_json({"kind": config.get("kind"), "command": command, "config": config}, run_file)
    distributed.barrier()
    return False
