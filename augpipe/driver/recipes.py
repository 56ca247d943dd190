"""Recipes from the paper: iterative pruning with a magnitude that follows
capacity (finding A), and dense-strong-then-weak (finding B)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from ..core.checks import check_int
from ..models import model_arch
from . import checkpoint, distributed
from .capacity import CapacitySchedule
from .progress import Bars
from .prune import (
    check_sparsity,
    count_macs,
    count_params,
    get_method,
    mask_digest,
    prune,
    recalibrate_bn,
)
from .train import evaluate, train

STEPS = ("linear", "geometric")


def round_targets(target_sparsity: float, rounds: int, steps: str = "linear") -> list[float]:
    """Sparsity after each round: linear (20, 40, 60, 80 % for 0.8 in 4, the
    paper's) or geometric (the same fraction of what is left each round)."""
    if steps not in STEPS:
        raise ValueError(f"unknown steps {steps!r}; choose one of {STEPS}")
    check_int("rounds", rounds, 1)
    if steps == "linear":
        return [target_sparsity * k / rounds for k in range(1, rounds + 1)]
    return [1 - (1 - target_sparsity) ** (k / rounds) for k in range(1, rounds + 1)]


def iterative_prune(model: nn.Module, loader, *, target_sparsity: float, rounds: int, finetune_epochs: int,
                    method: str = "l1-unstructured", magnitude=None, val_loader=None, checkpoint_dir=None,
                    example_input=None, steps: str = "linear", recalibrate_batches: int = 10,
                    progress: bool = True, clock: float | None = None, **train_kwargs) -> list[dict]:
    """Prune in `rounds` steps to `target_sparsity`, fine-tuning after each.

    Args:
        model: any nn.Module; pruned in place (channel pruning replaces layers).
        loader: an augpipe Loader for fine-tuning (and BN recalibration).
        target_sparsity: final sparsity in [0, 1), as prune() counts it.
        rounds: pruning steps (>= 1), spaced by `steps` ("linear" or "geometric").
        finetune_epochs: train() epochs after each step.
        method: "l1-unstructured" or "channel" (see prune()).
        magnitude: the fine-tuning magnitude of each round: a CapacitySchedule
            (evaluated on the non-zero parameters after the step), a float, a
            function sparsity -> M, or None (leave the loader's knob).
        val_loader: evaluated after each round (accuracy and loss recorded).
        checkpoint_dir: `round-NN.pt` after each round, fine-tuning epochs in
            `round-NN/`; a call finding them resumes where the last one stopped.
        example_input: one batch shaped like the input (default: the first
            batch of `loader`); traces channel pruning and counts MACs.
        recalibrate_batches: channel pruning: BatchNorm statistics are
            re-estimated on this many training batches before fine-tuning.
        progress: progress bars (rounds, and train()'s).
        clock: `time.perf_counter()` when this process's work on the run began
            (default: now), for the records' wall_s_total.
        **train_kwargs: passed to train() (lr, optimizer, teacher, kd, ...).

    Returns:
        One record per round, round 0 being the model as given: round, target,
        sparsity, params (non-zero), macs (non-zero weights), magnitude,
        accuracy and loss (with val_loader), mask_digests (one per rank; equal,
        or pruning raised), finetune (the train() history), wall_s_total (the
        run's wall time so far, summed over resumed processes).

    Under torch.distributed every rank prunes its identical copy of the model
    with the same deterministic algorithm; the masks' digests are then
    compared across ranks and a difference raises RuntimeError.
    """
    target_sparsity = check_sparsity(target_sparsity)
    targets = round_targets(target_sparsity, rounds, steps)
    if example_input is None:
        example_input = next(iter(loader))[0][:2]
    example_input = example_input.float() if example_input.dtype == torch.uint8 else example_input
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    done = checkpoint.numbered(folder, "round") if folder is not None else []
    start = time.perf_counter() if clock is None else clock
    if done:
        state = checkpoint.load(done[-1])
        checkpoint.load_model(model, state["model"], state["arch"], done[-1])
        records, dense = state["records"], state["dense_params"]
        loader.load_state_dict(state["loader"])  # every rank's: caps merged
    else:
        dense = count_params(model)
        records = [_record(0, 0.0, model, example_input, _magnitude(magnitude, model, 0.0), val_loader, {})]
    # wall time summed over every process of the run: the finished rounds' (saved with them), the earlier
    # processes' share of an interrupted fine-tuning (its checkpoints keep it), and this process's
    before = records[-1].get("wall_s_total", 0.0)
    bars = Bars(progress, rounds, len(records) - 1, 0, unit="round")
    for k in range(len(records), rounds + 1):
        target = targets[k - 1]
        structured = get_method(method).structured
        report = prune(model, target, method, example_input, dense_params=dense if structured else None)
        m = _magnitude(magnitude, model, report.sparsity)
        if m is not None:
            loader.magnitude = m
        if structured and recalibrate_batches:
            recalibrate_bn(model, loader, recalibrate_batches)
            distributed.sync_buffers(model)  # ranks saw different batches
        history = train(model, loader, finetune_epochs, magnitude=m, progress=progress,
                        checkpoint_dir=folder / f"round-{k:02d}" if folder is not None else None, **train_kwargs)
        records.append(_record(k, target, model, example_input, m, val_loader, history.to_dict(), report.sparsity))
        before += history.wall_s_before
        records[-1]["wall_s_total"] = before + time.perf_counter() - start
        bars.epoch_done({"accuracy": records[-1].get("accuracy", float("nan")), "sparsity": report.sparsity,
                         "magnitude": float("nan") if m is None else m})
        if folder is not None:
            loader_states = distributed.all_gather_object(loader.state_dict())
            if distributed.is_main():
                checkpoint.atomic_save({"arch": model_arch(model),
                                        "model": getattr(model, "module", model).state_dict(),
                                        "records": records, "dense_params": dense, "loader": loader_states},
                                       folder / f"round-{k:02d}.pt")
            distributed.barrier()
    bars.close()
    records[-1]["wall_s_total"] = before + time.perf_counter() - start  # with the last save (not in its file)
    return records


def _magnitude(magnitude, model, sparsity: float):
    if magnitude is None:
        return None
    if isinstance(magnitude, CapacitySchedule):
        return magnitude(count_params(model, nonzero=True))
    if callable(magnitude):
        return float(magnitude(sparsity))
    return float(magnitude)


def _record(k, target, model, example_input, magnitude, val_loader, finetune, sparsity=0.0) -> dict:
    digests = distributed.check_equal(mask_digest(model), f"pruning masks after round {k}")
    record = {"round": k, "target": target, "sparsity": sparsity, "params": count_params(model, nonzero=True),
              "macs": count_macs(model, example_input.to(next(model.parameters()).device))[1],
              "magnitude": magnitude, "mask_digests": digests, "finetune": finetune}
    if val_loader is not None:
        record.update(evaluate(model, val_loader))
    return record


def dense_strong_then_weak(model: nn.Module, loader, *, epochs: int, finetune_epochs: int, strong: float = 14.0,
                           weak: float = 0.0, sparsity: float = 0.8, rounds: int = 1,
                           method: str = "l1-unstructured", val_loader=None, checkpoint_dir=None,
                           progress: bool = True, **train_kwargs) -> dict:
    """Train dense with strong augmentation, prune, fine-tune with weak (paper B:
    the dense model's extra parameters learn from the strong augmentation).

    Returns {"dense": train() history as a dict, "rounds": iterative_prune() records}.
    """
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history = train(model, loader, epochs, magnitude=strong, val_loader=val_loader, progress=progress,
                    checkpoint_dir=folder / "dense" if folder is not None else None, **train_kwargs)
    rounds_out = iterative_prune(model, loader, target_sparsity=sparsity, rounds=rounds,
                                 finetune_epochs=finetune_epochs, method=method, magnitude=weak,
                                 val_loader=val_loader, progress=progress,
                                 checkpoint_dir=folder / "prune" if folder is not None else None, **train_kwargs)
    return {"dense": history.to_dict(), "rounds": rounds_out}
