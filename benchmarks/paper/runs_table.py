"""Every finished run of PLAN.md's experiments in one table, from the committed records.

    .venv/bin/python benchmarks/paper/runs_table.py     # writes results2/results.md and results.json

One row per run under benchmarks/paper/results2/records/ (a report.json there means the run finished):
experiment, run, seed, split seed, epochs, parameters, validation / test / clean-train accuracy, the
train-val gap, wall time summed over resumed processes, the CPU model(s) it ran on, and the command that
reruns it (recheck.py reruns one and compares bit for bit on the same CPU type). Runs in flight
(records holding only a checkpoint) are counted apart, never listed as results.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDS = HERE / "results2" / "records"
OUT = HERE / "results2"


def _cpus(report: dict, record: Path) -> list[str]:
    """Every CPU type the run used: a run resumed from a kept checkpoint lists them (PLAN.md amendment 4)."""
    return sorted(set(report.get("cpus") or []) | ({report["cpu"]} if report.get("cpu") else set()))


def _row(record: Path, report: dict, records: Path) -> dict:
    config = report.get("config", {})
    accuracy = {k: (report.get(k) or {}).get("accuracy") for k in ("val", "test", "train_clean")}
    gap = report.get("train_val_gap")
    if gap is None and None not in (accuracy["train_clean"], accuracy["val"]):
        gap = accuracy["train_clean"] - accuracy["val"]
    rel = record.relative_to(records)
    def field(k):  # a record rebuilt from pilot.json (restored_from) holds these at the top level
        return config.get(k, report.get(k))

    return {"experiment": rel.parts[0], "run": "/".join(rel.parts[1:]), "seed": field("seed"),
            "split_seed": field("split_seed"), "epochs": len(report.get("history", [])) or field("epochs"),
            "params": report.get("params"), **accuracy, "gap": gap,
            "wall_s_total": report.get("wall_s_total", report.get("wall_s")), "cpus": _cpus(report, record),
            "command": report.get("command"), "environment": report.get("environment"),
            **({"restored_from": report["restored_from"]}
                                                  if "restored_from" in report else {})}


def collect(records: Path = RECORDS) -> tuple[list[dict], list[str]]:
    """(finished runs' rows, in-flight runs' names), in path order."""
    rows, inflight = [], []
    for d in sorted(p for p in records.rglob("*") if p.is_dir() and p.name != "inflight"):
        if (d / "report.json").is_file():
            rows.append(_row(d, json.loads((d / "report.json").read_text()), records))
        elif (d / "inflight" / "run.json").is_file():
            inflight.append(str(d.relative_to(records)))
    return rows, inflight


def _fmt(x, spec):
    return "" if x is None else format(x, spec)


def write(out: Path = OUT, records: Path = RECORDS) -> dict:
    rows, inflight = collect(records)
    hours = sum(r["wall_s_total"] or 0 for r in rows) / 3600
    lines = ["# Every finished run (PLAN.md's experiments)", "",
             "`.venv/bin/python benchmarks/paper/runs_table.py` — from `results2/records/`. val / test / clean = "
             "accuracy on the 5,000 validation images, the 10,000 test images, the un-augmented training images; "
             "gap = clean − val in points; wall = seconds summed over resumed processes (including pauses, "
             "PLAN.md amendment 2). Rerun a row with its command (`recheck.py`); bit-identity holds on the same "
             "CPU type only.", "",
             f"{len(rows)} finished runs, {hours:.1f} h of wall time in all"
             + (f"; {len(inflight)} in flight (kept checkpoints): " + ", ".join(inflight) if inflight else "") + ".",
             "", "| experiment | run | seed | split | epochs | params | val | test | clean | gap | wall s | CPU | "
             "command |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        gap = "" if r["gap"] is None else f"{100 * r['gap']:+.2f}"
        lines.append(f"| {r['experiment']} | {r['run']} | {_fmt(r['seed'], '')} | {_fmt(r['split_seed'], '')} | "
                     f"{_fmt(r['epochs'], '')} | {_fmt(r['params'], ',')} | {_fmt(r['val'], '.4f')} | "
                     f"{_fmt(r['test'], '.4f')} | {_fmt(r['train_clean'], '.4f')} | {gap} | "
                     f"{_fmt(r['wall_s_total'], '.0f')} | {'; '.join(r['cpus'])} | `{r['command']}` |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    data = {"runs": rows, "inflight": inflight}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out / "results.json")
    return data


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit(__doc__)
    d = write()
    print(f"{len(d['runs'])} finished runs, {len(d['inflight'])} in flight -> {OUT / 'results.md'}")
