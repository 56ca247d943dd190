"""Experiment 0 of PLAN.md: find a regime where the large model gains from augmentation.

    .venv/bin/python benchmarks/paper/pilot.py            # run (resumes), then summarise
    .venv/bin/python benchmarks/paper/pilot.py summary    # summarise what has run

Per regime, cheapest first: a screen (seed 0 of Identity, M=0, 5, 10); if it
passes, seeds 1 and 2; then PLAN.md's go rule. The first regime that passes is
the regime, and the rest are not run. Every run is one `augpipe train` command
under $AUGPIPE_RUNS/pilot/ (default runs/paper2/); finished runs are skipped,
an interrupted one resumes from its checkpoint, so a killed pilot is rerun as
is. Results: benchmarks/paper/results2/pilot.md and pilot.json (partial until
the go rule is decided).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("AUGPIPE_RUNS", str(HERE.parents[1] / "runs" / "paper2"))

import run  # noqa: E402  (benchmarks/paper/run.py: execute(), two runs at a time)
import stats  # noqa: E402

RUNS = Path(os.environ["AUGPIPE_RUNS"]) / "pilot"
OUT = HERE / "results2"
RECORDS = OUT / "records"  # every finished run's report.json, committed (run directories stay on their machine)
SPLIT = ["--split-seed", "0", "--val-size", "5000", "--data", "fashion-mnist", "--batch-size", "128",
         "--lr", "0.1", "--workers", "0", "--eval-every", "10", "--no-progress", "--no-plot"]
# name: (model, width, training images, epochs), in the order PLAN.md tries them
REGIMES = {"cnn2-2k": ("cnn", 2, 2000, 150), "cnn4-2k": ("cnn", 4, 2000, 150),
           "resnet20-2k": ("resnet20", 1, 2000, 150), "cnn2-8k": ("cnn", 2, 8000, 60)}
ARMS = {"identity": ["--policy", "identity", "--magnitude", "0"],
        **{f"m{m}": ["--policy", "randaugment", "--magnitude", str(m)] for m in (0, 5, 10)}}
GAIN, GAP = 0.01, 0.03  # the go rule: +1 point at M=5 or 10 over M=0; a train-val gap of 3 points at M=0


def runs_for(regime: str, seeds) -> list[tuple[Path, list[str]]]:
    model, width, n, epochs = REGIMES[regime]
    return [(RUNS / regime / f"{arm}-s{s}",
             ["train", "--model", model, "--width", f"{width:g}", "--train-size", str(n), "--epochs", str(epochs),
              *args, "--seed", str(s), *SPLIT, "--out", str(RUNS / regime / f"{arm}-s{s}")])
            for s in seeds for arm, args in ARMS.items()]


def report(regime: str, arm: str, seed: int) -> dict | None:
    return run.read_report(RUNS / regime / f"{arm}-s{seed}", RECORDS)


def seeds_done(regime: str) -> list[int]:
    return [s for s in range(3) if all(report(regime, a, s) for a in ARMS)]


def screen(regime: str) -> dict | None:
    runs = {a: report(regime, a, 0) for a in ARMS}
    if not all(runs.values()):
        return None
    gain = max(runs["m5"]["val"]["accuracy"], runs["m10"]["val"]["accuracy"]) - runs["m0"]["val"]["accuracy"]
    gap = runs["m0"]["train_val_gap"]
    return {"gain": gain, "gap": gap, "passes": gain >= GAIN and gap >= GAP}


def go_rule(regime: str) -> dict | None:
    if seeds_done(regime) != [0, 1, 2]:
        return None
    val = {a: [report(regime, a, s)["val"]["accuracy"] for s in range(3)] for a in ARMS}
    gap = sum(report(regime, "m0", s)["train_val_gap"] for s in range(3)) / 3
    by_m = {}
    for m in ("m5", "m10"):
        diffs = [x - y for x, y in zip(val[m], val["m0"])]
        by_m[m] = {"mean_gain": sum(diffs) / 3, "all_positive": all(d > 0 for d in diffs),
                   "test": stats.paired(val[m], val["m0"])}
    passes = gap >= GAP and any(r["mean_gain"] >= GAIN and r["all_positive"] for r in by_m.values())
    return {"gap": gap, "by_magnitude": by_m, "passes": passes}


def pilot() -> None:
    for regime in REGIMES:
        run.execute(runs_for(regime, [0]), RECORDS)
        summarise()
        if not screen(regime)["passes"]:
            print(f"{regime}: screen fails ({screen(regime)}); next regime", flush=True)
            continue
        run.execute(runs_for(regime, [1, 2]), RECORDS)
        summarise()
        if go_rule(regime)["passes"]:
            print(f"{regime}: passes the go rule: this is the regime", flush=True)
            return
        print(f"{regime}: fails the go rule; next regime", flush=True)
    print("no regime passes the go rule: A and B are untestable on this hardware", flush=True)


def summarise() -> dict:
    """pilot.md and pilot.json from every finished pilot run."""
    rows, data = [], {"regimes": {}, "runs": []}
    for regime, (model, width, n, epochs) in REGIMES.items():
        entry = {"model": model, "width": width, "train_size": n, "epochs": epochs, "screen": screen(regime),
                 "go_rule": go_rule(regime)}
        data["regimes"][regime] = entry
        for arm in ARMS:
            for s in range(3):
                r = report(regime, arm, s)
                if r is None:
                    continue
                data["runs"].append({"regime": regime, "arm": arm, "seed": s, "split_seed": 0,
                                     "epochs": epochs, "params": r["params"], "val": r["val"]["accuracy"],
                                     "test": r["test"]["accuracy"], "train_clean": r["train_clean"]["accuracy"],
                                     "gap": r["train_val_gap"], "wall_s_total": r["wall_s_total"],
                                     "cpu": r["cpu"], "command": r["command"].replace(f"{run.ROOT}/", "")})
    decided = [k for k, v in data["regimes"].items() if v["go_rule"] and v["go_rule"]["passes"]]
    data["regime"] = decided[0] if decided else None
    lines = ["# Regime pilot (PLAN.md, experiment 0)", "",
             "`.venv/bin/python benchmarks/paper/pilot.py` — split seed 0 (5,000 validation images), "
             "val = validation accuracy, clean = accuracy on the un-augmented training images, "
             "gap = clean − val; per seed.", ""]
    if not data["regime"]:
        lines += ["**Partial**: the go rule is not decided yet." if len(data["runs"]) < 4 * 3 * len(REGIMES)
                  else "No regime passes the go rule.", ""]
    else:
        lines += [f"**The regime: `{data['regime']}`** (first to pass the go rule).", ""]
    lines += ["| regime | arm | seed | params | val | test | clean | gap | wall s | CPU |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in data["runs"]:
        rows.append(f"| {r['regime']} | {r['arm']} | {r['seed']} | {r['params']:,} | {r['val']:.4f} | "
                    f"{r['test']:.4f} | {r['train_clean']:.4f} | {r['gap'] * 100:+.2f} | {r['wall_s_total']:.0f} | "
                    f"{r['cpu']} |")
    lines += rows + [""]
    for regime, entry in data["regimes"].items():
        sc, go = entry["screen"], entry["go_rule"]
        if sc is None:
            continue
        lines.append(f"- `{regime}` screen (seed 0): best of M=5/10 over M=0 {sc['gain'] * 100:+.2f} points, "
                     f"M=0 gap {sc['gap'] * 100:.2f} points: **{'passes' if sc['passes'] else 'fails'}**")
        if go is not None:
            for m, r in go["by_magnitude"].items():
                lines.append(f"  - {m} − m0 (3 seeds, paired): {stats.fmt(r['test'])}; every seed positive: "
                             f"{r['all_positive']}")
            lines.append(f"  - mean M=0 gap {go['gap'] * 100:.2f} points. Go rule: "
                         f"**{'passes' if go['passes'] else 'fails'}**")
    OUT.mkdir(exist_ok=True)
    if data["runs"]:
        _plot(data["runs"], OUT / "pilot.png")
        lines += ["", "![validation accuracy and train-val gap per arm, each seed a dot](pilot.png)"]
    (OUT / "pilot.md").write_text("\n".join(lines) + "\n")
    (OUT / "pilot.json").write_text(json.dumps(data, indent=1) + "\n")
    return data


def _plot(runs: list[dict], path: Path) -> None:
    """Per regime: validation accuracy (left) and the train-val gap (right) by arm, a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    arms = list(ARMS)
    for k, regime in enumerate(dict.fromkeys(r["regime"] for r in runs)):
        mine = [r for r in runs if r["regime"] == regime]
        for axis, key in ((ax, "val"), (bx, "gap")):
            xs = [arms.index(r["arm"]) + 0.1 * (k - 1) for r in mine]
            axis.scatter(xs, [100 * r[key] for r in mine], s=16, label=regime)
    for axis, label in ((ax, "validation accuracy, %"), (bx, "train (clean) − validation, points")):
        axis.set_xticks(range(len(arms)), arms)
        axis.set_ylabel(label)
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.save_figure(fig, path)


if __name__ == "__main__":
    if sys.argv[1:] == ["summary"]:
        print((OUT / "pilot.md").read_text() if summarise() else "")
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        pilot()
