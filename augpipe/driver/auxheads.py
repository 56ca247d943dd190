"""`AuxHeads`: training-only extra parameters for a small model (paper B).

Strong augmentation hurts small models, yet a small model still gains from it
when additional parameters, used only while training, absorb it (NetAug,
Auxiliary Training). AuxHeads attaches auxiliary classifier heads to
intermediate features; they are trained with the model under strong
augmentation and `deploy()` removes them, leaving exactly the small model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import model_arch


class AuxHeads(nn.Module):
    """Wraps `model`; its forward output is the model's, unchanged.

    While training, each head classifies the features of one intermediate
    layer, and `train()` adds `aux_loss(labels)` (per sample:
    weight * mean over heads of the heads' cross-entropy) to the loss.

    Args:
        model: the small model (any nn.Module taking NCHW images).
        layers: names (as in model.named_modules()) of the layers whose outputs
            feed a head. Default: the last layer at each spatial resolution
            but the final one (stage ends: resnet "layer1", "layer2").
        weight: aux loss weight (>= 0, default 0.3).
        width: head channels as a multiple of the layer's channels (default 2,
            a widened branch: conv3x3 stride 2 + conv3x3, each bn-relu, pooling
            and a linear classifier).
        example_input: a batch to trace shapes with (default: zeros of
            2 x C x 32 x 32, C from the first conv).
    """

    def __init__(self, model: nn.Module, layers=None, weight: float = 0.3, width: float = 2.0, example_input=None):
        super().__init__()
        if not weight >= 0 or not width > 0:
            raise ValueError(f"AuxHeads needs weight >= 0 and width > 0, got weight={weight!r}, width={width!r}")
        self.model, self.weight = model, float(weight)
        shapes, out_dim = _trace(model, example_input)
        names = list(layers) if layers is not None else _stage_ends(shapes)
        known = dict(model.named_modules())
        for name in names:
            if name not in shapes or len(shapes[name]) != 4:
                raise ValueError(f"layer {name!r} of {type(model).__name__} does not output NCHW features "
                                 f"(layers that do: {[n for n, s in shapes.items() if len(s) == 4][:12]}...)")
        self.layers = names
        self.heads = nn.ModuleList(_head(shapes[n][1], max(1, round(width * shapes[n][1])), out_dim) for n in names)
        self._logits: list[torch.Tensor] = []
        self._hooks = [known[n].register_forward_hook(self._hook(i)) for i, n in enumerate(names)]
        self.arch = f"AuxHeads({model_arch(model)}, layers={names}, width={width:g})"

    def _hook(self, i: int):
        def hook(module, inputs, output):
            if self.training:
                self._logits.append(self.heads[i](output))
        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._logits = []
        return self.model(x)

    def aux_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample auxiliary loss of the last forward pass (zeros in eval mode)."""
        if not self._logits:
            return torch.zeros(len(labels), device=labels.device)
        ce = torch.stack([F.cross_entropy(z.float(), labels, reduction="none") for z in self._logits])
        return self.weight * ce.mean(0)

    def deploy(self) -> nn.Module:
        """Remove the heads and their hooks; returns the wrapped model itself,
        with exactly its own parameters and outputs."""
        for h in self._hooks:
            h.remove()
        self._hooks, self._logits = [], []
        return self.model


def _trace(model: nn.Module, example_input):
    """Output shape of every named module on one forward pass, and the model's output width."""
    if example_input is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ValueError(f"{type(model).__name__} has no Conv2d; pass layers= and example_input=")
        example_input = torch.zeros(2, first.in_channels, 32, 32, device=first.weight.device)
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
             for name, m in model.named_modules() if name]
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(example_input)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes, out.shape[-1]


def _stage_ends(shapes: dict) -> list[str]:
    """The last module to finish at each spatial resolution (above 1x1) but the final one."""
    ends: dict[tuple, str] = {}
    for name, shape in shapes.items():  # in the order the modules finished
        if len(shape) == 4 and shape[2] * shape[3] > 1:
            ends.pop(shape[2:], None)
            ends[shape[2:]] = name
    return list(ends.values())[:-1]


def _head(cin: int, hidden: int, classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 3, 2, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, classes))
