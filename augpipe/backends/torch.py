"""The torch backend: a torch DataLoader (or a thread pool) whose workers
build whole batches.

Each worker turns one request (epoch, step, indices, magnitude) into a batch
through the source (augpipe.engine.reference.build_part): load or decode, plan, crop,
flip, then the policy's ops with the fused numba kernels. On CUDA the workers
stop after the crop and the ops run batched on the GPU in the main process
with the torch executor. The two executors are bit-identical.

Image folders take a fast path by default (backends/folder.py): JPEG files
are read straight into one compiled pass per sample (box-only decode, resize,
flip, ops, CHW) with the same pixels as torchvision's decode + resize;
backend_options={"decoder": "torchvision"} takes the torchvision path for
every file, {"validate": "full"} decodes every JPEG once when the folder is
first used, {"dct_scale": True} allows DCT-scaled decoding (faster on large
images, not the torchvision pixels). {"ops": "device"} runs the policy's ops
batched on the output device after the transfer, as on CUDA (the default
there; "workers" elsewhere).

Workers are threads for in-memory sources and the folder fast path on the CPU
(every step of a batch runs in compiled code or torch with the GIL released,
and threads need no inter-process copies: ~1.5x the images/s of processes at
32 px), and DataLoader processes otherwise (the torchvision path, CUDA).
Override with backend_options={"workers": "threads" | "processes"}. Worker processes are
forked; pipelines of other backends that are garbage in the parent are never
finalized in them (augpipe/forksafe.py).
"""
from __future__ import annotations

import itertools
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.batch import Batch
from ..engine.contract import BackendContext
from ..engine.exec_torch import apply_ops
from ..engine.reference import BuildSpec, build_request

OPTIONS = {"workers", "decoder", "validate", "dct_scale", "ops"}


class BatchBuilder(Dataset):
    """Worker side: a request in, a finished (or cropped-only) batch out."""

    def __init__(self, spec: BuildSpec, apply_ops: bool):
        self.spec, self.apply_ops = spec, apply_ops
        self.parallel_ops = False  # True only when nothing else runs batches in parallel

    def __getitem__(self, request) -> dict:
        epoch, step, indices, knob = request
        return build_request(self.spec, epoch, step, indices, knob, apply_ops=self.apply_ops,
                             parallel=self.parallel_ops)


class _Requests(Sampler):
    """The DataLoader's sampler: yields the context's requests for the epoch
    and start step set just before each `iter()`."""

    def __init__(self, ctx: BackendContext):
        self.ctx = ctx
        self.epoch, self.start = 0, 0

    def __iter__(self):
        return self.ctx.requests(self.epoch, self.start)

    def __len__(self) -> int:
        return max(0, self.ctx.num_batches - self.start)


