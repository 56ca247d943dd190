"""The batch a Loader yields: unpacks as (images, labels), carries more."""
from __future__ import annotations

import torch


class Batch(tuple):
    """`images, labels = batch`, as from a torch DataLoader.

    Attributes:
        images: NCHW tensor (uint8 0..255, or normalised float32).
        labels: int64 (N,).
        index: int64 (N,) dataset indices of the samples.
        magnitude: float32 (N,) magnitude each sample was augmented with.
        epoch, step: where in the run this batch comes from.
    """

    def __new__(cls, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, magnitude: torch.Tensor,
                epoch: int = 0, step: int = 0):
        self = super().__new__(cls, (images, labels))
        self.index, self.magnitude, self.epoch, self.step = index, magnitude, epoch, step
        return self

    def __reduce__(self):
        return (Batch, (self[0], self[1], self.index, self.magnitude, self.epoch, self.step))

    @property
    def images(self) -> torch.Tensor:
        return self[0]

    @property
    def labels(self) -> torch.Tensor:
        return self[1]

    def __repr__(self) -> str:
        return (f"Batch(images={tuple(self[0].shape)} {self[0].dtype}, epoch={self.epoch}, step={self.step}, "
                f"magnitude=[{float(self.magnitude.min()) if len(self.magnitude) else 0:g}.."
                f"{float(self.magnitude.max()) if len(self.magnitude) else 0:g}])")
