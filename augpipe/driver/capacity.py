"""`CapacitySchedule`: the magnitude a model of a given capacity should train with.

Finding A of Yu, Zhang & Ma (2023): the best augmentation magnitude grows
with model size, so a model that pruning shrinks should see a lower
magnitude. Capacity is the number of non-zero parameters (or, given
`dense_params`, its ratio to the dense model's).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..core.ops import MAX_MAGNITUDE, check_magnitude

KINDS = ("log-linear", "linear")


class CapacitySchedule:
    """Maps capacity to a magnitude in [m_min, m_max].

    Two forms:
      - "log-linear" (`fit`): M(c) = clip(a + b * log10(c), m_min, m_max), c the
        non-zero parameter count; a, b fitted by least squares on
        (log10 params, best M) per model size.
      - "linear" (`linear`): M(c) = m_min + (m_dense - m_min) * c / dense_params,
        linear in the capacity ratio (1 for the dense model, 0 for nothing left).

    Call it with a parameter count (> 1), a capacity ratio in [0, 1] (needs
    `dense_params`) or an nn.Module (its non-zero parameters are counted).
    """

    def __init__(self, kind: str, a: float, b: float, m_min: float = 0.0, m_max: float = MAX_MAGNITUDE,
                 dense_params: int | None = None, points: list | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown CapacitySchedule kind {kind!r}; choose one of {KINDS}")
        self.kind, self.a, self.b = kind, float(a), float(b)
        self.m_min, self.m_max = check_magnitude(m_min, name="m_min"), check_magnitude(m_max, name="m_max")
        if self.m_min > self.m_max:
            raise ValueError(f"m_min={m_min} is above m_max={m_max}")
        if dense_params is not None and (isinstance(dense_params, bool) or not dense_params > 0):
            raise ValueError(f"dense_params must be a positive parameter count, got {dense_params!r}")
        if kind == "linear" and dense_params is None:
            raise ValueError("a linear CapacitySchedule needs dense_params (the dense model's parameter count)")
        self.dense_params = None if dense_params is None else int(dense_params)
        self.points = [list(p) for p in points or []]  # (params, best M) the fit used

    @classmethod
    def fit(cls, results, m_min: float = 0.0, m_max: float = MAX_MAGNITUDE, dense_params: int | None = None):
        """Fit M(c) = clip(a + b * log10(c)) to a sweep.

        Args:
            results: the best magnitude per model size, as {params: best_M} or
                [(params, best_M), ...]; or raw sweep records, dicts with
                "params", "magnitude" and "accuracy" (seeds are averaged per
                (params, magnitude), then the best magnitude per size is taken).
            m_min, m_max: clip range (default 0..30).
            dense_params: optional, lets the schedule take capacity ratios.
        """
        points = best_magnitudes(results)
        if not points:
            raise ValueError("CapacitySchedule.fit needs at least one (params, best magnitude) point")
        x = np.log10([p for p, _ in points])
        y = np.array([m for _, m in points], dtype=np.float64)
        if len(set(x.tolist())) < 2:
            a, b = float(y.mean()), 0.0  # one size: a constant
        else:
            b, a = np.polyfit(x, y, 1)
        return cls("log-linear", a, b, m_min, m_max, dense_params, points)

    @classmethod
    def linear(cls, m_dense: float, m_min: float = 0.0, dense_params: int | None = None, m_max: float | None = None):
        """M = m_min + (m_dense - m_min) * capacity ratio: m_dense for the dense
        model, m_min when nothing is left. `dense_params` is required."""
        m_dense = check_magnitude(m_dense, name="m_dense")
        return cls("linear", m_min, m_dense - m_min, m_min, max(m_dense, m_min) if m_max is None else m_max,
                   dense_params)

    def __call__(self, capacity) -> float:
        """The magnitude for `capacity`: a parameter count, a ratio in [0, 1], or a model."""
        params = self._params(capacity)
        if self.kind == "linear":
            value = self.a + self.b * params / self.dense_params
        else:
            value = self.a + self.b * math.log10(max(params, 1.0))
        return float(min(max(value, self.m_min), self.m_max))

    def _params(self, capacity) -> float:
        if hasattr(capacity, "parameters"):
            from .prune import count_params

            return float(count_params(capacity, nonzero=True))
        if isinstance(capacity, bool) or not isinstance(capacity, (int, float, np.integer, np.floating)) \
                or not capacity >= 0 or math.isinf(capacity):
            raise ValueError(f"capacity must be a parameter count, a ratio in [0, 1] or a model, got {capacity!r}")
        if capacity <= 1:
            if self.dense_params is None:
                raise ValueError(f"capacity {capacity} looks like a ratio; this schedule has no dense_params "
                                 "to turn it into a parameter count (pass a count, or dense_params=)")
            return float(capacity) * self.dense_params
        return float(capacity)

    def describe(self) -> str:
        if self.kind == "linear":
            return (f"M(c) = clip({self.a:.3g} + {self.b:.3g} * c / {self.dense_params}, "
                    f"{self.m_min:g}, {self.m_max:g})")
        return f"M(c) = clip({self.a:.3g} + {self.b:.3g} * log10(c), {self.m_min:g}, {self.m_max:g})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "a": self.a, "b": self.b, "m_min": self.m_min, "m_max": self.m_max,
                "dense_params": self.dense_params, "points": self.points, "form": self.describe()}

    @classmethod
    def from_dict(cls, d: dict) -> "CapacitySchedule":
        return cls(d["kind"], d["a"], d["b"], d.get("m_min", 0.0), d.get("m_max", MAX_MAGNITUDE),
                   d.get("dense_params"), d.get("points"))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "CapacitySchedule":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a CapacitySchedule JSON file ({err})") from None

    def __repr__(self) -> str:
        return f"CapacitySchedule({self.describe()})"


def best_magnitudes(results) -> list[tuple[int, float]]:
    """[(params, best M)] sorted by size, from {params: M}, pairs, or raw records
    ({"params", "magnitude", "accuracy"}; seeds averaged, ties to the lower M)."""
    if isinstance(results, dict):
        return sorted((int(p), float(m)) for p, m in results.items())
    results = list(results)
    if not results or not isinstance(results[0], dict):
        return sorted((int(p), float(m)) for p, m in results)
    acc = defaultdict(list)
    for r in results:
        try:
            acc[int(r["params"]), float(r["magnitude"])].append(float(r["accuracy"]))
        except KeyError as err:
            raise ValueError(f"sweep record {r} lacks {err}; records need params, magnitude, accuracy") from None
    best: dict[int, tuple[float, float]] = {}
    for (params, m), accs in sorted(acc.items()):
        mean = float(np.mean(accs))
        if params not in best or mean > best[params][1]:
            best[params] = (m, mean)
    return [(p, m) for p, (m, _) in sorted(best.items())]
