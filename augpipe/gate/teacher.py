"""The teacher as the gate uses it, and the checkpoint formats it is read from.

`Teacher` wraps an nn.Module (or any callable mapping a float batch to
logits): it runs it under no_grad in eval mode (BatchNorm statistics
untouched; a module left in training mode is put back afterwards) on its own
device, converts a loader's batches (uint8, or float normalised with the
loader's mean/std) to the normalisation the teacher expects, and turns what
the teacher returns into (N, classes) float32 logits.

`load_teacher(path)` reads the checkpoints users have: an `augpipe train` /
`augpipe prune` run directory or its model.pt, a whole pickled nn.Module
(`torch.save(model, path)`), a TorchScript file (`torch.jit.save`), or a
state_dict (also under a "state_dict" or "model" key) with a `constructor`.
Files are read with torch's safe loader (weights_only=True); a pickled
nn.Module needs `trust=True` (`--trust-checkpoint`), since unpickling it can
run code from the file.
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..models import load_checkpoint, load_run_model

OUTPUT_FORMATS = ("a logits tensor (N, classes)", "a tuple or list whose first element is one",
                  "a dict with the logits under `output_key` (default 'logits')")


class Teacher:
    """A frozen teacher: eval mode, no gradients, its own device, input conversion.

    Args:
        model: an nn.Module (TorchScript included) or a callable, float batch
            (N, C, H, W) -> logits.
        mean, std: per-channel normalisation the teacher was trained with
            (default: the bound loader's `mean`/`std`, which is what models
            trained by `augpipe train` expect).
        device: where the teacher runs (default: its parameters' device, else
            the loader's). A module is moved there.
        amp: autocast the forward (bfloat16 on CPU, float16 on CUDA).
        output_key: the logits' key when the teacher returns a dict.
    """

    def __init__(self, model, mean=None, std=None, device=None, amp: bool = False, output_key: str = "logits"):
        if isinstance(model, Teacher):
            raise TypeError("model is already a Teacher; pass its .model")
        if not callable(model):
            raise TypeError(f"teacher must be an nn.Module or a callable returning logits, got {type(model).__name__}")
        self.model = model
        self.device = torch.device(device) if device is not None else _param_device(model)
        if device is not None and isinstance(model, nn.Module):
            model.to(self.device)
        self.mean, self.std = mean, std
        self.amp = bool(amp)
        self.output_key = output_key
        self.num_classes: int | None = None
        self._scale = self._shift = None  # teacher input = images * scale + shift (per channel)

    # ---------------------------------------------------------- binding
    def bind(self, loader) -> "Teacher":
        """Adopt the loader's image format, and check the teacher on a probe batch.

        Raises:
            ValueError: the teacher's class count differs from the loader's
                dataset's (both numbers named), its output is not 2-D logits, or
                it fails on a batch of the loader's image shape.
        """
        from ..loader import per_channel

        if self.device is None:
            self.device = torch.device(loader.device)
        channels = loader.dataset.channels
        mean_t = torch.tensor(per_channel(self.mean, loader.mean, channels, "teacher mean"), dtype=torch.float32)
        std_t = torch.tensor(per_channel(self.std, loader.std, channels, "teacher std"), dtype=torch.float32)
        mean_l = torch.tensor(loader.mean, dtype=torch.float32)
        std_l = torch.tensor(loader.std, dtype=torch.float32)
        if loader.output == "uint8":  # x = (u / 255 - mean) / std
            scale, shift = 1.0 / (255.0 * std_t), -mean_t / std_t
        else:  # the loader's x_l = (u / 255 - mean_l) / std_l, re-normalised
            scale, shift = std_l / std_t, (mean_l - mean_t) / std_t
        identity = loader.output == "float" and torch.equal(scale, torch.ones_like(scale)) and not shift.any()
        self._scale = None if identity else scale.view(1, -1, 1, 1).to(self.device)
        self._shift = None if identity else shift.view(1, -1, 1, 1).to(self.device)
        h, w = loader.crop.size
        dtype = torch.uint8 if loader.output == "uint8" else torch.float32
        probe = torch.zeros((2, channels, h, w), dtype=dtype, device=loader.device)
        try:
            logits = self.logits(probe)
        except (TypeError, ValueError):
            raise  # about the teacher's output: already says what is wrong
        except Exception as err:
            raise ValueError(f"the teacher fails on a batch of this loader's images, shape {tuple(probe.shape)} "
                             f"({channels} channel(s), {h}x{w}): {err}") from err
        self.num_classes = int(logits.shape[1])
        classes = len(loader.dataset.classes)
        if self.num_classes != classes:
            raise ValueError(f"the teacher outputs {self.num_classes} classes but the loader's dataset has {classes} "
                             f"classes ({', '.join(map(str, loader.dataset.classes[:4]))}...); use a teacher trained "
                             "on this dataset's classes")
        return self

    # ---------------------------------------------------------- forward
    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The loader's images as the teacher's float input, on its device."""
        if self.device is None:
            raise RuntimeError("the teacher is not bound to a loader yet (Teacher.bind(loader))")
        x = images.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8 or self._scale is not None:
            x = x.float()
            if self._scale is not None:
                x = x * self._scale + self._shift
        return x

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float32 (N, classes) logits of the teacher on a batch of the bound loader's images."""
        x = self.inputs(images)
        module = self.model if isinstance(self.model, nn.Module) else None
        was_training = module is not None and module.training
        if was_training:
            module.eval()
        try:
            amp_dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=self.amp):
                out = self.model(x)
        finally:
            if was_training:
                module.train()
        logits = as_logits(out, self.output_key)
        if logits.shape[0] != images.shape[0]:
            raise ValueError(f"the teacher returned {logits.shape[0]} rows of logits for {images.shape[0]} images")
        return logits

    def fingerprint(self) -> str:
        """A key of the teacher's weights (parameters and buffers) and class."""
        return teacher_fingerprint(self.model)

    def __repr__(self) -> str:
        return f"Teacher({type(self.model).__name__}, device={self.device}, classes={self.num_classes})"


