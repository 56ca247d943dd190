"""Per-sample difficulty scores from teacher logits. Higher = easier, always.

Every metric is exposed as a score where a HIGHER value means an EASIER
sample, so "hard = score < threshold" holds for all of them:

| metric    | score                                              | range   |
|-----------|----------------------------------------------------|---------|
| "p_true"  | p[y], the teacher's probability of the label       | [0, 1]  |
| "margin"  | p[y] - max_{k != y} p[k]                           | [-1, 1] |
| "entropy" | certainty 1 - H(p) / log C (H in nats, C classes)  | [0, 1]  |
| "kl"      | exp(-KL(p_clean || p)), p_clean the teacher on the | (0, 1]  |
|           | same sample rendered at magnitude 0                |         |

p = softmax(logits) of the augmented view. "kl" needs the clean view's
logits (one extra forward); it ignores the label.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

METRICS = ("p_true", "margin", "entropy", "kl")
LOWEST = {"p_true": 0.0, "margin": -1.0, "entropy": 0.0, "kl": 0.0}  # each score's lowest possible value


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def score(metric: str, logits: torch.Tensor, labels: torch.Tensor, clean_logits: torch.Tensor | None = None):
    """float32 (N,) scores (higher = easier) on the logits' device.

    Args:
        metric: one of METRICS.
        logits: (N, C) teacher logits of the augmented views.
        labels: (N,) int64 labels.
        clean_logits: (N, C) teacher logits of the clean views ("kl" only).
    """
    check_metric(metric)
    logp = F.log_softmax(logits.float(), dim=1)
    if metric == "kl":
        if clean_logits is None:
            raise ValueError("metric 'kl' needs the teacher's logits on the clean views (clean_logits=)")
        logq = F.log_softmax(clean_logits.float(), dim=1)
        kl = (logq.exp() * (logq - logp)).sum(1).clamp_min(0.0)
        return torch.exp(-kl)
    p = logp.exp()
    if metric == "entropy":
        classes = logits.shape[1]
        if classes < 2:
            return torch.ones(len(p), device=p.device)
        entropy = -(p * logp).sum(1)
        return (1.0 - entropy / math.log(classes)).clamp(0.0, 1.0)
    labels = labels.to(p.device).long().view(-1, 1)
    p_true = p.gather(1, labels).squeeze(1)
    if metric == "p_true":
        return p_true
    others = p.scatter(1, labels, -1.0)
    return p_true - others.amax(1)
