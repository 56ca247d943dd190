"""Tables, plots and verdicts for the paper's three findings, from the runs of
`1_sweep.sh` and `run.py` (under $AUGPIPE_RUNS, default runs/paper/).

    python benchmarks/paper/summarize.py [--out benchmarks/paper/results]

(AUGPIPE_RUNS=runs/paper-cuda writes to benchmarks/paper/results-paper-cuda.)

Writes results.md (tables: mean ± std over seeds, test accuracy unless said),
results.json (every number in the tables, and the command of each run) and
the plots. A verdict compares two settings by the difference of their means
against the seed spread (Welch's t = diff / sqrt(s1²/n1 + s2²/n2)): |t| >= 2
is reported as a difference, anything less as "within seed noise". With two
or three seeds per setting this is a coarse test; the tables give the spread.
Runs that are missing are listed, never filled in.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RUNS = Path(os.environ.get("AUGPIPE_RUNS", ROOT / "runs" / "paper"))
# runs kept apart (AUGPIPE_RUNS=runs/paper-cuda on a GPU machine) get their own results folder
OUT = ROOT / "benchmarks" / "paper" / ("results" if RUNS.resolve() == (ROOT / "runs" / "paper").resolve()
                                       else f"results-{RUNS.name}")


def load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    if isinstance(report.get("command"), str):  # older runs recorded absolute paths: make them checkout-relative
        report["command"] = report["command"].replace(f"{ROOT}/", "")
    return report


def stats(values: list[float]) -> dict:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": len(a),
            "values": [float(v) for v in a]}


def fmt(s: dict | None) -> str:
    return "—" if s is None else f"{s['mean']:.4f} ± {s['std']:.4f} (n={s['n']})"


def compare(a: dict, b: dict, what: str) -> dict:
    """a minus b, with Welch's t over the seeds."""
    diff = a["mean"] - b["mean"]
    se = math.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"])
    t = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    verdict = ("higher" if diff > 0 else "lower") if abs(t) >= 2 else "within seed noise"
    return {"what": what, "diff": diff, "t": t, "verdict": verdict}


def verdict_line(c: dict) -> str:
    return f"- {c['what']}: {c['diff'] * 100:+.2f} points (t = {c['t']:.1f}): **{c['verdict']}**"


def runs_matching(folder: Path, prefix: str) -> list[dict]:
    return [r for p in sorted(folder.glob(f"{prefix}-s*")) if (r := load(p / "report.json")) is not None]