class TorchBackend:
    """Builds batches in `num_workers` threads or DataLoader processes."""

    # the Loader's batch-level stage (mixing, erasing, deferred normalisation) runs in the worker threads,
    # in parallel like the rest of the batch, instead of after them in the consumer's thread
    applies_stage = True

    def __init__(self, ctx: BackendContext):
        unknown = set(ctx.options) - OPTIONS
        if unknown:
            raise ValueError(f"unknown torch backend options {sorted(unknown)}; known: {sorted(OPTIONS)}")
        self.ctx = ctx
        on_gpu = ctx.device.type == "cuda"
        self.decoder = ctx.options.get("decoder", "fused" if ctx.source.encoded else "torchvision")
        if self.decoder not in ("fused", "torchvision") or (self.decoder == "fused" and not ctx.source.encoded):
            raise ValueError(f"backend_options['decoder'] must be 'fused' (encoded images only) or 'torchvision', "
                             f"got {self.decoder!r}")
        fast = ctx.source.in_memory or self.decoder == "fused"
        default = "threads" if fast and not on_gpu else "processes"
        self.workers = ctx.options.get("workers", default)
        if self.workers not in ("threads", "processes"):
            raise ValueError(f"backend_options['workers'] must be 'threads' or 'processes', got {self.workers!r}")
        # where the policy's ops run: in the workers, or batched on the output device after the transfer
        # (CUDA's layout; {"ops": "device"} also runs it on the CPU)
        ops_at = ctx.options.get("ops", "device" if on_gpu else "workers")
        if ops_at not in ("workers", "device"):
            raise ValueError(f"backend_options['ops'] must be 'workers' or 'device', got {ops_at!r}")
        in_workers = ops_at == "workers"
        # compile before workers fork, so they inherit compiled code; a first use compiles in the background
        # (the fused folder pass too, its twin being the torchvision path: not with DCT scaling, other pixels)
        fused = self.decoder == "fused"
        dct_scale = bool(ctx.options.get("dct_scale"))
        ctx.warm_up(background=not (fused and dct_scale), parallel=ctx.num_workers == 0,
                    folder_channels=ctx.channels if fused else 0)
        if fused:
            from .folder import FolderBatches, screen, warm_up

            bad = screen(ctx.spec, ctx.options.get("validate", "header"), ctx.errors)
            self.builder = FolderBatches(ctx.spec, in_workers, bad, 8 if dct_scale else 1)
            if not ctx.spec.compiling():
                warm_up(ctx.channels)
        else:
            self.builder = BatchBuilder(ctx.spec, apply_ops=in_workers)
            self.builder.parallel_ops = ctx.num_workers == 0
        self._sampler = _Requests(ctx)
        self._dataloader = None
        self._pool = None
        if ctx.num_workers > 0 and self.workers == "threads":
            self._pool = ThreadPoolExecutor(ctx.num_workers, thread_name_prefix="augpipe")
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)

    @property
    def lag(self) -> int:
        """Requests are resolved when dispatched, this many batches ahead."""
        return self.ctx.num_workers * self.ctx.prefetch_factor

    def _loader(self) -> DataLoader:
        if self._dataloader is None:
            self._dataloader = DataLoader(
                self.builder, batch_size=None, sampler=self._sampler, num_workers=self.ctx.num_workers,
                persistent_workers=True, prefetch_factor=self.ctx.prefetch_factor,
                pin_memory=self.ctx.device.type == "cuda",
            )
            # Stop workers cleanly at exit too: left to interpreter teardown, the
            # queues' feeder threads write to closed pipes.
            weakref.finalize(self, _shutdown, self._dataloader)
        return self._dataloader

    def iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        if self._pool is not None:
            yield from self._iterate_threads(epoch, start)
            return
        if self.ctx.num_workers == 0:
            for request in self.ctx.requests(epoch, start):
                yield self._staged(self._finish(self.builder[request]))
            return
        loader = self._loader()
        self._sampler.epoch, self._sampler.start = epoch, start
        try:
            for part in iter(loader):
                yield self._staged(self._finish(part))
        except Exception:
            self.close()  # a worker failed: stop them now, not at garbage collection
            raise

    def _iterate_threads(self, epoch: int, start: int) -> Iterator[Batch]:
        """In-order results of up to num_workers * prefetch_factor requests in flight."""
        requests = self.ctx.requests(epoch, start)
        depth = self.ctx.num_workers * self.ctx.prefetch_factor
        pending = deque(self._pool.submit(self._build, r) for r in itertools.islice(requests, depth))
        try:
            while pending:
                batch, skipped = pending.popleft().result()
                for request in itertools.islice(requests, 1):
                    pending.append(self._pool.submit(self._build, request))
                self.ctx.errors.extend(skipped)  # in batch order, from the consumer's thread
                yield batch
        finally:
            for future in pending:  # an abandoned epoch: drop what was queued
                future.cancel()

    def close(self) -> None:
        """Stop the persistent worker processes (they restart on the next iteration)."""
        _shutdown(self._dataloader)

    def _build(self, request) -> tuple[Batch, list]:
        """A worker thread's whole share: the batch, finished and staged; its skipped files go to the errors
        from the consumer's thread."""
        part = self.builder[request]
        skipped, part["skipped"] = part["skipped"], []
        return self._staged(self._finish(part)), skipped

    def _staged(self, batch: Batch) -> Batch:
        return batch if self.ctx.stage is None else self.ctx.stage(batch)

    def _finish(self, part: dict) -> Batch:
        ctx = self.ctx
        images = part["images"]
        if not self.builder.apply_ops:
            images = apply_ops(images.to(ctx.device, non_blocking=True), np.asarray(part["ops"]),
                               np.asarray(part["mags"]), ctx.policy.space)
        if part["skipped"]:
            ctx.errors.extend(part["skipped"])
        return ctx.finish(images, part["labels"], part["index"], part["magnitude"], part["ops"], part["mags"],
                          part["epoch"], part["step"])


def _shutdown(dataloader: DataLoader | None) -> None:
    it = getattr(dataloader, "_iterator", None)
    if it is not None:
        it._shutdown_workers()
        dataloader._iterator = None


def make_backend(ctx: BackendContext) -> TorchBackend:
    return TorchBackend(ctx)
