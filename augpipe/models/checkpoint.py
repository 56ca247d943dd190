"""Reading checkpoints safely, and the model of an `augpipe train` run.

Every file is read with torch's safe loader (`weights_only=True`: tensors,
numbers, strings, containers, and plain numpy arrays of numbers — data, never
code). A file that needs more, e.g. a whole pickled nn.Module, is refused with
an error naming it, unless the caller opts in with `trust=True` (CLI:
`--trust-checkpoint`): unpickling such a file can run any code it carries.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .structure import restore_structure
from .zoo import build_model, model_arch

MODEL_FILE = "model.pt"
# numpy arrays of numbers are data: let the safe loader rebuild them (older run checkpoints hold caps as numpy)
_NUMPY = [np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray, np.dtype] + [
    getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType") and n not in ("ObjectDType", "VoidDType")]


def load_checkpoint(path, *, trust: bool = False, what: str = "checkpoint"):
    """torch.load(path) on the CPU, safely unless `trust`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds objects the safe loader refuses (and
            `trust` is False); the message names the file and the opt-in.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(_NUMPY):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust:
            unsafe = _unsafe_globals(path)
            if unsafe:
                raise ValueError(f"{what} {path} holds pickled Python objects ({', '.join(unsafe)}), which "
                                 "torch's safe loader refuses: unpickling them could run code from the file. If you "
                                 "trust it, pass trust=True (on the command line: --trust-checkpoint)") from None
            raise ValueError(f"{what} {path} cannot be read by torch.load with weights_only=True "
                             f"({_reason(err)}): not a checkpoint, or an old-style pickle holding objects; if it is "
                             "a file you trust, pass trust=True (on the command line: --trust-checkpoint)") from None
    return torch.load(path, map_location="cpu", weights_only=False)


def _reason(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    after = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith("WeightsUnpickler error")]
    return (after[0] if after else lines[-1] if lines else type(err).__name__)[:200]


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)[:4]
    except Exception:  # not a zip checkpoint: the error message says what was refused
        return []


def check_arch(saved: str, model: nn.Module, path) -> None:
    mine = model_arch(model)
    if saved != mine:
        raise ValueError(f"checkpoint {path} holds a {saved} model, not this {mine}; "
                         "load it into the model it was saved from")


def load_model(model: nn.Module, state: dict, arch: str | None, path="checkpoint") -> nn.Module:
    """Check `arch` against the model, restore pruning structure (masks,
    shrunk layers), then load the weights strictly."""
    if arch is not None:
        check_arch(arch, model, path)
    target = getattr(model, "module", model)
    restore_structure(target, state)
    target.load_state_dict(state)
    return model


def load_run_model(source, model_name: str | None = None, width: float | None = None, trust: bool = False):
    """(model with the run's final weights, the run's config, path read) from a
    run directory or a model.pt. `model_name`/`width` override the recorded
    ones; a checkpoint of another model is an error naming both."""
    path = Path(source)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{source} is neither a finished run directory (with {MODEL_FILE}) nor a model file")
    state = load_checkpoint(file, trust=trust, what="model file")
    if not isinstance(state, dict) or "arch" not in state or "config" not in state:
        raise ValueError(f"{file} is not a model saved by augpipe train or prune")
    cfg = state["config"]
    model = build_model(model_name or cfg["model"], cfg["width"] if width is None else width,
                        _in_channels(state), _num_classes(state))
    load_model(model, state["model"], state["arch"], file)
    return model, cfg, str(file)


def _in_channels(state: dict) -> int:
    first = next(v for k, v in state["model"].items() if v.ndim == 4)
    return first.shape[1]


def _num_classes(state: dict) -> int:
    last = [v for k, v in state["model"].items() if v.ndim == 2][-1]
    return last.shape[0]
