"""`train()` and `evaluate()`: a plain supervised loop that drives the loader's knob.

The loss is `reduce_loss(per_sample_loss(...), batch.weight)`; see losses.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_int, check_positive
from ..models import model_arch
from . import checkpoint, distributed
from .capacity import CapacitySchedule
from .losses import KD, per_sample_loss, reduce_loss
from .progress import Bars
from .prune import count_params

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "constant", "step")


@dataclass
class History:
    """One dict per finished epoch: epoch, loss, accuracy (training), magnitude
    (mean of the batches' per-sample magnitudes), lr, seconds, images_per_s,
    data_wait (share of the epoch spent waiting for batches), and val_accuracy
    / val_loss with a val_loader."""

    epochs: list = field(default_factory=list)
    wall_s_before: float = 0.0  # wall time of the earlier processes of a resumed run, up to its checkpoint

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, i) -> dict:
        return self.epochs[i]

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def to_dict(self) -> dict:
        return {"epochs": self.epochs}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device=None) -> dict:
    """{"accuracy", "loss", "samples"} of `model` over one pass of `loader`.

    Under torch.distributed with an augpipe loader, every dataset index is
    counted once across ranks (padding repeats in the shards are dropped)."""
    model = getattr(model, "module", model)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(loader.dataset) if hasattr(loader, "dataset") else 0
    by_index = distributed.is_distributed() and n > 0
    stats = torch.zeros(3 if not by_index else 3 * n, dtype=torch.float64)
    try:
        for batch in loader:
            images, labels = _to_inputs(batch, device)
            logits = model(images).float()
            losses = F.cross_entropy(logits, labels, reduction="none").double().cpu()
            ok = (logits.argmax(1) == labels).double().cpu()
            if by_index:
                idx = batch.index.cpu().long()
                stats[idx], stats[n + idx], stats[2 * n + idx] = ok, losses, 1.0
            else:
                stats += torch.stack([ok.sum(), losses.sum(), torch.tensor(float(len(labels)))])
    finally:
        model.train(was_training)
    if by_index:
        distributed.all_reduce(stats, "max")  # duplicates hold equal values: max de-duplicates
        stats = stats.view(3, n).sum(1)
    else:
        distributed.all_reduce(stats)
    seen = float(stats[2])
    return {"accuracy": float(stats[0]) / max(seen, 1), "loss": float(stats[1]) / max(seen, 1), "samples": int(seen)}


def train(model: nn.Module, loader, epochs: int, *, optimizer="sgd", lr: float = 0.1, momentum: float = 0.9,
          weight_decay: float = 5e-4, lr_schedule: str = "cosine", magnitude=None, teacher: nn.Module | None = None,
          kd: KD | None = None, gate=None, val_loader=None, checkpoint_dir=None, device=None, amp: bool = False,
          progress: bool = True, on_batch=None, keep_checkpoints: int = 2, eval_every: int = 1,
          clock: float | None = None, label_smoothing: float = 0.0) -> History:
    """Train `model` for `epochs` passes over `loader`.

    Args:
        model: any nn.Module. Under torch.distributed it is wrapped in
            DistributedDataParallel for the call (and returned unwrapped).
        loader: an augpipe Loader; its epochs continue from `loader.epoch`.
        epochs: passes (>= 0).
        optimizer: "sgd" (with momentum, Nesterov off) or "adamw"; a new one is
            built every call, so call again after channel pruning.
        lr, momentum, weight_decay: optimizer settings (weight decay skipped on
            biases and norm parameters: every 1-D parameter).
        lr_schedule: "cosine" (per step, to 0), "constant" or "step" (x0.1 at
            50 % and 75 % of the steps).
        magnitude: None (leave the knob), a float, a function (epoch, step) ->
            M with epoch counted from 0 in this call, or a CapacitySchedule
            (evaluated on the model's non-zero parameters, measured once per epoch).
        teacher, kd: distil from `teacher` (eval mode, frozen, no gradients)
            with `kd` (default KD()).
        gate: a teacher gate, attached as `loader.gate`; batches then carry
            per-sample `weight`, honoured by the loss (see module docstring).
        val_loader: evaluated into the history after every `eval_every`-th
            epoch and after the last (evaluation does not change training).
        checkpoint_dir: a checkpoint per epoch (`epoch-NNNN.pt`, the last
            `keep_checkpoints` kept); a call finding checkpoints there resumes
            from the latest and ends bit-identical to an uninterrupted run.
        device: default: the loader's device.
        amp: autocast (bfloat16 on CPU, float16 + GradScaler on CUDA).
        progress: tqdm bars (epochs, batches) on rank 0.
        on_batch: called as on_batch(batch) for every training batch.
        clock: `time.perf_counter()` when this process's work on the run began
            (default: now); checkpoints add the time since to that of earlier
            processes, so a resumed run's wall time is summed over processes.
        label_smoothing: smoothing of the hard labels' cross-entropy (batches
            with soft targets, from a mixing loader, carry their own).
    """
    check_int("epochs", epochs, 0)
    check_int("eval_every", eval_every, 1)
    clock = time.perf_counter() if clock is None else clock
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if kd is not None and teacher is None:
        raise ValueError("kd= needs a teacher= model to distil from")
    device = torch.device(device) if device is not None else getattr(loader, "device", torch.device("cpu"))
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval().requires_grad_(False)
        kd = kd or KD()
    if gate is not None:
        loader.gate = gate
    setup = {"arch": model_arch(model), "epochs": epochs, "steps_per_epoch": len(loader), "lr": lr,
             "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
             "lr_schedule": lr_schedule, "world_size": distributed.world_size()}
    ckpts = checkpoint.numbered(checkpoint_dir, "epoch") if checkpoint_dir is not None else []
    state = checkpoint.load(ckpts[-1]) if ckpts else None
    if state is not None:
        checkpoint.load_model(model, state["model"], state["setup"]["arch"], ckpts[-1])
        mismatch = {k: (state["setup"].get(k), v) for k, v in setup.items() if state["setup"].get(k) != v}
        if mismatch:
            raise ValueError(f"{checkpoint_dir} holds checkpoints of another training setup "
                             f"(saved, now): {mismatch}; use another checkpoint_dir")
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(lr_schedule, epochs * len(loader)))
    history, start, base = History(), 0, getattr(loader, "epoch", 0)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = History(state["history"], state.get("wall_s", 0.0))  # runs saved before wall_s: 0
        start, base = state["epoch"], state["base_epoch"]
        if hasattr(loader, "load_state_dict"):
            loader.load_state_dict(state["loader"])  # every rank's: caps merged
        torch.set_rng_state(state["torch_rng"])
    net = distributed.wrap(model, device)
    set_magnitude = _magnitude_setter(loader, magnitude, model, base)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    bars = Bars(progress, epochs, start, len(loader))
    for epoch in range(start, epochs):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(base + epoch)
        set_magnitude()
        record = _train_epoch(net, model, loader, opt, sched, scaler, device, amp, teacher, kd, on_batch, bars,
                              label_smoothing)
        record["epoch"] = epoch
        distributed.sync_buffers(model)  # every rank evaluates and saves rank 0's BN statistics
        if val_loader is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            val = evaluate(model, val_loader, device)
            record.update(val_accuracy=val["accuracy"], val_loss=val["loss"])
        history.epochs.append(record)
        bars.epoch_done(record)
        if checkpoint_dir is not None:
            wall = history.wall_s_before + time.perf_counter() - clock
            _save(checkpoint_dir, keep_checkpoints, model, opt, sched, loader, history, epoch + 1, base, setup, wall)
    bars.close()
    return history


def make_optimizer(model: nn.Module, name, lr: float, momentum: float, weight_decay: float):
    """SGD (momentum) or AdamW; no weight decay on 1-D parameters (biases, norms)."""
    if isinstance(name, torch.optim.Optimizer):
        return name
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    check_positive("lr", lr)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr)


def _lr_factor(kind: str, steps: int):
    if kind == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1)))
    if kind == "step":
        return lambda s: 0.1 ** ((s >= steps // 2) + (s >= 3 * steps // 4))
    return lambda s: 1.0


def _magnitude_setter(loader, magnitude, model, base: int):
    """A function called at each epoch start that points the knob where asked."""
    if magnitude is None:
        return lambda: None
    if not hasattr(loader, "set_magnitude"):
        raise TypeError(f"magnitude= needs an augpipe Loader (with a magnitude knob), got {type(loader).__name__}")
    if isinstance(magnitude, CapacitySchedule):
        value = [magnitude(model)]
        loader.set_magnitude(lambda e, s: value[0])

        def measure():
            value[0] = magnitude(count_params(model, nonzero=True))
        return measure
    if callable(magnitude):
        loader.set_magnitude(lambda e, s: magnitude(e - base, s))
        return lambda: None
    loader.magnitude = magnitude
    return lambda: None


def _to_inputs(batch, device):
    images, labels = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
    if images.dtype == torch.uint8:  # an output="uint8" loader: scale to [0, 1]
        images = images.float().div_(255)
    return images, labels


def _train_epoch(net, model, loader, opt, sched, scaler, device, amp, teacher, kd, on_batch, bars,
                 label_smoothing=0.0) -> dict:
    net.train()
    core = getattr(model, "module", model)
    aux_loss = getattr(core, "aux_loss", None)
    totals = {"loss": 0.0, "correct": 0, "seen": 0, "magnitude": 0.0, "wait": 0.0, "batches": 0}
    amp_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    start = waited = time.perf_counter()
    it = iter(loader)
    for step in bars.batches():
        try:
            batch = next(it)
        except StopIteration:
            break
        totals["wait"] += time.perf_counter() - waited
        if on_batch is not None:
            on_batch(batch)
        images, labels = _to_inputs(batch, device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            logits = net(images)
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(images)
        targets = getattr(batch, "targets", None)  # soft targets of a mixing loader
        targets = targets.to(device, non_blocking=True) if targets is not None else None
        losses = per_sample_loss(logits, labels, teacher_logits, kd, targets, label_smoothing)
        if callable(aux_loss):
            losses = losses + aux_loss(targets if targets is not None else labels)
        loss = reduce_loss(losses, getattr(batch, "weight", None))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {float(loss)} at step {step}; lower lr (now "
                                     f"{opt.param_groups[0]['lr']:.3g}) or check the data")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        n = len(labels)
        totals["loss"] += loss.item() * n
        totals["correct"] += int((logits.argmax(1) == labels).sum())
        totals["seen"] += n
        totals["batches"] += 1
        mags = getattr(batch, "magnitude", None)
        totals["magnitude"] += float(mags.float().sum()) if mags is not None else math.nan
        bars.step(totals["loss"] / totals["seen"])
        waited = time.perf_counter()
    seconds = time.perf_counter() - start
    seen = max(totals["seen"], 1)
    return {"loss": totals["loss"] / seen, "accuracy": totals["correct"] / seen,
            "magnitude": totals["magnitude"] / seen, "lr": opt.param_groups[0]["lr"], "seconds": seconds,
            "images_per_s": totals["seen"] / max(seconds, 1e-9), "data_wait": totals["wait"] / max(seconds, 1e-9),
            "batches": totals["batches"]}


def _save(folder, keep, model, opt, sched, loader, history, epoch, base, setup, wall_s) -> None:
    loader_states = distributed.all_gather_object(loader.state_dict() if hasattr(loader, "state_dict") else None)
    if distributed.is_main():
        target = getattr(model, "module", model)
        checkpoint.atomic_save({
            "model": target.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch, "base_epoch": base, "history": history.epochs, "loader": loader_states,
            "torch_rng": torch.get_rng_state(), "setup": setup, "wall_s": wall_s},
            Path(folder) / f"epoch-{epoch:04d}.pt")
        checkpoint.prune_old(folder, "epoch", keep)
    distributed.barrier()
