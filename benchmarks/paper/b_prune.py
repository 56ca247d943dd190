"""Experiment 2 of PLAN.md (A in pruning, and B), in the pilot's regime, after A's sweep.

    .venv/bin/python benchmarks/paper/b_prune.py           # run what is missing (resumes), then summarise
    .venv/bin/python benchmarks/paper/b_prune.py summary   # summarise what has run

Reads A's results (results2/a.json: each size's parameter count and quadratic vertex, and a-schedule.json);
until A2 has a vertex for the largest and the smallest size it says so and runs nothing. Settings (PLAN.md,
amendment 5): the largest size L is channel-pruned to the smallest size S's parameter count in 4 geometric
rounds, each fine-tuned for 10 epochs at lr 0.01 (cosine per round), on the same split.

- A-prune: L trained dense at round(vertex L) (A's cell and its kept weights when that M was swept), pruned
  under five fine-tuning rules: constant (round(vertex L)), capacity (A's fitted schedule), zero, increasing
  (the negative control: a schedule from vertex S at L's size up to vertex L at S's) and the oracle
  (round(vertex S)); primary A3 = capacity − constant, paired by seed; void if the fitted schedule spans
  fewer than 3 magnitude units between L and S.
- B1: A's L cells at M=10 and M=0, the same pruning, fine-tuned at M=0; primary B1 = from M=10 − from M=0.
  Beside them S from scratch at round(vertex S) for 150 + 40 epochs (total epochs matched).
- B2: S with auxiliary heads (weight 0.3) at M=0 and M=10 against A's plain S cells; primary B2 = the
  interaction (aux − plain at M=10) − (aux − plain at M=0), paired by seed.
Holm over {A1, A3, B1, B2}. Runs: $AUGPIPE_RUNS/b/ (default runs/paper2/b/). Results: results2/b.md, b.json, b.png.
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

import a_sweep  # noqa: E402
import pilot  # noqa: E402
import run  # noqa: E402
import stats  # noqa: E402

RUNS = Path(os.environ["AUGPIPE_RUNS"]) / "b"
OUT = HERE / "results2"
SEEDS = (0, 1, 2)
ROUNDS, FINETUNE = 4, 10  # fine-tuning epochs per round: 40 after the dense model's
PRUNE = ["--method", "channel", "--rounds", str(ROUNDS), "--steps", "geometric", "--finetune-epochs", str(FINETUNE),
         "--lr", "0.01", "--split-seed", "0", "--workers", "0", "--no-progress"]
STRONG, AUX = 10, "0.3"
MIN_SPAN = 3.0  # A3 is void if the capacity schedule moves M less than this between L and S
RULES = ("constant", "capacity", "zero", "increasing", "oracle")


def design(reg: str) -> dict | None:
    """What experiment 2 needs from A: sizes, parameter counts, the vertices, the sparsity target."""
    a = json.loads((OUT / "a.json").read_text()) if (OUT / "a.json").is_file() else {}
    widths = a_sweep.WIDTHS[reg]
    large, small = widths[-1], widths[0]
    vertices = a.get("A2", {}).get("vertices", {})
    params = a.get("params", {})
    if not all(f"{w:g}" in vertices and f"{w:g}" in params for w in (large, small)) or \
            not (OUT / "a-schedule.json").is_file():
        return None
    p_l, p_s = params[f"{large:g}"], params[f"{small:g}"]
    return {"regime": reg, "large": large, "small": small, "params_large": p_l, "params_small": p_s,
            "vertex_large": vertices[f"{large:g}"]["vertex"], "vertex_small": vertices[f"{small:g}"]["vertex"],
            "target": round(1 - p_s / p_l, 4)}


def schedules(d: dict) -> dict:
    """The capacity rule's schedule (A's fit, a-schedule.json) and the increasing control's, written beside it."""
    from augpipe.driver.capacity import CapacitySchedule

    fitted = OUT / "a-schedule.json"
    increasing = OUT / "b-increasing-schedule.json"
    run.save_schedule(CapacitySchedule.fit([(d["params_large"], d["vertex_small"]),
                                            (d["params_small"], d["vertex_large"])]), increasing)
    cap = CapacitySchedule.load(fitted)
    return {"capacity": fitted, "increasing": increasing,
            "span": abs(cap(d["params_large"]) - cap(d["params_small"]))}


