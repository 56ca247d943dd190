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
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Metric:
    """A teacher score, higher = easier, as a registered object.

    Attributes:
        name: what `TeacherGate(metric=...)` and `--gate-metric` call it.
        lowest: the lowest value it can take (the gate's "hardest" fill).
        fn: (log-probabilities (N, C), labels (N,), clean log-probabilities
            (N, C) or None) -> float32 (N,) scores.
        needs_clean: the score compares with the teacher on the clean view.
    """

    name: str
    lowest: float
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    needs_clean: bool = False


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric (one call in one new file is all a new metric needs)."""
    if not isinstance(metric, Metric):
        raise TypeError(f"register takes a Metric, got {type(metric).__name__}")
    REGISTRY[metric.name] = metric
    return metric


def _p_true(logp, labels, _):
    return logp.exp().gather(1, labels.to(logp.device).long().view(-1, 1)).squeeze(1)


def _margin(logp, labels, _):
    p = logp.exp()
    labels = labels.to(p.device).long().view(-1, 1)
    return p.gather(1, labels).squeeze(1) - p.scatter(1, labels, -1.0).amax(1)


def _entropy(logp, labels, _):
    classes = logp.shape[1]
    if classes < 2:
        return torch.ones(len(logp), device=logp.device)
    entropy = -(logp.exp() * logp).sum(1)
    return (1.0 - entropy / math.log(classes)).clamp(0.0, 1.0)


def _kl(logp, labels, logq):
    return torch.exp(-(logq.exp() * (logq - logp)).sum(1).clamp_min(0.0))


for _m in (Metric("p_true", 0.0, _p_true), Metric("margin", -1.0, _margin), Metric("entropy", 0.0, _entropy),
           Metric("kl", 0.0, _kl, needs_clean=True)):
    register(_m)
METRICS = tuple(REGISTRY)  # the built-in names, for command-line choices
LOWEST = {m.name: m.lowest for m in REGISTRY.values()}


def check_metric(metric: str) -> str:
    if metric not in REGISTRY:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(REGISTRY)}")
    return metric


def score(metric: str, logits: torch.Tensor, labels: torch.Tensor, clean_logits: torch.Tensor | None = None):
    """float32 (N,) scores (higher = easier) on the logits' device.

    Args:
        metric: a registered metric's name (built in: METRICS).
        logits: (N, C) teacher logits of the augmented views.
        labels: (N,) int64 labels.
        clean_logits: (N, C) teacher logits of the clean views (metrics with
            needs_clean, e.g. "kl").
    """
    m = REGISTRY[check_metric(metric)]
    logp = F.log_softmax(logits.float(), dim=1)
    if m.needs_clean:
        if clean_logits is None:
            raise ValueError(f"metric {metric!r} needs the teacher's logits on the clean views (clean_logits=)")
        return m.fn(logp, labels, F.log_softmax(clean_logits.float(), dim=1))
    return m.fn(logp, labels, None)
