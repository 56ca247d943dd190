"""The statistics PLAN.md pre-registers: paired and Welch t-tests with their
correct degrees of freedom, 95 % intervals, Holm's correction, a seed bootstrap
of a quadratic vertex. Differences are in accuracy points (fractions x 100).

Small on purpose and tested against scipy (tests/test_paper_stats.py).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as st

POINTS = 100.0  # accuracies are fractions; every difference is reported in points


def paired(a, b, confidence: float = 0.95) -> dict:
    """a − b paired by position (seed): mean difference in points, its
    t-interval, t, df = n − 1, two-sided p, and the per-seed differences."""
    d = (np.asarray(a, float) - np.asarray(b, float)) * POINTS
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"a paired test needs two equal-length sequences of >= 2 values, got {len(d)}")
    n, mean = len(d), float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n)
    return _t_result(mean, se, n - 1, confidence) | {"n": n, "per_seed": [float(x) for x in d], "test": "paired t"}


def welch(a, b, confidence: float = 0.95) -> dict:
    """mean(a) − mean(b) for unpaired arms: Welch's t with Welch–Satterthwaite df."""
    a, b = np.asarray(a, float) * POINTS, np.asarray(b, float) * POINTS
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Welch's test needs >= 2 values per arm, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else float(len(a) + len(b) - 2)
    return _t_result(float(a.mean() - b.mean()), se, df, confidence) | {"n": [len(a), len(b)], "test": "Welch t"}


def _t_result(mean: float, se: float, df: float, confidence: float) -> dict:
    if se == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0 else 0.0
        half = 0.0
    else:
        t = mean / se
        p = float(2 * st.t.sf(abs(t), df))
        half = float(st.t.ppf(0.5 + confidence / 2, df)) * se
    return {"diff": mean, "ci": [mean - half, mean + half], "t": t, "df": float(df), "p": p}


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    m, adjusted, running = len(p), np.empty(len(p)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def vertex(ms, acc) -> float:
    """The magnitude at the top of a least-squares quadratic acc(M), clipped to
    [0, 30]; a curve opening upwards (no top) gives the better end."""
    ms, acc = np.asarray(ms, float), np.asarray(acc, float)
    c2, c1, _ = np.polyfit(ms, acc, 2)
    if c2 >= 0:
        return float(ms[0] if acc[0] >= acc[-1] else ms[-1])
    return float(np.clip(-c1 / (2 * c2), 0.0, 30.0))


def vertex_bootstrap(ms, acc_by_seed, resamples: int = 2000, seed: int = 0) -> dict:
    """Vertex of the seed-mean curve and a 95 % bootstrap interval over seeds.
    `acc_by_seed`: array (magnitudes, seeds)."""
    acc = np.asarray(acc_by_seed, float)
    rng = np.random.default_rng(seed)
    k = acc.shape[1]
    picks = [vertex(ms, acc[:, rng.integers(0, k, k)].mean(1)) for _ in range(resamples)]
    return {"vertex": vertex(ms, acc.mean(1)), "ci": [float(np.percentile(picks, 2.5)),
                                                       float(np.percentile(picks, 97.5))]}


def spearman_bootstrap(x, y, clusters, resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Spearman's rho of (x, y) and a percentile bootstrap interval that resamples
    whole clusters (here: validation samples, each carrying its views at every M),
    so pairs sharing a sample are not counted as independent evidence."""
    x, y, clusters = (np.asarray(v).ravel() for v in (x, y, clusters))
    if not len(x) == len(y) == len(clusters) or len(x) < 3:
        raise ValueError(f"x, y and clusters need one equal length >= 3, got {len(x)}, {len(y)}, {len(clusters)}")
    ids, members = np.unique(clusters, return_inverse=True)
    if len(ids) < 2:
        raise ValueError("a cluster bootstrap needs >= 2 clusters")
    order = np.argsort(members, kind="stable")
    starts = np.searchsorted(members[order], np.arange(len(ids) + 1))
    rng = np.random.default_rng(seed)

    def rho(idx):
        return float(st.pearsonr(st.rankdata(x[idx]), st.rankdata(y[idx]))[0])

    picks = []
    for _ in range(resamples):
        chosen = rng.integers(0, len(ids), len(ids))
        idx = np.concatenate([order[starts[c]:starts[c + 1]] for c in chosen])
        picks.append(rho(idx))
    tail = 100 * (1 - confidence) / 2
    return {"rho": rho(np.arange(len(x))), "ci": [float(np.percentile(picks, tail)),
                                                  float(np.percentile(picks, 100 - tail))],
            "clusters": int(len(ids)), "n": int(len(x)), "resamples": resamples}


def spearman_exact(x, y) -> dict:
    """Spearman's rho of a few points (A2: one vertex per size) with its exact two-sided permutation p
    over every ordering of y. scipy's default p comes from a t approximation that is wrong at this n
    (rho = 1 over 4 points gives p = 0, where 2 of the 24 orderings reach |rho| = 1: p = 0.083)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n != len(y) or n < 3:
        raise ValueError(f"x and y need one equal length >= 3, got {n} and {len(y)}")
    if math.factorial(n) > 100_000:
        raise ValueError(f"an exact permutation test over {n}! orderings is too large; use the asymptotic p")
    res = st.permutation_test((y,), lambda v: st.spearmanr(x, v)[0], permutation_type="pairings",
                              n_resamples=math.inf, alternative="two-sided")
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": n,
            "p_min": 2 / math.factorial(n)}  # the smallest p n distinct points can give: rho = +1 and -1


def verdict(test: dict, adjusted_p: float, predicted_sign: int = 1, alpha: float = 0.05) -> str:
    """PLAN.md's words for a primary contrast whose precondition holds."""
    if adjusted_p < alpha and math.copysign(1, test["diff"]) == predicted_sign and test["diff"] != 0:
        return "reproduced in an analogous setting"
    return "not reproduced"


def settled(test: dict, predicted_sign: int = 1, alpha: float = 0.05) -> str | None:
    """A primary's verdict before the rest of its Holm family exists, where one is already fixed: Holm never
    adjusts a p-value below its raw value, so a contrast that fails unadjusted is "not reproduced" whatever the
    other members show. None where the verdict must wait for the family."""
    raw = verdict(test, test["p"], predicted_sign, alpha)  # the unadjusted p: the lowest Holm can give
    return None if raw == "reproduced in an analogous setting" else raw


def partial(n: int, planned: int) -> str | None:
    """A contrast over fewer seeds than planned is reported, but gets no verdict: the words that say so."""
    return f"partial: {n} of {planned} seeds, no verdict" if n < planned else None


def fmt(test: dict, adjusted_p: float | None = None) -> str:
    lo, hi = test["ci"]
    text = (f"{test['diff']:+.2f} points, 95 % CI [{lo:+.2f}, {hi:+.2f}], t = {test['t']:.2f}, "
            f"df = {test['df']:.1f}, p = {test['p']:.3g}")
    return text + (f", Holm p = {adjusted_p:.3g}" if adjusted_p is not None else "")
