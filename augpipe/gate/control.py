"""`RandomGate`: the control a teacher gate must beat.

A teacher gate that falls back on, say, 40 % of an epoch's samples changes two
things at once: *which* samples are weakened (the teacher's choice) and *how
many* (a lower mean magnitude). `RandomGate` keeps the second and removes the
first: it applies the same action to samples chosen at random, at a given rate
per epoch, e.g. the per-epoch rate a teacher-gated run recorded. A teacher gate
that does no better than this control at the same rate has shown nothing about
difficulty.

Each sample is chosen independently with probability `rate(epoch)`, from a
counter-based stream keyed by (seed, epoch, dataset index): deterministic, the
same on any batch size, worker count or resume, and independent of the loader's
own augmentation stream (a separate seed domain).
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_int
from ..kernels.rng import uniform_by_index
from .online import TeacherGate

_DOMAIN = 0x52414E44  # "RAND": keeps these draws apart from the planner's streams of the same seed


class RandomGate(TeacherGate):
    """Gate samples at random at a set rate (see the module docstring).

    Args:
        rate: the share of samples gated, in [0, 1]: one number for every
            epoch, or {epoch: rate} (epochs not listed: the last listed
            epoch's rate), e.g. from a teacher-gated run's history.
        action: "fallback" (default), "drop" or "reweight" (weight 0.5 for the
            chosen samples: there is no score to scale by).
        fallback: the magnitude chosen samples fall back to, or "half".
        seed: the stream's seed (default 0).

    Batches carry `difficulty` (the uniform draw, for inspection), `gated` and
    `weight` as a TeacherGate's do; `per_epoch` counts as a TeacherGate's.
    """

    def __init__(self, rate, action: str = "fallback", fallback=0.0, seed: int = 0):
        self.rates = _rates(rate)
        self.seed = check_int("seed", seed, 0)
        # no teacher and no threshold: the draws and the rate decide (score, _hard below); the actions,
        # their checks and the counts are TeacherGate's own
        self.metric, self.threshold, self.keep_ratio, self.teacher = "p_true", None, None, None
        self._init_actions(action, fallback, None)
        self._epoch = 0

    def bind(self, loader) -> None:
        """Nothing to check: no teacher."""

    def rate(self, epoch: int) -> float:
        known = [e for e in self.rates if e <= epoch]
        return self.rates[max(known)] if known else self.rates[min(self.rates)]

    def score(self, batch, loader) -> np.ndarray:
        """Uniform draws in [0, 1), one per sample, keyed by (seed, epoch, index)."""
        self._epoch = int(batch.epoch)
        idx = batch.index.cpu().numpy().astype(np.int64)
        return uniform_by_index(np.uint64(self.seed ^ _DOMAIN), np.uint64(self._epoch), idx, np.uint64(0)) \
            .astype(np.float32)

    def _hard(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        # "reweight" scales by (score - lowest) / (t - lowest) with lowest 0: t = 2 * draw gives 0.5 on average
        # and, below, a fixed 0.5 is used instead (the draw carries no meaning).
        return scores < self.rate(self._epoch), 1.0

    def __call__(self, batch, loader):
        out = super().__call__(batch, loader)
        if self.action == "reweight" and out.gated is not None:
            out.weight = out.weight.clone()
            out.weight[out.gated] = 0.5
        return out

    def __repr__(self) -> str:
        rates = ", ".join(f"{e}: {r:.3g}" for e, r in sorted(self.rates.items()))
        return f"RandomGate(rate={{{rates}}}, action={self.action!r}, fallback={self.fallback!r}, seed={self.seed})"


def rates_from_history(history: list[dict]) -> dict[int, float]:
    """{epoch: share gated} from a gated `augpipe train` run's history
    (report.json "history": each epoch's "gated" over its samples)."""
    out = {}
    for record in history:
        if "gated" not in record or not record.get("scored"):
            raise ValueError("the history has no per-epoch 'gated' and 'scored' counts: pass the report.json "
                             "of a gated `augpipe train` run")
        out[int(record["epoch"])] = record["gated"] / record["scored"]
    if not out:
        raise ValueError("the history is empty")
    return out


def _rates(rate) -> dict[int, float]:
    rates = rate if isinstance(rate, dict) else {0: rate}
    if not rates:
        raise ValueError("rate must be a number in [0, 1] or a non-empty {epoch: rate} dict")
    out = {}
    for epoch, r in rates.items():
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {r!r} (epoch {epoch})")
        out[int(epoch)] = float(r)
    return out
