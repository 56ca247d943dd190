"""Models for the experiments: a CIFAR-style ResNet family and a small CNN.

Every driver function takes any `nn.Module`; these two families exist so the
paper's experiments (optimal magnitude against model size) span a wide range
of sizes with one knob, the width multiplier.

Parameters at 10 classes, 1 input channel (`count_params(build_model(...))`):

| width | cnn     | resnet20  | resnet32  | resnet56  |
|------:|--------:|----------:|----------:|----------:|
|  0.25 |   2,294 |    17,462 |    29,782 |    54,422 |
|   0.5 |   8,610 |    68,642 |   117,474 |   215,138 |
|     1 |  33,338 |   272,186 |   466,618 |   855,482 |
|     2 | 131,178 | 1,084,010 | 1,859,946 | 3,411,818 |

CNN widths 0.25..2 span 57x, ResNet-20 widths 0.25..2 span 62x.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.checks import check_positive

MODELS = ("resnet20", "resnet32", "resnet56", "cnn")
BASE_CHANNELS = 16


def _channels(width: float) -> int:
    check_positive("width", width)
    return max(1, round(BASE_CHANNELS * width))


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn plus shortcut, then relu. The shortcut is a
    1x1 conv + bn (He et al.'s option B) where the shape changes, so that
    Torch-Pruning can follow the channel dependency through it."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """He et al. (2016) CIFAR ResNet: a 3x3 stem, three stages of n basic
    blocks at c, 2c, 4c channels (stride 2 between stages), global average
    pooling and a linear classifier. depth = 6n + 2."""

    def __init__(self, depth: int = 20, width: float = 1.0, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"ResNet depth must be 6n + 2 with n >= 1 (20, 32, 56, ...), got {depth!r}")
        _check_io(in_channels, num_classes)
        c = _channels(width)
        n = (depth - 2) // 6
        self.stem = nn.Sequential(*_conv_bn(in_channels, c), nn.ReLU(inplace=True))
        blocks, cin = [], c
        for stage, cout in enumerate((c, 2 * c, 4 * c)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layer1, self.layer2, self.layer3 = (nn.Sequential(*blocks[k * n:(k + 1) * n]) for k in range(3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.arch = f"resnet{depth}(width={width:g}, in_channels={in_channels}, num_classes={num_classes})"
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class SmallCNN(nn.Module):
    """Four conv-bn-relu blocks (w, 2w, 2w, 4w channels; 2x2 max-pool after
    the 1st and 2nd, so only the first block runs at full resolution: a
    third of the compute of pooling later, for the same parameters), global
    average pooling and a linear classifier.

    Args:
        width: channels of the first block, >= 1 (default 16).
        in_channels: image channels (default 1).
        num_classes: outputs (default 10).
    """

    def __init__(self, width: int = 16, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"SmallCNN width must be an int >= 1 (channels of the first block), got {width!r}")
        _check_io(in_channels, num_classes)
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 2 * w), nn.ReLU(inplace=True),
            *_conv_bn(2 * w, 4 * w), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)
        self.arch = f"SmallCNN(width={width}, in_channels={in_channels}, num_classes={num_classes})"
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def resnet_cifar(depth: int = 20, width: float = 1.0, in_channels: int = 1, num_classes: int = 10) -> ResNetCIFAR:
    """A CIFAR ResNet of `depth` (6n + 2) with 16 * width base channels (rounded, >= 1)."""
    return ResNetCIFAR(depth, width, in_channels, num_classes)


def build_model(name: str, width: float = 1.0, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """A model from the registry.

    Args:
        name: "resnet20", "resnet32", "resnet56" or "cnn".
        width: multiplier of the family's 16 base channels (> 0; cnn: first
            block has round(16 * width) channels).
        in_channels: image channels.
        num_classes: outputs.

    The result carries `.arch`, the string checkpoints are matched against.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "cnn":
        model = SmallCNN(_channels(width), in_channels, num_classes)
    else:
        model = resnet_cifar(int(name[len("resnet"):]), width, in_channels, num_classes)
    model.arch = f"{name}(width={width:g}, in_channels={in_channels}, num_classes={num_classes})"
    return model


def model_arch(model: nn.Module) -> str:
    """What a checkpoint records about the model: `.arch` if set, else the class."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    arch = getattr(model, "arch", None)
    return arch if isinstance(arch, str) else f"{type(model).__module__}.{type(model).__qualname__}"


def _check_io(in_channels: int, num_classes: int) -> None:
    for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
