"""augpipe: capacity-aware image augmentation at loader speed.

    import augpipe as ap
    loader = ap.Loader("fashion-mnist", batch_size=256, policy=ap.RandAugment(2), magnitude=9)
    for images, labels in loader: ...
    loader.magnitude = 5.0   # live, shared with every worker
"""
from .batch import Batch
from .data import ArraySource, DecodeError, FashionMNIST, FolderSource, Source, open_source
from .knob import Knob
from .loader import Loader
from .ops import MAX_MAGNITUDE, OP_IDS, OPS, check_magnitude, op_params
from .plan import Plan, make_plan
from .policy import (
    AutoAugment, CenterCrop, Crop, FullImage, Identity, Policy, RandAugment, RandomCrop, RandomResizedCrop,
    TrivialAugment, get_policy,
)

__version__ = "0.1.0"
__all__ = [
    "ArraySource", "AutoAugment", "Batch", "CenterCrop", "Crop", "DecodeError", "FashionMNIST", "FolderSource",
    "FullImage", "Identity", "Knob", "Loader", "MAX_MAGNITUDE", "OPS", "OP_IDS", "Plan", "Policy", "RandAugment",
    "RandomCrop", "RandomResizedCrop", "Source", "TrivialAugment", "check_magnitude", "get_policy", "make_plan",
    "op_params", "open_source",
]
