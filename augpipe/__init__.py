"""augpipe: capacity-aware image augmentation at loader speed.

    import augpipe as ap
    loader = ap.Loader("fashion-mnist", batch_size=256, policy=ap.RandAugment(2), magnitude=9)
    for images, labels in loader: ...
    loader.magnitude = 5.0   # live, shared with every worker

`import augpipe` loads the core only: the backends' libraries (FFCV, DALI),
the teacher gating (`augpipe.gate`) and the driver (`augpipe.driver`) are
imported when first used (`ap.TeacherGate`, `ap.driver.train`, ...).
"""
import importlib

from .batch import Batch
from .contract import BackendContext, Request
from .data import ArraySource, DecodeError, FashionMNIST, FolderSource, Source, open_source
from .knob import Knob
from .loader import Loader
from .ops import MAX_MAGNITUDE, OP_IDS, OPS, check_magnitude, op_params
from .plan import Plan, make_plan
from .policy import (
    AutoAugment, CenterCrop, Crop, FullImage, Identity, Policy, RandAugment, RandomCrop, RandomResizedCrop,
    TrivialAugment, get_policy,
)

__version__ = "0.2.0"
__all__ = [
    "ArraySource", "AutoAugment", "BackendContext", "Batch", "CapFeedback", "CenterCrop", "Crop", "DecodeError",
    "DifficultyTable", "FashionMNIST", "FolderSource", "FullImage", "Identity", "Knob", "Loader", "MAX_MAGNITUDE",
    "OPS", "OP_IDS", "Plan", "Policy", "RandAugment", "RandomCrop", "RandomResizedCrop", "Request", "Source",
    "TeacherGate", "TrivialAugment", "check_magnitude", "get_policy", "limits_from_report", "make_plan",
    "op_params", "open_source",
]

# Names served lazily, so that `import augpipe` stays the core only.
_LAZY = {"TeacherGate": "augpipe.gate", "CapFeedback": "augpipe.gate", "DifficultyTable": "augpipe.gate",
         "limits_from_report": "augpipe.gate", "gate": "augpipe.gate", "driver": "augpipe.driver",
         "integrations": "augpipe.integrations"}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
    raise AttributeError(f"module 'augpipe' has no attribute {name!r}")
