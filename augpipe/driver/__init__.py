"""augpipe.driver: train, prune and distil with a magnitude that follows capacity.

Plain functions over any nn.Module and an augpipe Loader; the CLI
(`augpipe train | prune | sweep`) is a thin layer over them.

    from .. import driver
    model = driver.build_model("resnet20", width=0.5)
    history = driver.train(model, loader, epochs=30, magnitude=9)
    report = driver.prune(model, 0.8)                     # global L1, unstructured
    rounds = driver.iterative_prune(model, loader, target_sparsity=0.9, rounds=5, finetune_epochs=3,
                                    magnitude=driver.CapacitySchedule.linear(9, 0, dense_params=...))
"""
from ..models import (
    MODELS,
    ResNetCIFAR,
    SmallCNN,
    build_model,
    model_arch,
    resnet_cifar,
)
from .auxheads import AuxHeads
from .capacity import CapacitySchedule
from .checkpoint import load_model, save_model
from .losses import KD, per_sample_loss, reduce_loss
from .prune import (
    METHODS,
    PruneReport,
    count_macs,
    count_params,
    mask_digest,
    prune,
    recalibrate_bn,
    restore_structure,
    weight_sparsity,
)
from .recipes import dense_strong_then_weak, iterative_prune
from .train import History, evaluate, train

__all__ = [
    "AuxHeads", "CapacitySchedule", "History", "KD", "METHODS", "MODELS", "PruneReport", "ResNetCIFAR", "SmallCNN",
    "build_model", "count_macs", "count_params", "dense_strong_then_weak", "evaluate", "iterative_prune",
    "load_model", "mask_digest", "model_arch", "per_sample_loss", "prune", "recalibrate_bn", "reduce_loss",
    "resnet_cifar", "restore_structure", "save_model", "train", "weight_sparsity",
]
