"""The model zoo and checkpoint loading, below both the gate and the driver
(a teacher is often a finished run). `zoo`: SmallCNN and CIFAR ResNets by
name and width; `checkpoint`: safe loading, a run's model; `structure`: the
shape a pruned checkpoint was saved with."""
from .checkpoint import (
           MODEL_FILE,
           check_arch,
           load_checkpoint,
           load_model,
           load_run_model,
)
from .structure import restore_structure
from .zoo import MODELS, ResNetCIFAR, SmallCNN, build_model, model_arch, resnet_cifar

__all__ = ["MODELS", "MODEL_FILE", "ResNetCIFAR", "SmallCNN", "build_model", "check_arch", "load_checkpoint",
           "load_model", "load_run_model", "model_arch", "resnet_cifar", "restore_structure"]