def as_logits(out, key: str = "logits") -> torch.Tensor:
    """What a teacher returned, as float32 (N, classes) logits.

    Raises:
        TypeError: not one of OUTPUT_FORMATS (a dict without `key` lists its keys).
        ValueError: logits that are not 2-D.
    """
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    elif isinstance(out, Mapping):
        if key not in out:
            raise TypeError(f"the teacher returned a dict with keys {sorted(map(str, out))}, without {key!r}; "
                            "pass output_key= naming the logits")
        out = out[key]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the teacher returned a {type(out).__name__}; expected {'; '.join(OUTPUT_FORMATS)}")
    if out.ndim != 2:
        raise ValueError(f"teacher logits must be 2-D (N, classes), got shape {tuple(out.shape)}")
    return out.float()


def teacher_fingerprint(model) -> str:
    """sha1 (16 hex) of a module's class and state_dict, or of a callable's name."""
    h = hashlib.sha1()
    if isinstance(model, nn.Module):
        h.update(f"{type(model).__module__}.{type(model).__qualname__}".encode())
        for name, value in sorted(model.state_dict().items()):
            t = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{t.dtype}:{tuple(value.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
    else:
        h.update(f"callable:{getattr(model, '__module__', '')}.{getattr(model, '__qualname__', repr(model))}".encode())
    return h.hexdigest()[:16]


def _param_device(model) -> torch.device | None:
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return None


# ----------------------------------------------------------------- loading
EXPECTED = ("an `augpipe train` run directory or its model.pt, a pickled nn.Module (torch.save(model)), "
            "a TorchScript file (torch.jit.save), or a state_dict with a constructor")


def load_teacher(path, constructor: Callable[[], nn.Module] | None = None, trust: bool = False) -> nn.Module:
    """Read a teacher checkpoint (see the module docstring), on the CPU, in eval mode.

    Args:
        path: the file, or an `augpipe train` run directory.
        constructor: for a state_dict: a callable returning the module to load
            it into (e.g. `lambda: build_model("cnn", 1.5)`).
        trust: allow a file that holds pickled Python objects (a whole
            nn.Module): unpickling runs code from the file. Default False.

    Raises:
        FileNotFoundError: no such file (or a directory without model.pt).
        ValueError: the file is none of the formats, or the state_dict does not
            fit the constructor's module; the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise FileNotFoundError(f"teacher {path} is a directory without model.pt; expected {EXPECTED}")
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint {path} does not exist; expected {EXPECTED}")
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu").eval()
    try:
        obj = load_checkpoint(path, trust=trust, what="teacher checkpoint")
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"teacher checkpoint {path} cannot be read by torch.load ({type(err).__name__}: {err}); "
                         f"expected {EXPECTED}") from err
    if isinstance(obj, nn.Module):
        return obj.eval()
    if isinstance(obj, Mapping) and {"arch", "model", "config"} <= set(obj):
        return load_run_model(path, trust=trust)[0].eval()
    state = _state_dict(obj)
    if state is None:
        raise ValueError(f"teacher checkpoint {path} holds a {type(obj).__name__}; expected {EXPECTED}")
    if constructor is None:
        raise ValueError(f"teacher checkpoint {path} holds a state_dict ({len(state)} tensors, e.g. "
                         f"{list(state)[:3]}); pass constructor= (a callable returning the module), or "
                         "--teacher-arch NAME:WIDTH on the command line")
    module = constructor()
    if not isinstance(module, nn.Module):
        raise TypeError(f"constructor must return an nn.Module, got {type(module).__name__}")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"teacher checkpoint {path} does not fit the constructor's "
                         f"{type(module).__name__}: {err}") from err
    return module.eval()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _state_dict(obj) -> dict | None:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    return None
