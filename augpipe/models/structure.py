"""Giving a model the structure a pruned checkpoint was saved with (masks,
shrunk layers), so that loading it needs only the architecture name. Below
both the gate and the driver: a teacher can be a pruned run."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


def restore_structure(model: nn.Module, state: dict) -> nn.Module:
    """Make `model` able to load `state`, a state_dict saved from a pruned
    model: add unstructured pruning masks where the state has them and resize
    conv, linear and BatchNorm layers to the state's shapes (channel pruning).
    Returns the model; then call `model.load_state_dict(state)`."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for pname in ("weight", "bias"):
            if f"{prefix}{pname}_mask" in state and not hasattr(module, f"{pname}_mask"):
                torch_prune.identity(module, pname)
        for pname, p in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            saved = state.get(prefix + pname)
            if saved is None or saved.shape == p.shape:
                continue
            new = torch.empty(saved.shape, dtype=p.dtype, device=p.device)
            if isinstance(p, nn.Parameter):
                setattr(module, pname, nn.Parameter(new, requires_grad=p.requires_grad))
            else:
                module.register_buffer(pname, new)
        _sync_shape_attributes(module)
    return model


def _sync_shape_attributes(module: nn.Module) -> None:
    w = getattr(module, "weight_orig", getattr(module, "weight", None))
    if isinstance(module, nn.Conv2d) and w is not None:
        module.out_channels, module.in_channels = w.shape[0], w.shape[1] * module.groups
    elif isinstance(module, nn.Linear) and w is not None:
        module.out_features, module.in_features = w.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and getattr(module, "running_mean", None) is not None:
        module.num_features = module.running_mean.shape[0]