def dense(d: dict, seed: int) -> tuple[Path, list[str] | None]:
    """A-prune's dense model: A's cell at round(vertex L) if that M was swept (None: nothing to train)."""
    m = round(d["vertex_large"])
    if m in a_sweep.MAGNITUDES:
        return a_sweep.cell(d["regime"], d["large"], f"m{m}", seed), None
    out = RUNS / d["regime"] / f"dense-w{d['large']:g}-m{m}-s{seed}"
    return out, a_sweep.command(d["regime"], d["large"], ["--policy", "randaugment", "--magnitude", str(m)], seed, out)


def rules(d: dict, sched: dict) -> dict[str, list[str]]:
    m_l, m_s = round(d["vertex_large"]), round(d["vertex_small"])
    out = {"constant": ["--magnitude", str(m_l)],
           "capacity": ["--magnitude", "capacity", "--schedule", str(sched["capacity"])],
           "zero": ["--magnitude", "0"],
           "increasing": ["--magnitude", "capacity", "--schedule", str(sched["increasing"])],
           "oracle": ["--magnitude", str(m_s)]}
    if m_s == m_l:
        del out["oracle"]  # the same command as the constant rule
    return out


def prune_cmd(source: Path, args: list[str], target: float, out: Path) -> list[str]:
    return ["prune", "--from", str(source), "--target", f"{target:g}", *args, *PRUNE, "--out", str(out)]


def a_prune_runs(d: dict, sched: dict) -> tuple[list, list]:
    """(dense runs to train first, prune runs)."""
    dense_runs, prunes = [], []
    for s in SEEDS:
        src, argv = dense(d, s)
        if argv is not None:
            dense_runs.append((src, argv))
        for rule, args in rules(d, sched).items():
            out = RUNS / d["regime"] / f"aprune-{rule}-s{s}"
            prunes.append((out, prune_cmd(src, args, d["target"], out)))
    return dense_runs, prunes


def b1_runs(d: dict) -> list:
    reg, out = d["regime"], []
    for s in SEEDS:
        for m in (STRONG, 0):
            path = RUNS / reg / f"b1-from-m{m}-s{s}"
            out.append((path, prune_cmd(a_sweep.cell(reg, d["large"], f"m{m}", s), ["--magnitude", "0"],
                                        d["target"], path)))
        m_s = round(d["vertex_small"])
        path = RUNS / reg / f"b1-scratch-w{d['small']:g}-m{m_s}-s{s}"
        epochs = pilot.REGIMES[reg][3] + ROUNDS * FINETUNE  # total epochs matched with the pruned arms
        out.append((path, a_sweep.command(reg, d["small"], ["--policy", "randaugment", "--magnitude", str(m_s)], s,
                                          path, epochs)))
    return out


def b2_runs(d: dict) -> list:
    reg = d["regime"]
    return [(RUNS / reg / f"b2-aux-m{m}-s{s}",
             a_sweep.command(reg, d["small"], ["--policy", "randaugment", "--magnitude", str(m), "--aux-heads", AUX],
                             s, RUNS / reg / f"b2-aux-m{m}-s{s}"))
            for s in a_sweep.seeds(d["small"]) for m in (0, STRONG)]


def b2_control_runs(d: dict) -> list:
    """Amendment 13 (secondary): A's plain width-S cells at M=0 and M=10, rerun with their own commands (only
    --out differs) on the CPU type B2's auxiliary runs used, so that B2 has a same-CPU plain arm and the
    difference a CPU type makes is measured on ten paired cells."""
    reg = d["regime"]
    return [(RUNS / reg / f"b2-plain-m{m}-s{s}",
             a_sweep.command(reg, d["small"], a_sweep.ARMS[f"m{m}"], s, RUNS / reg / f"b2-plain-m{m}-s{s}"))
            for s in a_sweep.seeds(d["small"]) for m in (0, STRONG)]


def aux_cpus(d: dict) -> set[str]:
    return {c for p, _ in b2_runs(d) for c in a_sweep.cpus_of(p)}


def control_here(d: dict) -> bool:
    """B2's CPU control means something only on the CPU type every aux run ran on."""
    return aux_cpus(d) == {run._this_cpu()}


