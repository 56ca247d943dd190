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


class Knob:
    """Global magnitude + per-sample caps over a dataset of `size` samples.

    The planner uses min(knob, cap[i]) for sample i. Caps default to 30 (the
    top of the scale, i.e. no cap).

    Args:
        magnitude: initial global magnitude in [0, 30].
        size: number of samples in the dataset (length of the cap array).
    """

    def __init__(self, magnitude: float, size: int):
        self._value = torch.tensor([check_magnitude(magnitude)], dtype=torch.float64).share_memory_()
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
    def caps(self) -> np.ndarray:
        """The shared cap array (float32, one per dataset sample). In-place
        writes are seen by workers; prefer `set_caps`, which validates."""
        return self._caps.numpy()

    def set_caps(self, caps, indices=None) -> None:
        """Write per-sample caps in place (all samples, or those at `indices`).

        Raises:
            ValueError: a cap is NaN or outside [0, 30], or the lengths differ.
        """
        values = np.asarray(caps, dtype=np.float32)
        if np.isnan(values).any() or (values < 0).any() or (values > MAX_MAGNITUDE).any():
            bad = values[np.isnan(values) | (values < 0) | (values > MAX_MAGNITUDE)][:5]
            raise ValueError(f"caps must be in [0, {MAX_MAGNITUDE:g}], got e.g. {bad.tolist()}")
        view = self.caps
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
        self.caps[:] = MAX_MAGNITUDE

    def resolve(self, epoch: int, step: int) -> float:
        """The magnitude of batch (epoch, step), taken when its request is
        dispatched: the schedule's value if one is set (validated, and mirrored
        into the shared value), else the live value."""
        if self.schedule is None:
            return self.value
        value = check_magnitude(self.schedule(epoch, step), name=f"schedule({epoch}, {step})")
        self._value[0] = value
        return value
