"""Data-parallel glue for `torchrun`: init from its environment, DDP wrap,
rank-0 helpers, cross-rank checks. Everything is a no-op in one process.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; gloo is used on CPU, NCCL when
CUDA is available. Build the augpipe Loader after `init_from_env()`, so it
reads this rank's shard (by global rank).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes (if any). Returns whether
    this process runs data-parallel with at least 2 ranks."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return is_distributed()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def default_device() -> torch.device:
    """This rank's GPU under torchrun when CUDA is there, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when running data-parallel."""
    if not is_distributed() or isinstance(model, nn.parallel.DistributedDataParallel):
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, pruning masks) to every
    rank: DDP broadcasts them before each forward, so after the last training
    step each rank holds its own statistics until this is called."""
    if is_distributed():
        for buffer in getattr(model, "module", model).buffers():
            dist.broadcast(buffer, 0)


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in one process)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place across ranks ("sum" or "max"); returns the tensor. CPU
    tensors travel through the GPU under NCCL, which only reduces CUDA ones."""
    if is_distributed():
        work = tensor.cuda() if dist.get_backend() == "nccl" and not tensor.is_cuda else tensor
        dist.all_reduce(work, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
        if work is not tensor:
            tensor.copy_(work)
    return tensor


def check_equal(value, what: str) -> list:
    """Gather `value` from every rank and raise RuntimeError unless all agree.
    Returns the gathered list."""
    values = all_gather_object(value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"{what} differ across ranks: {values}")
    return values


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
