"""Experiment 3 of PLAN.md (finding C): the teacher as a judge of difficulty.

    .venv/bin/python benchmarks/paper/c_teacher.py           # train what is missing (resumes), then summarise
    .venv/bin/python benchmarks/paper/c_teacher.py summary   # summarise what has run
    .venv/bin/python benchmarks/paper/c_teacher.py measure   # C2: teacher score vs the student's harm (no training)
    .venv/bin/python benchmarks/paper/c_teacher.py measure-stats  # C2 statistics again from the kept scores

The setting is `cnn2-2k` (PLAN.md, amendment 1): teachers are SmallCNN width 2
trained at M=10 on the fixed 2,000-image split, one per seed (the pilot's
`cnn2-2k/m10-s0` is seed 0's, the same command); students are width 0.25
under M=15. Runs go to $AUGPIPE_RUNS/c/ (default runs/paper2/c/), two at a
time; finished runs are skipped and interrupted ones resume. Results:
benchmarks/paper/results2/c.md and c.json (marked partial until every run is in).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("AUGPIPE_RUNS", str(HERE.parents[1] / "runs" / "paper2"))

import pilot  # noqa: E402  (the regime's settings and runs)
import run  # noqa: E402
import stats  # noqa: E402

RUNS = Path(os.environ["AUGPIPE_RUNS"]) / "c"
OUT = HERE / "results2"
SEEDS = (0, 1, 2, 3, 4)
STRONG, STUDENT, TEACHER_W, TEACHER_M = 15, 0.25, 2, 10
THRESHOLD = "0.5"  # p_true below even odds: the teacher no longer prefers the label
COMMON = ["--train-size", "2000", "--epochs", "150", "--policy", "randaugment", *pilot.SPLIT]


def teacher(seed: int) -> Path:
    return RUNS / f"teacher-s{seed}"  # seed 0's is the pilot's cnn2-2k/m10-s0 command again (amendment 3)


def teacher_runs() -> list[tuple[Path, list[str]]]:
    return [(teacher(s), ["train", "--model", "cnn", "--width", f"{TEACHER_W:g}", "--magnitude", str(TEACHER_M),
                          "--seed", str(s), *COMMON, "--out", str(teacher(s))]) for s in SEEDS]


def student(arm: str, seed: int) -> Path:
    return RUNS / f"{arm}-s{seed}"


def arms(seed: int) -> dict[str, list[str]]:
    t = str(teacher(seed))
    gate = ["--gate", "fallback", "--gate-teacher", t, "--gate-threshold", THRESHOLD, "--gate-fallback", "0"]
    out = {f"ungated-m{m}": ["--magnitude", str(m)] for m in (0, 5, 10, STRONG)}
    out |= {
        "teacher-fallback": ["--magnitude", str(STRONG), *gate],
        # the control: the same action at the teacher arm's per-epoch rate, on samples chosen at random
        "random-fallback": ["--magnitude", str(STRONG), "--gate", "fallback", "--gate-fallback", "0",
                            "--gate-random", str(student("teacher-fallback", seed) / "report.json")],
        "kd": ["--magnitude", str(STRONG), "--teacher", t],
        "kd-teacher-fallback": ["--magnitude", str(STRONG), "--teacher", t, *gate],
        "self-entropy-fallback": ["--magnitude", str(STRONG), "--gate", "fallback", "--gate-teacher", "self",
                                  "--gate-metric", "entropy", "--gate-threshold", THRESHOLD, "--gate-fallback", "0"],
    }
    return out


def student_runs(names) -> list[tuple[Path, list[str]]]:
    return [(student(a, s), ["train", "--model", "cnn", "--width", f"{STUDENT:g}", *args, "--seed", str(s), *COMMON,
                             "--out", str(student(a, s))])
            for s in SEEDS for a, args in arms(s).items() if a in names]


def experiment() -> None:
    run.execute(teacher_runs(), pilot.RECORDS, keep_model=True)  # the students and C2 read the teachers
    first = [a for a in arms(0) if a != "random-fallback"]
    run.execute(student_runs([a for a in first if a != f"ungated-m{STRONG}"]), pilot.RECORDS)
    run.execute(student_runs([f"ungated-m{STRONG}"]), pilot.RECORDS, keep_model=True)  # C2 reads it
    run.execute(student_runs(["random-fallback"]), pilot.RECORDS)  # needs the teacher arm's per-epoch rates
    summarise()


def _report(path: Path) -> dict | None:
    return run.read_report(path, pilot.RECORDS)


def summarise() -> dict:
    names = list(arms(0))
    val = {a: {s: r["val"]["accuracy"] for s in SEEDS if (r := _report(student(a, s)))} for a in names}
    test = {a: {s: r["test"]["accuracy"] for s in SEEDS if (r := _report(student(a, s)))} for a in names}
    teachers = {s: r["val"]["accuracy"] for s in SEEDS if (r := _report(teacher(s)))}
    runs = []
    for a in names:
        for s in SEEDS:
            r = _report(student(a, s))
            if r is not None:
                g = r.get("gate", {})
                runs.append({"arm": a, "seed": s, "split_seed": 0, "val": r["val"]["accuracy"],
                             "test": r["test"]["accuracy"], "train_clean": r["train_clean"]["accuracy"],
                             "gap": r["train_val_gap"], "gated_share": g["gated"] / g["samples"] if g.get("samples")
                             else None, "wall_s_total": r["wall_s_total"], "cpu": r["cpu"],
                             "command": r["command"].replace(f"{run.ROOT}/", "")})
    lines = ["# Finding C: the teacher as a judge of difficulty (PLAN.md, experiment 3)", "",
             "`.venv/bin/python benchmarks/paper/c_teacher.py` — student SmallCNN width 0.25 under RandAugment "
             f"M={STRONG}, teacher width 2 trained at M={TEACHER_M}, one teacher per seed; 2,000 training images, "
             "150 epochs, split seed 0; validation accuracy per seed (test in c.json).", ""]
    complete = all(len(val[a]) == len(SEEDS) for a in names)
    if not complete:
        lines += ["**Partial**: not every run has finished.", ""]
    lines += ["| arm | " + " | ".join(f"s{s}" for s in SEEDS) + " | mean | gated share |",
              "|---|" + "---:|" * (len(SEEDS) + 2)]
    for a in names:
        cells = " | ".join(f"{val[a][s]:.4f}" if s in val[a] else "—" for s in SEEDS)
        mean = sum(val[a].values()) / len(val[a]) if val[a] else float("nan")
        shares = [r["gated_share"] for r in runs if r["arm"] == a and r["gated_share"] is not None]
        share = f"{sum(shares) / len(shares):.3f}" if shares else "—"
        lines.append(f"| {a} | {cells} | {mean:.4f} | {share} |")
    lines.append(f"| teacher (w{TEACHER_W:g}, M={TEACHER_M}) | " +
                 " | ".join(f"{teachers[s]:.4f}" if s in teachers else "—" for s in SEEDS) + " | | |")
    lines.append("")

    def contrast(a, b):
        seeds = sorted(set(val[a]) & set(val[b]))
        if len(seeds) < 2:
            return None
        return stats.paired([val[a][s] for s in seeds], [val[b][s] for s in seeds])

    ungated = [a for a in names if a.startswith("ungated-")]
    best = max(ungated, key=lambda a: sum(val[a].values()) / len(val[a]) if val[a] else -1)
    family = {"C1 (primary): teacher fallback − random fallback at the same rate":
              contrast("teacher-fallback", "random-fallback")}
    secondary = {f"teacher fallback − best ungated M ({best})": contrast("teacher-fallback", best),
                 "KD + teacher fallback − KD": contrast("kd-teacher-fallback", "kd"),
                 "self-entropy fallback − random fallback": contrast("self-entropy-fallback", "random-fallback"),
                 f"teacher fallback − ungated M={STRONG}": contrast("teacher-fallback", f"ungated-m{STRONG}")}
    c2 = _load_c2()
    lines.append("Primary (Holm over {C1, C2} at α = 0.05, paired t over seeds):")
    primaries = {k: v for k, v in family.items() if v is not None}
    ps = [v["p"] for v in primaries.values()] + [r["p_one_sided"] for r in c2.get("per_seed", [])]
    adjusted = stats.holm(ps) if ps else []
    for (k, v), p in zip(primaries.items(), adjusted):
        lines.append(f"- {k}: {stats.fmt(v, p)}; per seed {[round(x, 2) for x in v['per_seed']]}")
    if not primaries:
        lines.append("- C1: not enough seeds yet")
    lines += ["", "Secondary (unadjusted):"]
    for k, v in secondary.items():
        lines.append(f"- {k}: " + (stats.fmt(v) if v is not None else "not enough seeds yet"))
    strength = [teachers[s] - val[f"ungated-m{STRONG}"][s] for s in SEEDS
                if s in teachers and s in val[f"ungated-m{STRONG}"]]
    if strength:
        lines += ["", f"Teacher − student (ungated M={STRONG}) on validation: "
                      f"{min(strength) * 100:.2f} to {max(strength) * 100:.2f} points over {len(strength)} seeds "
                      "(PLAN.md requires ≥ 5)."]
    if c2:
        lines += ["", c2["text"]]
    OUT.mkdir(exist_ok=True)
    data = {"complete": complete, "runs": runs, "teachers": teachers, "c2": c2,
            "contrasts": {k: v for k, v in {**family, **secondary}.items() if v is not None}}
    if runs:
        _plot(val, OUT / "c.png")
        lines += ["", "![C: validation accuracy per arm and seed; C2: the student's loss increase by the teacher's "
                      "score](c.png)"]
    (OUT / "c.md").write_text("\n".join(lines) + "\n")
    (OUT / "c.json").write_text(json.dumps(data, indent=1) + "\n")
    return data


def _plot(val: dict, path: Path) -> None:
    """Left: each arm's validation accuracy (a dot per seed, a bar at the mean). Right (once C2's scores are
    kept): the student's mean loss increase over its M=0 view in deciles of the teacher's p_true, per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scores = OUT / "c2_scores.npz"
    fig, axes = plt.subplots(1, 2 if scores.is_file() else 1, figsize=(12, 4.4), squeeze=False)
    ax = axes[0][0]
    arms_run = [a for a in val if val[a]]
    for i, a in enumerate(arms_run):
        v = [100 * x for x in val[a].values()]
        ax.scatter([i] * len(v), v, s=14, alpha=0.7)
        ax.hlines(sum(v) / len(v), i - 0.3, i + 0.3, color="k")
    ax.set_xticks(range(len(arms_run)), arms_run, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("student validation accuracy, %")
    ax.set_title("C1: arms (dot = seed, bar = mean)", fontsize=9)
    if scores.is_file():
        kept, bx = np.load(scores), axes[0][1]
        for s in SEEDS:
            if f"teacher_s{s}" not in kept:
                continue
            t = kept[f"teacher_s{s}"][:, 1:].ravel()
            st_p = np.clip(kept[f"student_s{s}"], 1e-7, 1.0)
            harm = (-np.log(st_p[:, 1:]) + np.log(st_p[:, :1])).ravel()
            edges = np.quantile(t, np.linspace(0, 1, 11))
            idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, 9)
            bins = [k for k in range(10) if (idx == k).any()]  # tied scores can leave a decile empty
            bx.plot([float(np.median(t[idx == k])) for k in bins], [float(harm[idx == k].mean()) for k in bins],
                    marker="o", label=f"seed {s}")
        bx.set_xlabel("teacher's p_true of the augmented view (decile medians)")
        bx.set_ylabel("student's loss increase over its M=0 view")
        bx.set_title("C2: views at M = 5-30, validation split", fontsize=9)
        bx.legend(fontsize=8)
    fig.tight_layout()
    run.save_figure(fig, path)


