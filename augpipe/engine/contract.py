"""The seam between the Loader and its engines.

A backend is a module registered in `augpipe.backends` (by name) with a
`make_backend(ctx)` function returning a `Backend`: an object that has

    iterate(epoch, start) -> Iterator[Batch]   # the epoch's batches from step `start`
    close() -> None                            # release threads, processes, pipelines
    lag: int                                   # batches before a knob change shows up

and optionally `render(indices, knobs, epoch) -> Batch` (the default renders
through the source and the torch/numba executors; see `render`).

It receives a `BackendContext` built by the Loader, never the Loader itself:
what to read (`source`, with its declared capabilities), what to plan
(`policy`, `crop`, `seed`, the live `knob` and caps), which samples in which
order (`requests`), and what to hand out (`finish`). Everything the backends
share is written here once: policy lowering, the per-batch magnitude, plans,
normalisation and Batch assembly.

The magnitude of a batch is resolved once, when its request is dispatched to
the engine (`requests`): the schedule's value if one is set
(`loader.set_magnitude(f)`, evaluated there per batch, so a schedule that
reads live state such as a model's sparsity behaves the same on every
backend), else the live knob. Per-sample caps are read when the batch is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from ..core.batch import Batch
from ..core.knob import Knob
from ..core.plan import Plan, make_plan
from ..core.policy import Crop, PolicyArrays
from ..sources import Source
from .reference import BuildSpec, build_part


@runtime_checkable
class Backend(Protocol):
    """What `make_backend(ctx)` returns (see the module docstring); a backend
    may also define `render(indices, knobs, epoch) -> Batch`."""

    lag: int

    def iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        """The epoch's batches, from step `start` on."""

    def close(self) -> None:
        """Release threads, processes and pipelines."""


class Request(NamedTuple):
    """What a backend is asked to build: a batch of `indices` (dataset
    indices, in order) planned at magnitude `knob`. A plain tuple, so it
    pickles cheaply to worker processes."""

    epoch: int
    step: int
    indices: np.ndarray
    knob: float


