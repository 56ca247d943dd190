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

from . import backends
from ._version import __version__
from .core.batch import Batch
from .core.dispatch import op_params
from .core.knob import Knob
from .core.mixing import CutMix, Mixing, MixUp, RandomErasing
from .core.ops import MAX_MAGNITUDE, OP_IDS, OPS, check_magnitude
from .core.plan import Plan, make_plan
from .core.policy import (
    AutoAugment,
    CenterCrop,
    Crop,
    FullImage,
    Identity,
    Policy,
    RandAugment,
    RandomCrop,
    RandomResizedCrop,
    TrivialAugment,
    get_policy,
)
from .engine.contract import BackendContext, Request
from .loader import Loader
from .sources import (
    ArraySource,
    DecodeError,
    FashionMNIST,
    FolderSource,
    LitdataSource,
    Source,
    open_source,
)

__all__ = [
    "ArraySource", "AutoAugment", "BackendContext", "Batch", "CapFeedback", "CenterCrop", "Crop", "CutMix",
    "DecodeError", "DifficultyTable", "FashionMNIST", "FolderSource", "FullImage", "Identity", "Knob", "LitdataSource", "Loader",
    "MAX_MAGNITUDE", "MixUp", "Mixing", "OPS", "OP_IDS", "Plan", "Policy", "RandAugment", "RandomCrop",
    "RandomErasing", "RandomGate", "RandomResizedCrop", "Request",
    "Source", "TeacherGate", "TrivialAugment", "__version__", "backends", "check_magnitude", "get_policy",
    "limits_from_report", "make_plan", "op_params", "open_source",
]

# Names served lazily, so that `import augpipe` stays the core only.
_LAZY = {"TeacherGate": "augpipe.gate", "RandomGate": "augpipe.gate", "CapFeedback": "augpipe.gate",
         "DifficultyTable": "augpipe.gate", "limits_from_report": "augpipe.gate", "gate": "augpipe.gate", "driver": "augpipe.driver",
         "integrations": "augpipe.integrations"}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
    raise AttributeError(f"module 'augpipe' has no attribute {name!r}")