# ------------------------------------------------------------------ C2: measurement
C2_MAGNITUDES = (0, 5, 10, 15, 20, 30)


def measure() -> None:
    """Per teacher seed: p_true of the teacher and of the ungated M=15 student on the same augmented views
    of the validation split; Spearman's rho between the teacher's score at M and the student's loss increase
    over M=0 on the same sample (one view, the plans' seed = the seed)."""
    import numpy as np
    from scipy import stats as st

    from augpipe.driver.data import make_data
    from augpipe.gate import DifficultyTable
    from augpipe.models import load_run_model

    kept = OUT / "c2_scores.npz"
    if kept.is_file() and all(f"teacher_s{s}" in np.load(kept) for s in SEEDS):
        return  # every seed measured: the scores are deterministic, so a rerun would only repeat minutes of work
    data = make_data("fashion-mnist", 2000, 5000, 0, 1)
    scores = {}
    for s in SEEDS:
        t, u = teacher(s), student(f"ungated-m{STRONG}", s)
        run.restore(pilot.RECORDS, t, keep_model=True)
        run.restore(pilot.RECORDS, u, keep_model=True)
        if not (t / "report.json").is_file() or not (u / "report.json").is_file():
            continue
        tables = {}
        for name, path in (("teacher", t), ("student", u)):
            model = load_run_model(path)[0]
            tables[name] = DifficultyTable.build(model, data.val, magnitudes=C2_MAGNITUDES, views=1, seed=s,
                                                 metric="p_true", progress=False)
        scores[f"teacher_s{s}"] = tables["teacher"].scores[:, :, 0].astype(np.float32)
        scores[f"student_s{s}"] = tables["student"].scores[:, :, 0].astype(np.float32)
    OUT.mkdir(exist_ok=True)
    _write_npz(OUT / "c2_scores.npz", scores)
    c2_statistics()