def experiment() -> bool:
    reg = a_sweep.regime()
    d = design(reg) if reg else None
    if d is None:
        print("experiment 2: A2 has no vertex for the largest and smallest size yet: not run", flush=True)
        return False
    for src in {a_sweep.cell(reg, d["large"], f"m{m}", s) for m in a_sweep.MAGNITUDES for s in SEEDS}:
        run.restore(pilot.RECORDS, src, keep_model=True)  # A's kept dense weights, from the records
    if not (control := control_here(d)):
        print(f"B2's CPU control (amendment 13) runs only on {', '.join(sorted(aux_cpus(d))) or 'the CPU type of the aux runs'}: "
              f"not on {run._this_cpu()}", flush=True)
    for runs, keep in stages(d, schedules(d), control):
        run.execute(runs, pilot.RECORDS, keep_model=keep)
    summarise()
    return True


def stages(d: dict, sched: dict, control: bool = False) -> list[tuple[list, set]]:
    """Experiment 2's runs in the order they start, each stage with the run directories whose weights are
    kept: B2 (cheapest) first; then the dense models A-prune starts from, B2's CPU control if `control`
    (amendment 13: this machine has the aux runs' CPU type), B1 (which prunes A's own cells) and A-prune,
    in one stage: each prune run waits only for its own dense model (`run.execute`), so no core waits
    while the third dense model trains."""
    dense_runs, prunes = a_prune_runs(d, sched)
    extra = b2_control_runs(d) if control else []
    return [(b2_runs(d), set()), (dense_runs + extra + b1_runs(d) + prunes, {p for p, _ in dense_runs})]


# ------------------------------------------------------------------ summary
def _val(path: Path) -> float | None:
    r = run.read_report(path, pilot.RECORDS)
    return r["val"]["accuracy"] if r and "val" in r else None


def _arm(paths: dict[int, Path]) -> dict[int, float]:
    return {s: v for s, p in paths.items() if (v := _val(p)) is not None}


def _rounds(paths: dict[int, Path]) -> dict[int, list[dict]]:
    """Per seed, a finished prune run's rounds (round 0: the dense model; then each round after its
    fine-tuning): sparsity, parameters, the magnitude it fine-tuned at, validation accuracy."""
    out = {}
    for s, p in paths.items():
        r = run.read_report(p, pilot.RECORDS)
        if r and r.get("rounds"):
            out[s] = [{k: x[k] for k in ("round", "sparsity", "params", "magnitude", "accuracy")} for x in r["rounds"]]
    return out


def _paired(a: dict, b: dict) -> dict | None:
    common = sorted(set(a) & set(b))
    return stats.paired([a[s] for s in common], [b[s] for s in common]) if len(common) >= 2 else None


