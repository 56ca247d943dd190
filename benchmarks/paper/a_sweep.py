"""Experiment 1 of PLAN.md (finding A): magnitude x model size, in the pilot's regime.

    .venv/bin/python benchmarks/paper/a_sweep.py           # run what is missing (resumes), then summarise
    .venv/bin/python benchmarks/paper/a_sweep.py summary   # summarise what has run

Runs only once the pilot's go rule has chosen a regime (benchmarks/paper/results2/pilot.json); otherwise it
says so and exits, as PLAN.md has A untestable without one. Sizes: the regime's family at four widths spanning
>= 50x in parameters (resnet20-2k: widths 0.25 to 2, the pilot's width 1 among them); arms Identity and M = 0, 5,
10, 15; five seeds for sizes whose run costs under ~5 minutes (width 0.25), three otherwise. The pilot's runs are
the regime model's Identity and M = 0, 5, 10 cells for seeds 0-2 (the same commands).
Results: benchmarks/paper/results2/a.md, a.json, a-schedule.json.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("AUGPIPE_RUNS", str(HERE.parents[1] / "runs" / "paper2"))

import pilot  # noqa: E402
import run  # noqa: E402
import stats  # noqa: E402

RUNS = Path(os.environ["AUGPIPE_RUNS"]) / "a"
OUT = HERE / "results2"
WIDTHS = {"cnn2-2k": (0.25, 0.5, 1, 2), "cnn4-2k": (0.5, 1, 2, 4), "resnet20-2k": (0.25, 0.5, 1, 2),
          "cnn2-8k": (0.25, 0.5, 1, 2)}
ARMS = {"identity": ["--policy", "identity", "--magnitude", "0"],
        **{f"m{m}": ["--policy", "randaugment", "--magnitude", str(m)] for m in (0, 5, 10, 15)}}
MAGNITUDES = (0, 5, 10, 15)
# widths <= this run five seeds (PLAN.md: cells under ~5 minutes here), larger ones three (amendment 5: a
# ResNet-20 width-1 cell costs ~1,050 s on these 2 cores, width 0.5 about half of that)
FIVE_SEEDS_BELOW = 0.25


def regime() -> str | None:
    f = OUT / "pilot.json"
    return json.loads(f.read_text()).get("regime") if f.is_file() else None


def seeds(width: float) -> tuple[int, ...]:
    return (0, 1, 2, 3, 4) if width <= FIVE_SEEDS_BELOW else (0, 1, 2)


def cell(reg: str, width: float, arm: str, seed: int) -> Path:
    model, largest, n, epochs = pilot.REGIMES[reg]
    if width == largest and arm in pilot.ARMS and seed in (0, 1, 2):
        return pilot.RUNS / reg / f"{arm}-s{seed}"  # the pilot ran this very command
    return RUNS / reg / f"w{width:g}-{arm}-s{seed}"


def command(reg: str, width: float, args: list[str], seed: int, out: Path, epochs: int | None = None) -> list[str]:
    """The `augpipe train` argv of a cell (experiment 2 trains with the same one, at other M or epochs)."""
    model, _, n, default_epochs = pilot.REGIMES[reg]
    return ["train", "--model", model, "--width", f"{width:g}", "--train-size", str(n),
            "--epochs", str(epochs or default_epochs), *args, "--seed", str(seed), *pilot.SPLIT, "--out", str(out)]


def runs_for(reg: str) -> list[tuple[Path, list[str]]]:
    return [(cell(reg, w, arm, s), command(reg, w, args, s, cell(reg, w, arm, s)))
            for w in WIDTHS[reg] for s in seeds(w) for arm, args in ARMS.items()]


PRIMARY_ARMS = ("m0", "m10")  # A1's contrast: M=10 against M=0


def in_order(runs: list[tuple[Path, list[str]]]) -> list[tuple[Path, list[str]]]:
    """The order runs start in: cheapest widths first (the primary contrast's smallest size is in early), and
    within a width the primary arms of every seed, and runs already begun, before the other arms (amendment 8),
    so that A1 can be computed, and B1's dense models exist, even if the sweep is cut short, and a half-done
    run does not wait behind new ones. Only the order: no command changes."""
    def key(r):
        out, argv = r
        first = out.name.split("-")[-2] in PRIMARY_ARMS or begun(out)
        return float(argv[argv.index("--width") + 1]), not first

    return sorted(runs, key=key)  # stable: seed order, then arm order, within each group


def begun(out: Path) -> bool:
    """A run with a checkpoint here or kept in flight in its record (it resumes from there)."""
    return any(out.glob("checkpoints/epoch-*.pt")) or (run.record_dir(pilot.RECORDS, out) / "inflight").is_dir()


def dense_models(reg: str) -> set[Path]:
    """The largest size's RandAugment cells, whose weights experiment 2 prunes (B1 starts from M=0 and
    M=10; A-prune from the best M when it is one of the swept magnitudes): kept in the records."""
    w = WIDTHS[reg][-1]
    return {cell(reg, w, f"m{m}", s) for m in MAGNITUDES for s in seeds(w)}


def experiment() -> bool:
    reg = regime()
    if reg is None:
        print("A: the pilot's go rule has chosen no regime (yet): A is not run", flush=True)
        return False
    run.execute(in_order(runs_for(reg)), pilot.RECORDS, keep_model=dense_models(reg))
    summarise()
    return True


def _params(reg: str, width: float) -> int:
    """The size's parameter count, from its model (the same number every report of that width records)."""
    from augpipe.driver.prune import count_params
    from augpipe.models.zoo import build_model

    return count_params(build_model(pilot.REGIMES[reg][0], width))