def _write_npz(path: Path, arrays: dict) -> None:
    import numpy as np

    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def c2_statistics(resamples: int = 2000) -> dict:
    """C2's pre-registered test from the kept per-(sample, M) scores: per seed, Spearman's rho between the
    teacher's p_true at M > 0 and the student's loss increase over its M=0 view of the same sample, a
    bootstrap interval that resamples validation samples (each with all its M), and a one-sided p."""
    import numpy as np
    from scipy import stats as st

    kept = np.load(OUT / "c2_scores.npz")
    per_seed = []
    for s in SEEDS:
        if f"teacher_s{s}" not in kept:
            continue
        teacher_p, student_p = kept[f"teacher_s{s}"], np.clip(kept[f"student_s{s}"], 1e-7, 1.0)
        ts = teacher_p[:, 1:].ravel()  # M > 0
        harm = (-np.log(student_p[:, 1:]) + np.log(student_p[:, :1])).ravel()
        samples = np.repeat(np.arange(len(teacher_p)), teacher_p.shape[1] - 1)
        boot = stats.spearman_bootstrap(ts, harm, samples, resamples=resamples, seed=s)
        rho, p_two = st.spearmanr(ts, harm)
        per_seed.append({"seed": s, "rho": float(rho), "ci": boot["ci"], "samples": boot["clusters"],
                         "p_one_sided": float(p_two / 2 if rho < 0 else 1 - p_two / 2), "n": int(len(ts))})
    lines = ["C2 (measurement, validation split, views at M ∈ {5, 10, 15, 20, 30}, one view per sample): "
             "Spearman's ρ between the teacher's p_true and the student's loss increase over M=0; H1: ρ < 0. "
             f"95 % CI: percentile bootstrap over the {per_seed[0]['samples']:,} validation samples "
             f"(each resampled with its views at every M), {resamples:,} resamples."]
    lines += [f"- seed {r['seed']}: ρ = {r['rho']:.3f}, 95 % CI [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] "
              f"(n = {r['n']:,} pairs, one-sided p = {r['p_one_sided']:.3g})" for r in per_seed]
    result = {"per_seed": per_seed, "text": "\n".join(lines)}
    (OUT / "c2.json").write_text(json.dumps(result, indent=1) + "\n")
    summarise()
    return result


def _load_c2() -> dict:
    f = OUT / "c2.json"
    return json.loads(f.read_text()) if f.is_file() else {}


if __name__ == "__main__":
    if sys.argv[1:] == ["summary"]:
        summarise()
        print((OUT / "c.md").read_text())
    elif sys.argv[1:] == ["measure"]:
        measure()
    elif sys.argv[1:] == ["measure-stats"]:
        print(c2_statistics()["text"])
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        experiment()