def summarise() -> dict:
    reg = a_sweep.regime()
    d = design(reg) if reg else None
    if d is None:
        return {}
    a = json.loads((OUT / "a.json").read_text())
    sched = schedules(d)
    large, small = d["large"], d["small"]
    aprune = {rule: _arm({s: RUNS / reg / f"aprune-{rule}-s{s}" for s in SEEDS}) for rule in rules(d, sched)}
    b1 = {f"from M={m}": _arm({s: RUNS / reg / f"b1-from-m{m}-s{s}" for s in SEEDS}) for m in (STRONG, 0)}
    b1["scratch"] = _arm({s: RUNS / reg / f"b1-scratch-w{small:g}-m{round(d['vertex_small'])}-s{s}" for s in SEEDS})
    s_seeds = a_sweep.seeds(small)
    plain = {m: _arm({s: a_sweep.cell(reg, small, f"m{m}", s) for s in s_seeds}) for m in a_sweep.MAGNITUDES}
    aux = {m: _arm({s: RUNS / reg / f"b2-aux-m{m}-s{s}" for s in s_seeds}) for m in (0, STRONG)}
    same_cpu = {m: _arm({s: RUNS / reg / f"b2-plain-m{m}-s{s}" for s in s_seeds}) for m in (0, STRONG)}
    big = {m: _arm({s: a_sweep.cell(reg, large, f"m{m}", s) for s in SEEDS}) for m in (0, STRONG)}

    lines = [f"# Experiment 2: A in pruning, and B, in the regime `{reg}` (PLAN.md)", "",
             "`.venv/bin/python benchmarks/paper/b_prune.py` — validation accuracy of the final model, per seed; "
             f"split seed 0. Width {large:g} ({d['params_large']:,} parameters) channel-pruned to width {small:g}'s "
             f"{d['params_small']:,} (sparsity {d['target']:.4f}) in {ROUNDS} geometric rounds of {FINETUNE} "
             f"fine-tuning epochs. Vertices (A2): width {large:g} M = {d['vertex_large']:.1f}, width {small:g} "
             f"M = {d['vertex_small']:.1f}.", ""]
    expected = len(SEEDS) * (len(aprune) + len(b1)) + 2 * len(s_seeds)
    got = sum(len(v) for v in (*aprune.values(), *b1.values(), *aux.values()))
    if got < expected:
        lines += [f"**Partial**: {got} of {expected} runs.", ""]
    lines += ["| arm | values | mean |", "|---|---|---:|"]

    def row(name, vals):
        mean = sum(vals.values()) / len(vals) if vals else math.nan
        lines.append(f"| {name} | " + ", ".join(f"s{s} {vals[s]:.4f}" for s in sorted(vals)) + f" | {mean:.4f} |")

    for rule, vals in aprune.items():
        row(f"A-prune, {rule}", vals)
    for name, vals in b1.items():
        row(f"B1, {name}", vals)
    for m in (0, STRONG):
        row(f"B2, width {small:g} plain M={m}", plain[m])
        row(f"B2, width {small:g} aux heads M={m}", aux[m])
    for m in (0, STRONG):
        row(f"B2 CPU control (amendment 13): width {small:g} plain M={m}, rerun on the aux runs' CPU type",
            same_cpu[m])

    gain_large = _paired(big[STRONG], big[0])
    precondition = gain_large is not None and gain_large["diff"] > 0
    void = sched["span"] < MIN_SPAN
    family = {"A1": a.get("A1")}
    family["A3"] = None if void else _paired(aprune["capacity"], aprune["constant"])
    family["B1"] = _paired(b1[f"from M={STRONG}"], b1["from M=0"])
    diffs = {m: {s: aux[m][s] - plain[m][s] for s in aux[m] if s in plain[m]} for m in (0, STRONG)}
    family["B2"] = _paired(diffs[STRONG], diffs[0])
    tested = {k: v for k, v in family.items() if v is not None}
    adjusted = dict(zip(tested, stats.holm([v["p"] for v in tested.values()]))) if tested else {}
    lines += ["", "Precondition (A and B): width "
              f"{large:g} gains from M={STRONG} over M=0: " + (stats.fmt(gain_large) if gain_large else "not run yet")
              + (" — holds" if precondition else " — **absent**: A1, A3, B1, B2 are untestable here"), "",
              "Primary family (Holm over {A1, A3, B1, B2} at α = 0.05, paired t over seeds):"]
    names = {"A1": f"A1: (M=10 − M=0) at width {large:g} minus at width {small:g}",
             "A3": "A3: capacity schedule − constant M, final sparsity",
             "B1": f"B1: dense at M={STRONG} − dense at M=0, both pruned and fine-tuned at M=0",
             "B2": f"B2: interaction (aux − plain at M={STRONG}) − (aux − plain at M=0), width {small:g}"}
    verdicts = {}
    planned = {"A1": len(SEEDS), "A3": len(SEEDS), "B1": len(SEEDS), "B2": len(s_seeds)}
    for k, name in names.items():
        v = family[k]
        if k == "A3" and void:
            text = f"void: the fitted schedule spans {sched['span']:.1f} < {MIN_SPAN:g} magnitude units"
        elif v is None:
            text = "not enough seeds yet"
        elif (partial := stats.partial(v["n"], planned[k])) is not None:
            text = f"{stats.fmt(v, adjusted[k])}; per seed {[round(x, 2) for x in v['per_seed']]}: **{partial}**"
        else:
            verdicts[k] = stats.verdict(v, adjusted[k]) if precondition else "untestable here (precondition absent)"
            text = f"{stats.fmt(v, adjusted[k])}; per seed {[round(x, 2) for x in v['per_seed']]}: **{verdicts[k]}**"
        lines.append(f"- {name}: {text}")
    secondary = {"A-prune: oracle − constant": _paired(aprune.get("oracle", {}), aprune["constant"]),
                 "A-prune: capacity − zero": _paired(aprune["capacity"], aprune["zero"]),
                 "A-prune: capacity − increasing (negative control)": _paired(aprune["capacity"],
                                                                             aprune["increasing"]),
                 f"B1: from M={STRONG} − width {small:g} from scratch": _paired(b1[f"from M={STRONG}"], b1["scratch"]),
                 "B1: from M=0 − width {small:g} from scratch".format(small=small): _paired(b1["from M=0"],
                                                                                          b1["scratch"])}
    best_plain = max(plain, key=lambda m: sum(plain[m].values()) / len(plain[m]) if plain[m] else -1)
    best_aux = max(aux, key=lambda m: sum(aux[m].values()) / len(aux[m]) if aux[m] else -1)
    if len(plain[best_plain]) >= 2 and len(aux[best_aux]) >= 2:
        secondary[f"B2: best aux (M={best_aux}) − best plain (M={best_plain}), Welch"] = stats.welch(
            list(aux[best_aux].values()), list(plain[best_plain].values()))
    pairs = [(same_cpu[m][s], plain[m][s]) for m in (0, STRONG) for s in s_seeds if s in same_cpu[m] and s in plain[m]]
    control = {"rerun − record": stats.paired(*zip(*pairs)) if len(pairs) >= 2 else None,
               "runs": sum(len(v) for v in same_cpu.values()), "planned": 2 * len(s_seeds)}
    same = {m: {s: aux[m][s] - same_cpu[m][s] for s in aux[m] if s in same_cpu[m]} for m in (0, STRONG)}
    control["B2 interaction, same-CPU plain arm"] = _paired(same[STRONG], same[0])
    control[f"aux − same-CPU plain at M={STRONG}"] = _paired(aux[STRONG], same_cpu[STRONG])
    lines += ["", "Secondary (unadjusted):"]
    for k, v in secondary.items():
        lines.append(f"- {k}: " + (stats.fmt(v) if v is not None else "not enough seeds yet"))
    lines += ["", f"B2's CPU control (amendment 13, secondary; {control['runs']} of {control['planned']} runs): A's "
                  f"plain width-{small:g} cells rerun with their commands on the CPU type of the aux runs."]
    for k in ("rerun − record", "B2 interaction, same-CPU plain arm", f"aux − same-CPU plain at M={STRONG}"):
        v = control[k]
        lines.append(f"- {k}: " + (stats.fmt(v) + f"; per pair {[round(x, 2) for x in v['per_seed']]}"
                                   if v is not None else "not enough runs yet"))
    by_round = {rule: _rounds({s: RUNS / reg / f"aprune-{rule}-s{s}" for s in SEEDS}) for rule in aprune}
    lines += _round_table(by_round)
    lines += ["", f"The capacity schedule (a-schedule.json) spans {sched['span']:.1f} magnitude units between "
                  f"width {large:g} and width {small:g}'s size."]
    groups = {"A-prune": [p for p, _ in a_prune_runs(d, sched)[1]], "B1": [p for p, _ in b1_runs(d)],
              f"B2 plain (A's width {small:g} cells)": [a_sweep.cell(reg, small, f"m{m}", s) for m in (0, STRONG)
                                                       for s in s_seeds],
              "B2 aux heads": [p for p, _ in b2_runs(d)]}
    cpus = {k: sorted({c for p in paths for c in a_sweep.cpus_of(p)}) for k, paths in groups.items()}
    lines += ["", "CPUs per arm (PLAN.md amendment 3: the CPU is part of the run; across CPU types a rerun "
                  "behaves like another seed): " + "; ".join(f"{k}: {', '.join(c) or '—'}" for k, c in cpus.items())]
    data = {"design": d, "span": sched["span"], "precondition": gain_large, "aprune": aprune, "cpus": cpus,
            "aprune_rounds": by_round, "b1": b1,
            "b2": {"plain": plain, "aux": aux, "plain_same_cpu": same_cpu}, "b2_cpu_control": control,
            "family": family, "holm": adjusted, "verdicts": verdicts,
            "secondary": {k: v for k, v in secondary.items() if v is not None}, "complete": got >= expected}
    OUT.mkdir(exist_ok=True)
    if any(by_round.values()) or any(b1.values()) or any(aux.values()):
        _plot(by_round, b1, plain, aux, small, OUT / "b.png")
        lines += ["", "![A-prune per rule against sparsity; B1's and B2's arms per seed](b.png)"]
    (OUT / "b.md").write_text("\n".join(lines) + "\n")
    (OUT / "b.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    return data


def _round_table(by_round: dict[str, dict[int, list[dict]]]) -> list[str]:
    """A-prune at every sparsity (secondary): each rule's mean validation accuracy after each round's
    fine-tuning, the magnitude it fine-tuned at, and capacity − constant paired by seed per round."""
    done = {rule: seeds for rule, seeds in by_round.items() if seeds}
    if not done:
        return []
    first = next(iter(next(iter(done.values())).values()))
    lines = ["", "A-prune at every sparsity (secondary): mean validation accuracy after each round's fine-tuning "
             "(round 0: the dense model, before pruning), the magnitude fine-tuned at, seeds in brackets.", "",
             "| rule | " + " | ".join(f"round {x['round']}: sparsity {x['sparsity']:.3f}, {x['params']:,} params"
                                     for x in first) + " |", "|---|" + "---:|" * len(first)]
    for rule, seeds in done.items():
        cells = []
        for k in range(len(first)):
            acc = [rs[k]["accuracy"] for rs in seeds.values() if len(rs) > k]
            m = next(rs[k]["magnitude"] for rs in seeds.values() if len(rs) > k)
            cells.append(f"{sum(acc) / len(acc):.4f} (M {m:.1f}, {len(acc)})")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    cap, const = done.get("capacity", {}), done.get("constant", {})
    for k in range(1, len(first)):
        test = _paired({s: rs[k]["accuracy"] for s, rs in cap.items() if len(rs) > k},
                       {s: rs[k]["accuracy"] for s, rs in const.items() if len(rs) > k})
        if test is not None:
            lines.append(f"- round {k}, capacity − constant: {stats.fmt(test)}")
    return lines


def _plot(by_round: dict, b1: dict, plain: dict, aux: dict, small: float, path: Path) -> None:
    """Left: A-prune, each rule's validation accuracy against parameters after each round (mean over seeds,
    seeds as dots). Right: B1's arms and B2's four cells, each seed a dot and the mean a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for rule, seeds in by_round.items():
        if not seeds:
            continue
        n = min(len(rs) for rs in seeds.values())
        xs = [next(iter(seeds.values()))[k]["params"] for k in range(n)]
        means = [100 * sum(rs[k]["accuracy"] for rs in seeds.values()) / len(seeds) for k in range(n)]
        line, = ax.plot(xs, means, marker="o", label=f"{rule} ({len(seeds)} seeds)")
        for rs in seeds.values():
            ax.scatter(xs, [100 * rs[k]["accuracy"] for k in range(n)], s=8, color=line.get_color(), alpha=0.5)
    ax.set_xscale("log")
    if not any(by_round.values()):
        ax.text(0.5, 0.5, "no A-prune run has finished yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.minorticks_off()
    else:
        first = next(iter(next(s for s in by_round.values() if s).values()))
        ax.set_xticks([x["params"] for x in first], [f"{x['params']:,}" for x in first], fontsize=8)
        ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("parameters (dense → pruned)")
    ax.set_ylabel("validation accuracy, %")
    ax.set_title("A-prune: fine-tuning rules")
    if any(by_round.values()):
        ax.legend(fontsize=8)
    arms = {**{f"B1 {k}": v for k, v in b1.items()},
            **{f"B2 w{small:g} {kind} M={m}": cell for m in (0, STRONG)
               for kind, cell in (("plain", plain.get(m, {})), ("aux", aux.get(m, {})))}}
    for i, (name, vals) in enumerate(arms.items()):
        if vals:
            bx.bar(i, 100 * sum(vals.values()) / len(vals), color="lightgray")
            bx.scatter([i] * len(vals), [100 * v for v in vals.values()], s=10, color="black")
    bx.set_xticks(range(len(arms)), list(arms), rotation=35, ha="right", fontsize=8)
    filled = [100 * v for vals in arms.values() for v in vals.values()]
    if filled:
        bx.set_ylim(min(filled) - 1, max(filled) + 1)
    bx.set_ylabel("validation accuracy, %")
    bx.set_title("B1 and B2")
    fig.tight_layout()
    run.save_figure(fig, path)


if __name__ == "__main__":
    if sys.argv[1:] == ["summary"]:
        print((OUT / "b.md").read_text() if summarise() else "experiment 2 has not run: A2 has no vertices yet")
    elif sys.argv[1:]:
        sys.exit(__doc__)
    else:
        experiment()
