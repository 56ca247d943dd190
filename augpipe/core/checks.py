"""Argument checks shared by every public entry point: one place, so that the
same bad value gets the same words wherever it is passed. Each raises
ValueError (TypeError for a wrong kind of object) naming the argument, the
range it takes, and the value it got."""
from __future__ import annotations

import numpy as np

SEED_MAX = 2 ** 63 - 1  # seeds are int64 inside the compiled planner


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high] (either bound optional); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int{_range(low, high)}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an int{_range(low, high)}, got {value!r}")
    return int(value)


def check_probability(name: str, value) -> float:
    """`value` as a float in [0, 1]; bools and NaN are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value, what: str = "a number") -> float:
    """`value` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be {what} > 0, got {value!r}")
    return float(value)


def check_finite(name: str, value, low: float | None = None, note: str = "") -> float:
    """`value` as a finite float, >= low when given; bools and NaN are refused. `note` follows the range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not np.isfinite(value) or (low is not None and value < low):
        raise ValueError(f"{name} must be a finite number{_range(low, None)}{note}, got {value!r}")
    return float(value)


def check_seed(value, name: str = "seed") -> int:
    return check_int(name, value, 0, SEED_MAX)


def check_size(value, name: str = "size") -> tuple[int, int]:
    """An output side: a positive int, or an (height, width) pair of them."""
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        h, w = pair
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive int or an (height, width) pair, got {value!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int or an (height, width) pair, got {value!r}")
    return int(h), int(w)


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""
