"""Pruning: global L1 unstructured (torch.nn.utils.prune) and structured
channel pruning (Torch-Pruning), with parameter, sparsity and MAC counting.

Sparsity is always measured against the model as it stands, never
compounded: `prune(model, 0.5)` then `prune(model, 0.8)` leaves 80 % of the
prunable weights at zero, not 90 %.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..models.structure import restore_structure  # noqa: F401  (re-exported: augpipe.driver.restore_structure)

PRUNABLE = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Method:
    """A pruning method as a registered object (as Torch-Pruning's importances).

    Attributes:
        name: what `prune(method=...)` and `--method` call it.
        apply: (model, sparsity, example_input, options dict) -> achieved
            sparsity; prunes in place.
        structured: removes whole channels (the model shrinks: recalibrate
            BatchNorm after it, and build a new optimizer).
        needs_example: traces the model, so `example_input` is required.
    """

    name: str
    apply: Callable
    structured: bool = False
    needs_example: bool = False


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a pruning method (one call in one new file is all a new method needs)."""
    if not isinstance(method, Method):
        raise TypeError(f"register takes a Method, got {type(method).__name__}")
    REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise ValueError(f"unknown pruning method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


@dataclass
class PruneReport:
    """What one `prune()` call did.

    `params_*` count non-zero parameters (all of them: weights, biases, BN);
    `macs_*` count multiply-accumulates with non-zero weights for one sample
    (None without an example input). `sparsity` is the fraction of zero
    conv/linear weights (unstructured) or of parameters removed relative to
    the dense model (channel).
    """

    method: str
    target: float
    sparsity: float
    params_before: int
    params_after: int
    macs_before: int | None = None
    macs_after: int | None = None
    layers: dict = field(default_factory=dict)  # layer name -> fraction of its weights at zero

    def to_dict(self) -> dict:
        return asdict(self)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every conv and linear layer, in model order."""
    return [(n, m) for n, m in _unwrap(model).named_modules() if isinstance(m, PRUNABLE)]


def _masked(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """A parameter as the forward pass sees it: orig * mask for a layer pruned
    with torch.nn.utils.prune (computed here: the module's own attribute is
    only refreshed by the next forward pass, e.g. not after load_state_dict)."""
    mask = getattr(module, f"{name}_mask", None)
    return getattr(module, f"{name}_orig") * mask if mask is not None else getattr(module, name)


def _effective(model: nn.Module):
    """(name, tensor) for every parameter as the forward pass sees it."""
    for mod_name, module in _unwrap(model).named_modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):
                name = name[:-len("_orig")]
                p = _masked(module, name)
            yield f"{mod_name}.{name}" if mod_name else name, p


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Parameters of the model (a masked weight counted once). `nonzero=True`
    counts the capacity left after pruning: the non-zero conv and linear
    weights plus every other parameter (biases and norm parameters are never
    pruned, and count even when they happen to be zero, e.g. at init)."""
    total = 0
    with torch.no_grad():
        for module in _unwrap(model).modules():
            for name, p in module.named_parameters(recurse=False):
                if nonzero and isinstance(module, PRUNABLE) and name in ("weight", "weight_orig"):
                    total += int(torch.count_nonzero(_masked(module)))
                else:
                    total += p.numel()
    return total


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of conv and linear weights that are zero, over the whole model."""
    layers = prunable_weights(model)
    total = sum(m.weight.numel() for _, m in layers)
    with torch.no_grad():
        zeros = sum(int((_masked(m) == 0).sum()) for _, m in layers)
    return zeros / total if total else 0.0


def count_macs(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(dense MACs, MACs with non-zero weights) of conv and linear layers per sample."""
    model = _unwrap(model)
    totals = [0, 0]

    def hook(module, inputs, output):
        positions = output[0].numel() // module.weight.shape[0]  # output positions per channel, one sample
        totals[0] += positions * module.weight.numel()
        totals[1] += positions * int(torch.count_nonzero(module.weight))

    handles = [m.register_forward_hook(hook) for _, m in prunable_weights(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return totals[0], totals[1]


def mask_digest(model: nn.Module) -> str:
    """SHA-256 over every layer's shape and zero pattern: equal digests mean
    equal masks and equal structure (used to check ranks agree)."""
    h = hashlib.sha256()
    for name, p in _effective(model):
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update((p.detach() != 0).cpu().numpy().tobytes())
    return h.hexdigest()


def check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def prune(model: nn.Module, sparsity: float, method: str = "l1-unstructured", example_input=None, *,
          permanent: bool = False, dense_params: int | None = None, ignored_layers=None) -> PruneReport:
    """Prune `model` in place to `sparsity`, counted over the whole model.

    Args:
        model: any nn.Module (a DistributedDataParallel is unwrapped).
        sparsity: target in [0, 1). "l1-unstructured": fraction of all conv and
            linear weights set to zero (one global L1 ranking; exact up to
            rounding of one weight). "channel": fraction of the dense model's
            parameters removed by deleting whole channels (the model shrinks;
            reached within about 1 % of the parameters).
        method: a registered Method's name: "l1-unstructured" or "channel"
            built in (`REGISTRY`).
        example_input: a batch shaped like the model's input; required for
            "channel" (graph tracing), optional otherwise (MACs in the report).
        permanent: unstructured only: fold the masks into the weights
            (torch.nn.utils.prune.remove). Pruned weights are then plain
            zeros that training can regrow; keep masks while fine-tuning.
        dense_params: channel only: the dense model's parameter count the
            target is relative to. Default: recorded on the model by the first
            channel prune (`model.augpipe_dense_params`), else its current count.
        ignored_layers: channel only: modules whose output channels are kept
            (default: every Linear producing the model's output).

    After channel pruning, build a new optimizer (train() always does) and
    recalibrate BatchNorm statistics (`recalibrate_bn`).

    Raises:
        ValueError: unknown method, sparsity outside [0, 1), a target below the
            sparsity the model already has, or "channel" without example_input.
    """
    m = get_method(method)
    sparsity = check_sparsity(sparsity)
    model = _unwrap(model)
    if m.needs_example and example_input is None:
        raise ValueError(f"{method} pruning traces the model: pass example_input, e.g. one batch of images")
    params_before = count_params(model, nonzero=True)
    macs_before = count_macs(model, example_input)[1] if example_input is not None else None
    options = {"permanent": permanent, "dense_params": dense_params, "ignored_layers": ignored_layers}
    achieved = m.apply(model, sparsity, example_input, options)
    return PruneReport(
        method=method, target=sparsity, sparsity=achieved, params_before=params_before,
        params_after=count_params(model, nonzero=True), macs_before=macs_before,
        macs_after=count_macs(model, example_input)[1] if example_input is not None else None,
        layers={n: round(float((_masked(m) == 0).float().mean()), 6) for n, m in prunable_weights(model)})


def _prune_unstructured(model: nn.Module, sparsity: float, permanent: bool) -> float:
    layers = prunable_weights(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    total = sum(m.weight.numel() for _, m in layers)
    masked = sum(int((m.weight_mask == 0).sum()) for _, m in layers if hasattr(m, "weight_mask"))
    target = round(sparsity * total)
    if target < masked:
        raise ValueError(f"the model is already {masked / total:.2%} sparse; pruning cannot bring weights back "
                         f"to reach {sparsity:.2%}")
    # An integer amount applies to the still unmasked weights only, so the
    # total number of masked weights lands exactly on `target`.
    torch_prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=torch_prune.L1Unstructured,
                                    amount=target - masked)
    if permanent:
        for _, m in layers:
            torch_prune.remove(m, "weight")
    return weight_sparsity(model)


def _prune_channels(model, sparsity, example_input, dense_params, ignored_layers) -> float:
    import torch_pruning as tp

    if any(hasattr(m, "weight_mask") for _, m in prunable_weights(model)):
        raise ValueError("this model carries unstructured pruning masks; channel pruning needs a model "
                         "without them (torch.nn.utils.prune.remove each, or start from the dense model)")
    dense = dense_params or getattr(model, "augpipe_dense_params", None) or count_params(model)
    model.augpipe_dense_params = dense
    goal = round(dense * (1 - sparsity))
    current = count_params(model)
    if goal >= current:
        return 1 - current / dense
    example_input = example_input.to(next(model.parameters()).device)
    with torch.no_grad():
        out_dim = model.eval()(example_input[:1]).shape[-1]
    ignored = list(ignored_layers) if ignored_layers is not None else \
        [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == out_dim]

    def apply(target: nn.Module, ratio: float) -> int:
        ign = [dict(target.named_modules())[n] for n, m in model.named_modules() if any(m is i for i in ignored)]
        pruner = tp.pruner.MetaPruner(target, example_input[:1], importance=tp.importance.MagnitudeImportance(p=1),
                                      pruning_ratio=ratio, ignored_layers=ign)
        pruner.step()
        return count_params(target)

    # Parameters fall in steps as the channel ratio r grows (about (1 - r)^2
    # remain): bisect on copies from that first guess, prune with the closest.
    lo, hi, ratio, tried = 0.0, 0.99, 1 - (goal / current) ** 0.5, []
    for _ in range(8):
        tried.append((ratio, apply(copy.deepcopy(model), ratio)))
        if abs(tried[-1][1] - goal) <= 0.005 * dense:
            break
        lo, hi = (ratio, hi) if tried[-1][1] > goal else (lo, ratio)
        ratio = (lo + hi) / 2
    apply(model, min(tried, key=lambda t: abs(t[1] - goal))[0])
    return 1 - count_params(model) / dense


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader, batches: int = 10, device=None) -> None:
    """Re-estimate BatchNorm running statistics on `batches` training batches
    (cumulative average), e.g. after channel pruning. Weights are untouched."""
    model = _unwrap(model)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    device = device or next(model.parameters()).device
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    was_training = model.training
    model.train()
    try:
        for i, batch in enumerate(loader):
            if i >= batches:
                break
            images = batch[0].to(device)
            model(images.float().div_(255) if images.dtype == torch.uint8 else images)
    finally:
        model.train(was_training)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum


register(Method("l1-unstructured", lambda model, sparsity, example, o: _prune_unstructured(model, sparsity,
                                                                                           o["permanent"])))
register(Method("channel", lambda model, sparsity, example, o: _prune_channels(
    model, sparsity, example, o["dense_params"], o["ignored_layers"]), structured=True, needs_example=True))
METHODS = tuple(REGISTRY)  # the built-in names, for command-line choices