def _report_field(path: Path, key: str) -> float | None:
    r = run.read_report(path, pilot.RECORDS)
    return r.get(key) if r else None


def cpus_of(path: Path) -> set[str]:
    """The CPU model names a finished run ran on (every session of a resumed run)."""
    r = run.read_report(path, pilot.RECORDS)
    return set(r.get("cpus") or [r.get("cpu")]) - {None} if r else set()


def _val(path: Path) -> float | None:
    r = run.read_report(path, pilot.RECORDS)
    return r["val"]["accuracy"] if r else None


def summarise() -> dict:
    reg = regime()
    if reg is None:
        return {}
    widths = WIDTHS[reg]
    table = {w: {a: {s: v for s in seeds(w) if (v := _val(cell(reg, w, a, s))) is not None} for a in ARMS}
             for w in widths}
    params = {w: _params(reg, w) for w in widths}
    lines = [f"# Finding A: magnitude x size in the regime `{reg}` (PLAN.md, experiment 1)", "",
             "`.venv/bin/python benchmarks/paper/a_sweep.py` — validation accuracy, per seed; split seed 0.", ""]
    total = sum(len(seeds(w)) * len(ARMS) for w in widths)
    done = sum(len(v) for w in widths for v in table[w].values())
    if done < total:
        lines += [f"**Partial**: {done} of {total} runs.", ""]
    lines += ["| width | params | arm | values | mean |", "|---:|---:|---|---|---:|"]
    for w in widths:
        for a in ARMS:
            vals = table[w][a]
            mean = sum(vals.values()) / len(vals) if vals else math.nan
            lines.append(f"| {w:g} | {params.get(w, 0):,} | {a} | "
                         + ", ".join(f"{vals[s]:.4f}" for s in sorted(vals)) + f" | {mean:.4f} |")
    small, large = widths[0], widths[-1]

    def gain(w):
        return {s: table[w]["m10"][s] - table[w]["m0"][s] for s in table[w]["m10"] if s in table[w]["m0"]}

    gl, gs = gain(large), gain(small)
    common = sorted(set(gl) & set(gs))
    result = {"regime": reg, "table": {f"{w:g}": {a: v for a, v in table[w].items()} for w in widths},
              "params": {f"{w:g}": p for w, p in params.items()}}
    lines.append("")
    if len(common) >= 2:
        a1 = stats.paired([gl[s] for s in common], [gs[s] for s in common])
        result["A1"] = a1
        planned = len(set(seeds(large)) & set(seeds(small)))
        if (words := stats.partial(len(common), planned)) is not None:
            status = f"Holm-adjusted with experiment 2's family in b.md — **{words}**"
        elif sum(gl.values()) <= 0:  # b.md's precondition: the largest size gains from M=10 on average
            status = "**untestable here (precondition absent)**: the largest size does not gain from M=10"
        elif (words := stats.settled(a1)) is not None:
            result["A1_verdict"] = words
            status = f"**{words}** (fails unadjusted; Holm over {{A1, A3, B1, B2}} in b.md can only raise its p)"
        else:
            status = "verdict after the Holm adjustment over {A1, A3, B1, B2} in b.md, once B's contrasts exist"
        lines.append(f"- **A1 (primary)**: gain of M=10 over M=0, width {large:g} minus width {small:g}, paired by "
                     f"seed ({len(common)} seeds): {stats.fmt(a1)}; {status}")
    lines += ["", "Per size (secondary, descriptive): the gain of M=10 over M=0 paired by seed, and the train-val "
              "gap at M=0 (the precondition: a gap to close).", "",
              "| width | params | seeds | M=10 − M=0, points | 95 % CI | p | gap at M=0, points (mean) |",
              "|---:|---:|---:|---:|---|---:|---:|"]
    per_size = {}
    for w in widths:
        g = gain(w)
        gaps = [x for s in seeds(w) if (x := _report_field(cell(reg, w, "m0", s), "train_val_gap")) is not None]
        row = {"gap_m0": 100 * sum(gaps) / len(gaps) if gaps else None}
        if len(g) >= 2:
            row |= stats.paired([table[w]["m10"][s] for s in sorted(g)], [table[w]["m0"][s] for s in sorted(g)])
        per_size[f"{w:g}"] = row
        if "diff" in row:
            lines.append(f"| {w:g} | {params[w]:,} | {row['n']} | {row['diff']:+.2f} | [{row['ci'][0]:+.2f}, "
                         f"{row['ci'][1]:+.2f}] | {row['p']:.3g} | "
                         + ("" if row["gap_m0"] is None else f"{row['gap_m0']:+.2f}") + " |")
        else:
            lines.append(f"| {w:g} | {params[w]:,} | {len(g)} | | | | "
                         + ("" if row["gap_m0"] is None else f"{row['gap_m0']:+.2f}") + " |")
    result["per_size"] = per_size
    cpus = {w: sorted({c for a in ARMS for s in seeds(w) for c in cpus_of(cell(reg, w, a, s))}) for w in widths}
    result["cpus"] = {f"{w:g}": c for w, c in cpus.items()}
    lines += ["", "CPUs per size (PLAN.md amendment 3: a contrast over sizes run on different CPU types treats the "
              "CPU as part of the run): " + "; ".join(f"width {w:g}: {', '.join(c) or '—'}" for w, c in cpus.items())]
    lines.append("")
    vertices = {}
    for w in widths:
        ss = sorted(set.intersection(*(set(table[w][f"m{m}"]) for m in MAGNITUDES)))
        if len(ss) >= 2:
            acc = [[table[w][f"m{m}"][s] for s in ss] for m in MAGNITUDES]
            vertices[w] = stats.vertex_bootstrap(MAGNITUDES, acc)
            lines.append(f"- A2 (secondary) width {w:g}: quadratic vertex M = {vertices[w]['vertex']:.1f}, 95 % "
                         f"seed-bootstrap [{vertices[w]['ci'][0]:.1f}, {vertices[w]['ci'][1]:.1f}]")
    if len(vertices) >= 3 and all(w in params for w in vertices):
        trend = stats.spearman_exact([math.log10(params[w]) for w in vertices], [v["vertex"] for v in vertices.values()])
        result["A2"] = {"vertices": {f"{w:g}": v for w, v in vertices.items()}, "spearman_rho": trend["rho"],
                        "p": trend["p"], "p_min": trend["p_min"]}
        lines.append(f"- A2: Spearman's ρ of the vertex against log10(params) = {trend['rho']:.2f} (exact "
                     f"permutation p = {trend['p']:.3g} over the {len(vertices)}! orderings; with {len(vertices)} "
                     f"sizes even ρ = ±1 gives p = {trend['p_min']:.3g})")
        from augpipe.driver.capacity import CapacitySchedule

        schedule = CapacitySchedule.fit([(params[w], v["vertex"]) for w, v in vertices.items()])
        if done == total:  # experiment 2 starts from this file: never from a partial sweep's fit
            run.save_schedule(schedule, OUT / "a-schedule.json")  # unchanged if only rounding differs
            lines.append(f"- Capacity schedule fitted on the vertices: {schedule.describe()} (a-schedule.json)")
        else:
            lines.append(f"- Capacity schedule on the vertices so far (partial, not saved): {schedule.describe()}")
    OUT.mkdir(exist_ok=True)
    if any(table[w][a] for w in widths for a in ARMS):
        _plot(table, params, vertices, OUT / "a.png")
        lines += ["", "![validation accuracy against M per size, and the vertices](a.png)"]
    (OUT / "a.md").write_text("\n".join(lines) + "\n")
    (OUT / "a.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    return result


def _plot(table: dict, params: dict, vertices: dict, path: Path) -> None:
    """Left: validation accuracy against M per size (each seed a dot, the mean a line; Identity at M = -2).
    Right: each size's quadratic vertex with its seed-bootstrap interval against parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for w, arms in table.items():
        xs = [-2, *MAGNITUDES]
        cells = [arms["identity"], *(arms[f"m{m}"] for m in MAGNITUDES)]
        means = [100 * sum(c.values()) / len(c) if c else math.nan for c in cells]
        line, = ax.plot(xs, means, marker="o", label=f"width {w:g} ({params[w]:,} params)")
        for x, c in zip(xs, cells):
            ax.scatter([x] * len(c), [100 * v for v in c.values()], s=8, color=line.get_color(), alpha=0.5)
    ax.set_xticks([-2, *MAGNITUDES], ["Identity", *map(str, MAGNITUDES)])
    ax.set_xlabel("RandAugment magnitude M")
    ax.set_ylabel("validation accuracy, %")
    ax.legend(fontsize=8)
    if vertices:
        ws = sorted(vertices)
        v = [vertices[w]["vertex"] for w in ws]
        err = [[v[i] - vertices[w]["ci"][0] for i, w in enumerate(ws)],
               [vertices[w]["ci"][1] - v[i] for i, w in enumerate(ws)]]
        bx.errorbar([params[w] for w in ws], v, yerr=err, marker="o", capsize=4)
        bx.set_xscale("log")
        bx.set_xticks([params[w] for w in ws], [f"{params[w]:,}" for w in ws])
        bx.minorticks_off()
    bx.set_xlabel("parameters")
    bx.set_ylabel("vertex of the quadratic fit in M (95 % seed bootstrap)")
    fig.tight_layout()
    run.save_figure(fig, path)


if __name__ == "__main__":
    if sys.argv[1:] == ["summary"]:
        summarise()
        f = OUT / "a.md"
        print(f.read_text() if f.is_file() else "A has not run: the pilot has chosen no regime")
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        experiment()
