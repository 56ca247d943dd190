"""The batch a Loader yields: unpacks as (images, labels), carries its plan.

A `Batch` is a dataclass, not a tuple, so that the collection utilities of
external trainers rebuild it whole instead of as a bare 2-tuple:
- Lightning's `move_data_to_device` and HF Accelerate's `send_to_device`
  call `batch.to(device)` (anything with a `.to` is moved as one object);
- Lightning's `apply_to_collection` recurses into dataclass fields and sets
  them on a copy (its dataclass branch comes before its sequence branch);
- torch's `pin_memory` calls `batch.pin_memory()`;
- `torch.utils._pytree` knows it as a node (registered below).
It unpacks and indexes like a DataLoader's `(images, labels)`; `len(batch)`
is 2 as for that pair (use `batch.size` for the number of samples).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

# Every per-sample tensor field, in pytree order; epoch and step are context.
TENSOR_FIELDS = ("images", "labels", "index", "magnitude", "ops", "mags", "weight", "difficulty", "gated",
                 "targets", "lam", "mix_index", "mix_box", "erased", "view")


@dataclass(eq=False)
class Batch:
    """`images, labels = batch`, as from a torch DataLoader.

    Attributes:
        images: NCHW tensor (uint8 0..255, or normalised float32).
        labels: int64 (N,).
        index: int64 (N,) dataset indices of the samples.
        magnitude: float32 (N,) magnitude each sample was augmented with.
        ops: int8 (N, K) op ids of the plan, slot by slot (-1: none; ids
            are positions in `augpipe.OPS`).
        mags: float32 (N, K) signed magnitudes of those ops (0..30 scale).
        epoch, step: where in the run this batch comes from.
        weight: float32 (N,) per-sample loss weights set by a teacher gate
            (None without a gate).
        difficulty: float32 (N,) the gate's score per sample (None without a gate).
        gated: bool (N,) samples the gate found too hard (None without a gate).
        targets: float32 (N, C) soft targets of a mixing loader (λ-weighted,
            label-smoothed one-hots, as timm's Mixup); None without mixing.
            `labels` stays each sample's own label.
        lam: float32 (N,) weight of the sample's own image (1: unmixed).
        mix_index: int64 (N,) dataset index of the partner mixed in (the
            sample's own index when unmixed).
        mix_box: int32 (N, 4) CutMix box (y1, y2, x1, x2); zeros otherwise.
        erased: int32 (N, R, 4) erased rectangles (top, left, h, w), h = 0
            for none; None without erasing.
        view: int64 (N,) which view of its sample a row is, for a loader
            with views=k (rows view-major: view v of the batch's samples is
            rows v*n..(v+1)*n-1, n = size // k); None for one view.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    magnitude: torch.Tensor
    ops: torch.Tensor
    mags: torch.Tensor
    epoch: int = 0
    step: int = 0
    weight: torch.Tensor | None = None
    difficulty: torch.Tensor | None = None
    gated: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    lam: torch.Tensor | None = None
    mix_index: torch.Tensor | None = None
    mix_box: torch.Tensor | None = None
    erased: torch.Tensor | None = None
    view: torch.Tensor | None = None

    # -------------------------------------------------- the (images, labels) pair
    def __iter__(self):
        yield self.images
        yield self.labels

    def __len__(self) -> int:
        return 2

    def __getitem__(self, item):
        return (self.images, self.labels)[item]

    @property
    def size(self) -> int:
        """Number of samples."""
        return int(self.labels.shape[0])

    # ------------------------------------------------------------ moving it
    def apply(self, fn) -> "Batch":
        """A new Batch with `fn` applied to every tensor field (None stays None)."""
        return dataclasses.replace(self, **{k: fn(v) for k in TENSOR_FIELDS if (v := getattr(self, k)) is not None})

    def to(self, *args, **kwargs) -> "Batch":
        """`Tensor.to` on every tensor; a dtype applies to floating-point tensors
        only (as `nn.Module.to`), so labels and indices stay integers."""
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None,
                        non_blocking=non_blocking)

        return self.apply(move)

    def pin_memory(self, device=None) -> "Batch":
        """Page-locked copies of every tensor (torch's pin_memory calls this).
        Without an accelerator there is nothing to pin for: the batch itself."""
        if not torch.cuda.is_available():
            return self
        return self.apply(lambda t: t if t.is_cuda else t.pin_memory())

    @staticmethod
    def concat(batches: list["Batch"]) -> "Batch":
        """The rows of several batches of one epoch and step, in order (every field they all carry)."""
        first = batches[0]
        fields = {k: torch.cat([getattr(b, k) for b in batches]) for k in _present(first)
                  if all(getattr(b, k) is not None for b in batches)}
        return Batch(**fields, epoch=first.epoch, step=first.step)

    def subset(self, keep) -> "Batch":
        """The samples selected by a bool mask or an index tensor, every field consistent."""
        keep = torch.as_tensor(keep, device=self.labels.device)
        return self.apply(lambda t: t[keep.to(t.device)])

    def __repr__(self) -> str:
        m = self.magnitude
        span = f"{float(m.min()):g}..{float(m.max()):g}" if m.numel() else "-"
        extra = "" if self.gated is None else f", gated={int(self.gated.sum())}"
        return (f"Batch(images={tuple(self.images.shape)} {self.images.dtype} on {self.images.device}, "
                f"epoch={self.epoch}, step={self.step}, magnitude=[{span}]{extra})")


def _present(batch: Batch) -> tuple[str, ...]:
    return tuple(k for k in TENSOR_FIELDS if getattr(batch, k) is not None)


# Leaves are the tensor fields that are set (a gate's fields are None without
# a gate, and torch's pytree would hand None to the mapped function).
def _flatten(batch: Batch):
    names = _present(batch)
    return [getattr(batch, k) for k in names], (names, batch.epoch, batch.step)


def _unflatten(children, context) -> Batch:
    names, epoch, step = context
    return Batch(**dict(zip(names, children)), epoch=epoch, step=step)


def _flatten_with_keys(batch: Batch):
    from torch.utils._pytree import GetAttrKey

    children, context = _flatten(batch)
    return [(GetAttrKey(k), v) for k, v in zip(context[0], children)], context


torch.utils._pytree.register_pytree_node(
    Batch, _flatten, _unflatten, serialized_type_name="augpipe.Batch", flatten_with_keys_fn=_flatten_with_keys)
