"""Losses: cross-entropy or knowledge distillation per sample, and the
per-sample weighted reduction.

With per-sample weights w (a teacher gate's `batch.weight`) the loss is
`(w * per_sample_loss).sum() / len(w)`: a down-weighted hard sample counts
less and the others are not inflated to compensate; w = 1 is the plain mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.checks import check_finite, check_positive


@dataclass(frozen=True)
class KD:
    """Knowledge distillation: loss = ce_weight * CE(student, y)
    + kd_weight * T^2 * KL(softmax(teacher / T) || softmax(student / T)),
    the KL summed over classes and averaged over the batch (batchmean)."""

    temperature: float = 4.0
    kd_weight: float = 0.9
    ce_weight: float = 0.1

    def __post_init__(self):
        check_positive("KD temperature", self.temperature)
        check_finite("kd_weight", self.kd_weight, 0)
        check_finite("ce_weight", self.ce_weight, 0)


def per_sample_loss(logits, labels, teacher_logits=None, kd: KD | None = None, targets=None,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per sample, or the KD loss per sample when teacher logits are given.

    `targets`: soft targets (N, C) of a mixing loader (`batch.targets`, already smoothed), used
    instead of `labels` in the cross-entropy; `label_smoothing` smooths hard labels (timm's --smoothing)."""
    if targets is not None:
        ce = F.cross_entropy(logits.float(), targets.float(), reduction="none")
    else:
        ce = F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=label_smoothing)
    if teacher_logits is None:
        return ce
    kd = kd or KD()
    t = kd.temperature
    kl = F.kl_div(F.log_softmax(logits.float() / t, 1), F.log_softmax(teacher_logits.float() / t, 1),
                  reduction="none", log_target=True).sum(1)
    return kd.ce_weight * ce + kd.kd_weight * t * t * kl


def reduce_loss(losses: torch.Tensor, weight=None) -> torch.Tensor:
    """`(w * losses).sum() / len(w)`; the mean without weights. An empty batch
    (a gate dropped every sample) gives a zero loss that still has a graph."""
    if losses.numel() == 0:
        return losses.sum()
    if weight is None:
        return losses.mean()
    return (weight.to(losses.device, losses.dtype) * losses).sum() / len(losses)