# ------------------------------------------------------------------ finding A: sweep
def finding_a(out: Path, lines: list[str], data: dict, folder: str = "sweep",
              title: str = "## Finding A: the best magnitude grows with model size\n") -> dict:
    sweep = load(RUNS / folder / "results.json")
    if sweep is None:
        name = title.strip("# \n")
        lines.append(f"{name}: not run (runs/paper/{folder}/results.json is missing).\n")
        return {}
    cells = sweep["cells"]
    widths = sorted({c["width"] for c in cells})
    ms = sorted({c["magnitude"] for c in cells})
    test = {(w, m): stats([c["test_accuracy"] for c in cells if c["width"] == w and c["magnitude"] == m])
            for w in widths for m in ms}
    seeds_n = len({c["seed"] for c in cells})
    lines += [title,
              f"`{sweep['command']}`\n",
              "Validation accuracy (picks the best M; from the sweep's table.md):\n",
              (RUNS / folder / "table.md").read_text().rstrip() + "\n",
              f"Test accuracy (the held-out test split), mean ± std over {seeds_n} seeds:\n",
              "| width | params | " + " | ".join(f"M={m:g}" for m in ms) + " |",
              "|---:|---:|" + "---:|" * len(ms)]
    for w in widths:
        params = sweep["summary"][f"{w:g}"]["params"]
        lines.append(f"| {w:g} | {params:,} | " + " | ".join(f"{test[w, m]['mean']:.4f} ± {test[w, m]['std']:.4f}"
                                                         for m in ms) + " |")
    verdicts = []
    for w in widths:
        best = sweep["summary"][f"{w:g}"]["best_magnitude"]
        verdicts.append(compare(test[w, best], test[w, max(ms)],
                                f"width {w:g}: best M={best:g} vs M={max(ms):g} (test)"))
        mid = 9.0 if 9.0 in ms else ms[len(ms) // 2]
        verdicts.append(compare(test[w, ms[0]], test[w, mid], f"width {w:g}: M={ms[0]:g} vs M={mid:g} (test)"))
    # The harm of strong augmentation, paired by seed (same data order and init per seed), per size.
    def seeds(w, m):
        return {c["seed"]: c["test_accuracy"] for c in cells if c["width"] == w and c["magnitude"] == m}

    harm = {}
    strong = sorted({14.0, max(ms)} & set(ms))
    for m in strong:
        for w in widths:
            a, b = seeds(w, ms[0]), seeds(w, m)
            harm[w, m] = stats([a[s] - b[s] for s in sorted(a) if s in b])
        verdicts.append(compare(harm[widths[0], m], harm[widths[-1], m],
                                f"loss from M={ms[0]:g} to M={m:g}: width {widths[0]:g} minus width {widths[-1]:g}"))
    lines += ["", "Test accuracy lost from M=0 (paired by seed): " + "; ".join(
        f"width {w:g}: " + ", ".join(f"{harm[w, m]['mean'] * 100:.2f} points at M={m:g}" for m in strong)
        for w in widths) + "."]
    lines += ["", "Best magnitude by validation accuracy: " + ", ".join(
        f"width {w:g} ({sweep['summary'][f'{w:g}']['params']:,} params) → M={sweep['summary'][f'{w:g}']['best_magnitude']:g}"
        for w in widths) + ".", ""]
    lines += [verdict_line(v) for v in verdicts] + [""]
    for name in ("plot.png", "schedule.json", "table.md"):
        if (RUNS / folder / name).is_file():
            shutil.copy(RUNS / folder / name, out / f"{folder}-{name}")
    lines.append(f"![accuracy against magnitude]({folder}-plot.png)\n")
    data[folder] = {"command": sweep["command"], "summary": sweep["summary"],
                    "test": {f"w{w:g}-m{m:g}": s for (w, m), s in test.items()},
                    "harm": {f"w{w:g}-m{m:g}": s for (w, m), s in harm.items()}, "verdicts": verdicts}
    return test


def more_data(out: Path, lines: list[str], data: dict) -> None:
    """The sweep again on 4x the training images: does the regime explain experiment 1?"""
    if not finding_a(out, lines, data, "sweep-16k",
                     "### Finding A with 4× the training data (16,000 images): a check on the regime\n"):
        return
    if "sweep" not in data:
        return
    verdicts = []
    for key, harm in data["sweep-16k"]["harm"].items():
        if key in data["sweep"]["harm"]:
            w, m = key[1:].split("-m")
            verdicts.append(compare(harm, data["sweep"]["harm"][key],
                                    f"width {w}: test points lost from M=0 to M={m}, 16,000 images minus 4,000"))
    lines += ["Does more data shrink the harm of strong augmentation?\n"] + [verdict_line(v) for v in verdicts] + [""]
    data["sweep-16k"]["against-4k"] = verdicts


def finding_a_pruning(out: Path, lines: list[str], data: dict) -> None:
    folder = RUNS / "prune"
    groups = {}
    for method in ("l1-unstructured", "channel"):
        for rule in ("capacity", "constant", "zero"):
            runs = runs_matching(folder, f"{method}-{rule}")
            if runs:
                groups[method, rule] = runs
    if not groups:
        lines.append("Experiment 2 has not run (runs/paper/prune/ is empty).\n")
        return
    first = next(iter(groups.values()))[0]
    lines += ["### Pruning: magnitude rules while the model shrinks\n",
              f"Example command: `{first['command']}`\n",
              "| method | magnitude rule | final sparsity | final val | test | magnitude per round |",
              "|---|---|---:|---:|---:|---|"]
    table = {}
    for (method, rule), runs in groups.items():
        val = stats([r["rounds"][-1]["accuracy"] for r in runs])
        test = stats([r["test"]["accuracy"] for r in runs])
        sparsity = np.mean([r["rounds"][-1]["sparsity"] for r in runs])
        mags = ", ".join(f"{rec.get('magnitude', float('nan')):.1f}" for rec in runs[0]["rounds"])
        table[f"{method}/{rule}"] = {"val": val, "test": test, "sparsity": float(sparsity),
                                     "commands": [r["command"] for r in runs]}
        lines.append(f"| {method} | {rule} | {sparsity:.3f} | {fmt(val)} | {fmt(test)} | {mags} |")
    verdicts = []
    for method in ("l1-unstructured", "channel"):
        for other in ("constant", "zero"):
            if (method, "capacity") in groups and (method, other) in groups:
                verdicts.append(compare(table[f"{method}/capacity"]["test"], table[f"{method}/{other}"]["test"],
                                        f"{method}: capacity schedule vs {other} magnitude (test)"))
    lines += [""] + [verdict_line(v) for v in verdicts] + [""]
    _plot_prune(groups, out / "prune.png")
    lines.append("![accuracy against sparsity per rule](prune.png)\n")
    data["prune"] = {"table": table, "verdicts": verdicts}


def _plot_prune(groups: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, method in zip(axes, ("l1-unstructured", "channel")):
        for (m, rule), runs in groups.items():
            if m != method:
                continue
            sp = np.mean([[rec["sparsity"] for rec in r["rounds"]] for r in runs], axis=0)
            acc = np.array([[rec["accuracy"] for rec in r["rounds"]] for r in runs])
            ax.errorbar(sp, acc.mean(0), yerr=acc.std(0, ddof=1) if len(acc) > 1 else None, marker="o",
                        capsize=3, label=rule)
        ax.set_title(method)
        ax.set_xlabel("sparsity")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("val accuracy")
    axes[0].legend(title="magnitude rule")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ finding B: extra parameters
def finding_b(lines: list[str], data: dict, sweep_test: dict) -> None:
    folder = RUNS / "extra"
    rows, verdicts = {}, []
    for w in (0.25, 0.5):
        for name in (f"dense-strong-prune-weak-w{w:g}", f"aux-heads-strong-w{w:g}"):
            runs = runs_matching(folder, name)
            if runs:
                rows[name] = {"test": stats([r["test"]["accuracy"] for r in runs]),
                              "params": runs[0].get("params") or runs[0]["rounds"][-1].get("params"),
                              "commands": [r["command"] for r in runs]}
    if not rows:
        lines.append("Experiment 3 has not run (runs/paper/extra/ is empty).\n")
        return
    lines += ["## Finding B: extra parameters let a small model use strong augmentation\n",
              "Test accuracy. \"Strong\" is M=14; the plain rows are the sweep's cells (3 seeds).\n",
              "| small model | trained how | test |", "|---|---|---:|"]
    for w in (0.25, 0.5):
        plain_weak, plain_strong = sweep_test.get((w, 0.0)), sweep_test.get((w, 14.0))
        lines.append(f"| width {w:g} | plain, M=0 | {fmt(plain_weak)} |")
        lines.append(f"| width {w:g} | plain, M=14 | {fmt(plain_strong)} |")
        prune = rows.get(f"dense-strong-prune-weak-w{w:g}")
        aux = rows.get(f"aux-heads-strong-w{w:g}")
        if prune:
            lines.append(f"| width {w:g} | width 1 trained at M=14, channel-pruned to {prune['params'] or '?'} "
                         f"params, fine-tuned at M=0 | {fmt(prune['test'])} |")
            verdicts.append(compare(prune["test"], plain_weak, f"width {w:g}: pruned from a strongly augmented "
                                                                "dense model vs trained small at M=0"))
        if aux:
            lines.append(f"| width {w:g} | auxiliary heads (weight 0.3) at M=14, heads dropped | {fmt(aux['test'])} |")
            verdicts.append(compare(aux["test"], plain_strong, f"width {w:g}: auxiliary heads at M=14 vs plain at M=14"))
    if rows:
        example = next(iter(rows.values()))["commands"][0]
        lines += ["", f"Example command: `{example}`", ""]
    lines += [verdict_line(v) for v in verdicts] + [""]
    data["extra"] = {"rows": rows, "verdicts": verdicts}


# ------------------------------------------------------------------ finding C: teacher gating
def finding_c(out: Path, lines: list[str], data: dict, sweep_test: dict) -> None:
    folder = RUNS / "gate"
    rows, verdicts = {}, []
    for m in (14, 30):
        for name in ("fallback", "drop", "reweight", "table-caps", "op-limits"):
            runs = runs_matching(folder, f"{name}-m{m}")
            if runs:
                gated = [r.get("gate", {}).get("gated", 0) / max(1, r.get("gate", {}).get("samples", 0))
                         for r in runs if r.get("gate")]
                rows[f"{name}-m{m}"] = {"test": stats([r["test"]["accuracy"] for r in runs]),
                                        "gated": float(np.mean(gated)) if gated else None,
                                        "commands": [r["command"] for r in runs]}
    if not rows:
        lines.append("Experiment 4 has not run (runs/paper/gate/ is empty).\n")
        return
    student = 0.25
    lines += ["## Finding C: a teacher's view of difficulty, used per sample\n",
              "Student: width 0.25 (2,294 params); teacher: the sweep's width-1.5 model at its best M (seed 0). "
              "Test accuracy; the ungated rows are the sweep's cells.\n",
              "| magnitude | gating | test | samples gated |", "|---:|---|---:|---:|"]
    for m in (14, 30):
        present = [k for k in rows if k.endswith(f"-m{m}")]
        if not present:
            continue
        base = sweep_test.get((student, float(m)))
        lines.append(f"| {m} | none (sweep) | {fmt(base)} | — |")
        for key in present:
            r = rows[key]
            gated = "—" if r["gated"] is None else f"{r['gated']:.1%}"
            lines.append(f"| {m} | {key.rsplit('-m', 1)[0]} | {fmt(r['test'])} | {gated} |")
            if base is not None:
                verdicts.append(compare(r["test"], base, f"M={m}: {key.rsplit('-m', 1)[0]} vs ungated"))
            if sweep_test.get((student, 0.0)) is not None:
                verdicts.append(compare(r["test"], sweep_test[student, 0.0],
                                        f"M={m}: {key.rsplit('-m', 1)[0]} vs no augmentation (M=0, ungated)"))
        weak = sweep_test.get((student, 0.0))
        lines.append(f"| 0 | none (sweep), for reference | {fmt(weak)} | — |")
    example = next(iter(rows.values()))["commands"][0]
    lines += ["", f"Example command: `{example}`", ""] + [verdict_line(v) for v in verdicts] + [""]
    report = load(folder / "report" / "report.json")
    if report is not None and (folder / "report" / "heatmap.png").is_file():
        shutil.copy(folder / "report" / "heatmap.png", out / "gate-report-heatmap.png")
        lines.append("Per-op difficulty for the teacher (accuracy per op and magnitude): "
                     "![per-op report](gate-report-heatmap.png)\n")
    data["gate"] = {"rows": rows, "verdicts": verdicts}


def raw_runs() -> list[dict]:
    """Every run behind the tables: experiment, seed, epochs, wall time, final numbers, command."""
    rows = []
    for experiment, folder in (("1-sweep", "sweep"), ("1b-sweep-16k", "sweep-16k")):
        for c in (load(RUNS / folder / "results.json") or {}).get("cells", []):
            rows.append({"experiment": experiment, **c})
    for experiment, folder in (("2-prune", "prune"), ("3-extra", "extra"), ("4-gate", "gate")):
        for path in sorted((RUNS / folder).glob("*-s*/report.json")):
            r = load(path)
            config = r.get("config") or {}
            epochs = (config["epochs"] if "epochs" in config
                      else config.get("finetune_epochs", 0) * config.get("rounds", 0))
            rows.append({"experiment": experiment, "run": path.parent.name, "seed": config.get("seed"),
                         "epochs": epochs, "params": r.get("params") or (r.get("rounds") or [{}])[-1].get("params"),
                         "test_accuracy": r["test"]["accuracy"],
                         "val_accuracy": (r.get("val") or (r.get("rounds") or [{}])[-1]).get("accuracy"),
                         "wall_s": r.get("wall_s"), "command": r["command"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help=f"default: {OUT.relative_to(ROOT)}")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    config = (load(RUNS / "sweep" / "results.json") or {}).get("config", {})
    lines = ["# The paper's observations, reproduced on Fashion-MNIST with augpipe\n",
             "Generated by `python benchmarks/paper/summarize.py` from the runs of `benchmarks/paper/1_sweep.sh`, "
             "`benchmarks/paper/run.py all` and `benchmarks/paper/5_more_data.sh`. SmallCNN on a seeded "
             f"{config.get('train_size') or 0:,}-image subset of Fashion-MNIST's training split "
             f"({config.get('val_size') or 0:,} more for validation), RandAugment(2, M), SGD, "
             f"{config.get('epochs', '?')} epochs, unless a section says otherwise.\n"]
    data: dict = {}
    sweep_test = finding_a(out, lines, data)
    more_data(out, lines, data)
    finding_a_pruning(out, lines, data)
    finding_b(lines, data, sweep_test)
    finding_c(out, lines, data, sweep_test)
    data["runs"] = raw_runs()
    hours = sum(r["wall_s"] or 0 for r in data["runs"]) / 3600
    lines.append(f"{len(data['runs'])} training runs, {hours:.1f} hours of run time summed over runs (two ran at "
                 "a time, one thread each, on 2 cores); each run's seed, epochs, wall time and command: "
                 "results.json, `runs`.\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}/results.md, results.json and plots")


if __name__ == "__main__":
    main()