@dataclass
class BackendContext:
    """Everything a backend needs, built by the Loader.

    Attributes:
        source: the samples (see `augpipe.sources.Source` for its capabilities).
        policy: the lowered policy (Identity's when not training).
        crop: the base crop/flip transform.
        knob: the live magnitude and per-sample caps (shared memory).
        seed: the run's seed.
        batch_size: samples per batch (the last one may be shorter).
        num_batches: batches per epoch on this rank.
        order: epoch -> this rank's dataset indices, in order.
        channels: channels of the images handed out (the source's).
        device: where batches are delivered.
        output: "uint8" or "float" (normalised with mean/std).
        mean, std: per-channel normalisation for output="float".
        num_workers, prefetch_factor: the Loader's parallelism and queue depth.
        on_error: "raise" or "skip" for bad images.
        errors: the Loader's list of skipped (name, reason) pairs, shared.
        options: backend_options, for the backend to validate.
        rank, world_size, drop_last: this process's shard (`order` already
            applies them; for engines with their own sharding).
        defer_normalize: `finish` hands out uint8 images even for
            output="float"; the Loader normalises them in its batch-level
            stage (mixing, erasing), fused with it (engine/mixing.py).
        stage: that batch-level stage, Batch -> Batch (None: nothing to do),
            a pure function of the batch. The Loader applies it to what a
            backend yields, unless the backend has `applies_stage = True`
            and applies it itself, e.g. in its worker threads.
    """

    source: Source
    policy: PolicyArrays
    crop: Crop
    knob: Knob
    seed: int
    batch_size: int
    num_batches: int
    order: Callable[[int], np.ndarray]
    channels: int
    device: torch.device
    output: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_workers: int
    prefetch_factor: int
    on_error: str
    errors: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    drop_last: bool = True
    defer_normalize: bool = False
    stage: Callable | None = None

    def __post_init__(self):
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.norm_scale = (1.0 / (255.0 * std)).to(self.device)
        self.norm_shift = (-mean / std).to(self.device)
        self.spec = BuildSpec(self.source, self.policy, self.crop, self.knob, self.seed, self.on_error)

    # ---------------------------------------------------------- requests
    def requests(self, epoch: int, start: int) -> Iterator[Request]:
        """The epoch's requests from step `start` on. Each magnitude is
        resolved as the request is taken from this iterator (dispatch)."""
        order = self.order(epoch)
        for step in range(start, self.num_batches):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield Request(epoch, step, idx, self.knob.resolve(epoch, step))

    def plan(self, epoch: int, indices, heights, widths, knob, caps: bool = True) -> Plan:
        """Plan samples at `knob` (scalar or per sample), bounded by the live caps."""
        return self.spec.plan(epoch, indices, heights, widths, knob, caps)

    def warm_up(self, background: bool = False, parallel: bool = False, folder_channels: int = 0,
                extra: str = "") -> None:
        """Compile the planner and the CPU executor now (before workers fork or
        a pipeline thread starts), so they inherit compiled code.

        background: a backend whose batches can come from the kernels' exact
        twins (the torch backend, the DALI backend; CPU, no batch stage) lets
        a first use compile them in a background process instead
        (engine/firstuse.py); `parallel`: its ops kernel is the threaded one; `folder_channels`: it also
        waits for the torch backend's fused folder pass (the caller compiles that one when not compiling);
        `extra`: a backend module whose own kernels it waits for too (firstuse._kernels)."""
        from ..core.dispatch import compiled
        from ..core.plan import plan_batch
        from .compiled import notice
        from .exec_cpu import apply_ops_cpu
        from .firstuse import begin

        if background and self.device.type == "cpu" and self.stage is None:
            normalize = self.output == "float" and not self.defer_normalize
            self.spec.first_use = begin(parallel, normalize, folder_channels=folder_channels, extra=extra)
            if self.spec.first_use is not None:
                return

        notice(plan_batch, "the planner", 15)
        gen = compiled()
        notice(gen.apply_ops_batch if parallel else gen.apply_ops_serial, "the augmentation kernels", 30)
        make_plan(0, 0, np.zeros(1, np.int64), 8, 8, 0.0, None, self.crop, self.policy)
        apply_ops_cpu(torch.zeros(1, self.channels, 8, 8, dtype=torch.uint8), np.ones((1, 1)), np.ones((1, 1)),
                      self.policy.space, parallel=parallel)

    # ------------------------------------------------------------ output
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> normalised float32 (x · 1/(255·std) - mean/std, per channel): one numba pass on CPU,
        torch on CUDA (the same two roundings, so the same values)."""
        if images.device.type == "cpu" and images.dtype == torch.uint8 and not self.spec.compiling():
            from ..kernels.mixing import normalize

            out = torch.empty(images.shape, dtype=torch.float32)
            normalize(images.numpy(), out.numpy(), self.norm_scale.reshape(-1).numpy(),
                      self.norm_shift.reshape(-1).numpy())
            return out
        return images.float().mul_(self.norm_scale).add_(self.norm_shift)

    def finish(self, images: torch.Tensor, labels, index, magnitude, ops, mags, epoch: int, step: int) -> Batch:
        """The Batch handed out: every field on the output device, images
        normalised for output="float". Arrays may be numpy or torch."""
        device = self.device
        images = images.to(device, non_blocking=True)
        if self.output == "float" and not self.defer_normalize:
            images = self.normalize(images)

        def tensor(a, dtype):
            t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
            return t.to(device=device, dtype=dtype, non_blocking=True)

        return Batch(images, tensor(labels, torch.int64), tensor(index, torch.int64),
                     tensor(magnitude, torch.float32), tensor(ops, torch.int8), tensor(mags, torch.float32),
                     int(epoch), int(step))


def render(ctx: BackendContext, indices, knobs, epoch: int, caps: bool) -> Batch:
    """`Loader.render` through the source: the samples' own crop, flip and
    ops at magnitudes `knobs`, executed by the numba kernels on CPU batches and
    by the torch executor on CUDA ones (bit-identical to each other)."""
    on_gpu = ctx.device.type == "cuda"
    part = build_part(ctx.spec, epoch, indices, knobs, caps=caps, apply_ops=not on_gpu, parallel=True)
    plan, images = part["plan"], part["images"]
    if on_gpu:
        from .exec_torch import apply_ops

        images = apply_ops(images.to(ctx.device), plan.ops, plan.mags, plan.space)
    ctx.errors.extend(part["skipped"])
    return ctx.finish(images, ctx.source.labels[plan.index], plan.index, plan.magnitude, plan.ops, plan.mags,
                      epoch, -1)
