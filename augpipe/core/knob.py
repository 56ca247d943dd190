"""The live magnitude knob and per-sample caps, in shared memory.

Both live in torch shared-memory tensors, so forked or spawned DataLoader
workers, threads and compiled pipelines read the very same bytes: an
assignment in the training loop is seen by every worker at its next batch,
with no pickling, no worker restart and no rebuild.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .ops import MAX_MAGNITUDE, check_magnitude

Schedule = Callable[[int, int], float]

CAP_STORES = ("auto", "float", "byte")
BYTE_STEPS = 8  # a byte cap c means magnitude c / 8: every multiple of 1/8 in [0, 30] (240 = 30) exactly
AUTO_BYTE_ABOVE = 1 << 24  # "auto": one byte per sample from 16.7 M samples on (64 MB instead of 4 bytes each)


class Knob:
    """Global magnitude + per-sample caps over a dataset of `size` samples.

    The planner uses min(knob, cap[i]) for sample i. Caps default to 30 (the
    top of the scale, i.e. no cap).

    Caps are kept as float32, 4 bytes per sample, or (`cap_store="byte"`) one
    byte per sample in steps of 1/8 magnitude, a cap rounded down to its step
    (a cap is an upper bound: it never grows): 1 GB per process at 10^9
    samples instead of 4. "auto" takes bytes above 2^24 samples.

    Args:
        magnitude: initial global magnitude in [0, 30].
        size: number of samples in the dataset (length of the cap array).
        cap_store: "auto", "float" or "byte".
    """

    def __init__(self, magnitude: float, size: int, cap_store: str = "auto"):
        if cap_store not in CAP_STORES:
            raise ValueError(f"cap_store must be one of {CAP_STORES}, got {cap_store!r}")
        self.cap_store = ("byte" if size > AUTO_BYTE_ABOVE else "float") if cap_store == "auto" else cap_store
        self._value = torch.tensor([check_magnitude(magnitude)], dtype=torch.float64).share_memory_()
        if self.cap_store == "byte":
            self._caps = torch.full((size,), int(MAX_MAGNITUDE * BYTE_STEPS), dtype=torch.uint8).share_memory_()
        else:
            self._caps = torch.full((size,), MAX_MAGNITUDE, dtype=torch.float32).share_memory_()
        self.schedule: Schedule | None = None

    # numpy views are rebuilt on access: a view made before pickling would
    # not survive the trip to a spawned worker, the tensor does.
    @property
    def value(self) -> float:
        return float(self._value[0])

    @value.setter
    def value(self, magnitude: float) -> None:
        self._value[0] = check_magnitude(magnitude)

    @property
    def caps(self):
        """The shared caps, one per dataset sample: a float32 array (in-place
        writes are seen by workers; prefer `set_caps`, which validates), or
        for the byte store a `ByteCaps` view that reads and writes magnitudes."""
        return self._caps.numpy() if self.cap_store == "float" else ByteCaps(self._caps.numpy())

    def caps_of(self, indices) -> np.ndarray:
        """float32 caps of `indices` (what the planner reads for a batch)."""
        raw = self._caps.numpy()[indices]
        return raw if self.cap_store == "float" else (raw.astype(np.float32) / BYTE_STEPS)

    @property
    def raw_caps(self) -> np.ndarray:
        """The stored array itself (float32, or uint8 in 1/8 steps): what a state dict holds."""
        return self._caps.numpy()

    def load_raw_caps(self, raw) -> None:
        """Restore `raw_caps` (from either store: converted to this one's)."""
        raw = np.asarray(raw)
        if raw.dtype == np.uint8:
            raw = raw.astype(np.float32) / BYTE_STEPS
        self.set_caps(raw)

    def set_caps(self, caps, indices=None) -> None:
        """Write per-sample caps in place (all samples, or those at `indices`).

        Raises:
            ValueError: a cap is NaN or outside [0, 30], or the lengths differ.
        """
        values = _checked(caps)
        if self.cap_store == "byte":
            values = _to_bytes(values)
        view = self._caps.numpy()
        if indices is None:
            if values.ndim > 0 and values.shape != view.shape:
                raise ValueError(f"caps must have one value per sample ({view.shape[0]}), got shape {values.shape}")
            view[:] = values
        else:
            idx = np.asarray(indices, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= view.shape[0]):
                raise ValueError(f"cap indices must be in [0, {view.shape[0]}), got range [{idx.min()}, {idx.max()}]")
            view[idx] = values

    def clear_caps(self) -> None:
        self._caps.fill_(MAX_MAGNITUDE if self.cap_store == "float" else int(MAX_MAGNITUDE * BYTE_STEPS))

    def resolve(self, epoch: int, step: int) -> float:
        """The magnitude of batch (epoch, step), taken when its request is
        dispatched: the schedule's value if one is set (validated, and mirrored
        into the shared value), else the live value."""
        if self.schedule is None:
            return self.value
        value = check_magnitude(self.schedule(epoch, step), name=f"schedule({epoch}, {step})")
        self._value[0] = value
        return value


class ByteCaps:
    """The byte store's caps read and written as magnitudes (float32), like the float store's array:
    `caps[idx]`, `caps[idx] = values` (validated, rounded down to 1/8), `len`, `copy()`, `np.asarray`."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def shape(self) -> tuple[int]:
        return self.raw.shape

    dtype = np.dtype(np.float32)

    def __getitem__(self, idx) -> np.ndarray:
        return self.raw[idx].astype(np.float32) / BYTE_STEPS

    def __setitem__(self, idx, values) -> None:
        self.raw[idx] = _to_bytes(_checked(values))

    def copy(self) -> np.ndarray:
        return self[:]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _checked(caps) -> np.ndarray:
    values = np.asarray(caps, dtype=np.float32)
    if np.isnan(values).any() or (values < 0).any() or (values > MAX_MAGNITUDE).any():
        bad = values[np.isnan(values) | (values < 0) | (values > MAX_MAGNITUDE)].reshape(-1)[:5]
        raise ValueError(f"caps must be in [0, {MAX_MAGNITUDE:g}], got e.g. {bad.tolist()}")
    return values


def _to_bytes(values: np.ndarray) -> np.ndarray:
    return np.floor(values * BYTE_STEPS + 1e-3).astype(np.uint8)  # down to its 1/8 step (float noise kept)
