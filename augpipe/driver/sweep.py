"""`augpipe sweep`: accuracy against magnitude per model width (finding A),
the best magnitude per size, and the CapacitySchedule fitted to them.

Each (width, magnitude, seed) cell is one `augpipe train` run in
out/cells/<name>/ and a small out/cells/<name>.json that records the exact
command reproducing it; a killed sweep skips the finished cells on rerun and
resumes an interrupted one from its last checkpoint.
"""
from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import checkpoint
from .capacity import CapacitySchedule
from .plots import plot_sweep

BOOTSTRAP = 2000


def cell_argv(cfg: dict, width: float, magnitude: float, seed: int, out: Path) -> list[str]:
    """The `augpipe train` arguments of one cell."""
    argv = ["train", "--model", cfg["model"], "--width", f"{width:g}", "--magnitude", f"{magnitude:g}",
            "--seed", str(seed), "--epochs", str(cfg["epochs"]), "--lr", f"{cfg['lr']:g}", "--data", cfg["data"],
            "--val-size", str(cfg["val_size"]), "--channels", str(cfg["channels"]), "--policy", cfg["policy"],
            "--batch-size", str(cfg["batch_size"]), "--workers", str(cfg["workers"]), "--no-progress", "--no-plot"]
    for key in ("train_size", "test_size", "split_seed", "eval_every"):
        if cfg.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(cfg[key])]
    if cfg.get("size") is not None:
        argv += ["--size", str(cfg["size"])]
    return argv + ["--out", str(out)]


def _run_cell(argv: list[str], threads: int | None) -> dict:
    """One cell, in this process: exactly what `augpipe <argv>` does."""
    import argparse

    import torch

    from .options import _config, add_parsers
    from .runs import run_train

    if threads:
        torch.set_num_threads(threads)
    parser = argparse.ArgumentParser(prog="augpipe")
    add_parsers(parser.add_subparsers(dest="command"))
    start = time.perf_counter()
    report = run_train(_config(parser.parse_args(argv), "train"), "augpipe " + shlex.join(argv))
    return {"params": report["params"], "test_accuracy": report.get("test", {}).get("accuracy"),
            "val_accuracy": report.get("val", {}).get("accuracy"), "wall_s": time.perf_counter() - start}


def run_sweep(cfg: dict, command: str) -> dict:
    out = Path(cfg["out"])
    checkpoint.prepare_run_dir(out, cfg, command)
    cells = {}
    for w in cfg["widths"]:
        for m in cfg["magnitudes"]:
            for s in range(cfg["seeds"]):
                name = f"w{w:g}-m{m:g}-s{s}"
                cells[name] = {"width": w, "magnitude": m, "seed": s, "epochs": cfg["epochs"],
                               "argv": cell_argv(cfg, w, m, s, out / "cells" / name)}
    todo = [n for n in cells if not (out / "cells" / f"{n}.json").is_file()]
    print(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run")

    def done(name: str, result: dict) -> None:
        cell = {k: v for k, v in cells[name].items() if k != "argv"}
        cell.update(result, command="augpipe " + shlex.join(cells[name]["argv"]))
        checkpoint.write_json(cell, out / "cells" / f"{name}.json")
        print(f"  {name}: val {cell['val_accuracy']}, test {cell['test_accuracy']} ({cell['wall_s']:.0f} s)")

    # A failing cell is reported at the end; the others still run and are recorded (a rerun retries it).
    failed: dict[str, str] = {}
    if cfg["jobs"] <= 1:
        for name in todo:
            try:
                done(name, _run_cell(cells[name]["argv"], None))
            except (ValueError, FileNotFoundError, RuntimeError) as err:
                failed[name] = str(err)
    else:
        with ProcessPoolExecutor(cfg["jobs"], mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_run_cell, cells[name]["argv"], 1): name for name in todo}
            for future in as_completed(futures):
                try:
                    done(futures[future], future.result())
                except Exception as err:  # the cell's own error, raised in its worker process
                    failed[futures[future]] = f"{type(err).__name__}: {err}"
    if failed:
        raise ValueError(f"{len(failed)} sweep cells failed (the others are recorded; rerun to retry): " +
                         "; ".join(f"{n}: {e}" for n, e in failed.items()))
    records = [json.loads((out / "cells" / f"{n}.json").read_text()) for n in cells]
    return summarise(records, out, cfg, command)


def summarise(records: list[dict], out: Path, cfg: dict, command: str) -> dict:
    """results.json, table.md, plot.png and schedule.json from the cell records."""
    metric = "val_accuracy" if all(r.get("val_accuracy") is not None for r in records) else "test_accuracy"
    summary: dict = {}
    for w in sorted({r["width"] for r in records}):
        rows = [r for r in records if r["width"] == w]
        ms = sorted({r["magnitude"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        acc = np.array([[next(r[metric] for r in rows if r["magnitude"] == m and r["seed"] == s) for s in seeds]
                        for m in ms])
        means = acc.mean(1)
        rng = np.random.default_rng(0)
        picks = [ms[int(np.argmax(acc[:, rng.integers(0, len(seeds), len(seeds))].mean(1)))]
                 for _ in range(BOOTSTRAP)]
        summary[f"{w:g}"] = {
            "width": w, "params": rows[0]["params"], "best_magnitude": ms[int(np.argmax(means))],
            "best_accuracy": float(means.max()), "best_interval_90": [float(np.percentile(picks, 5)),
                                                                      float(np.percentile(picks, 95))],
            "cells": {f"{m:g}": {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                                 "n": len(a)} for m, a in zip(ms, acc)}}
    schedule = CapacitySchedule.fit([(row["params"], row["best_magnitude"]) for row in summary.values()])
    schedule.save(out / "schedule.json")
    results = {"command": command, "config": cfg, "metric": metric, "summary": summary,
               "schedule": schedule.to_dict(), "cells": records}
    checkpoint.write_json(results, out / "results.json")
    table = format_table(summary, metric, schedule, cfg)
    (out / "table.md").write_text(table)
    plot_sweep(summary, out / "plot.png", f"{cfg['model']}: {metric.replace('_', ' ')} vs magnitude "
                                          f"({cfg['seeds']} seeds, {cfg['epochs']} epochs)")
    print(table)
    return results


def format_table(summary: dict, metric: str, schedule: CapacitySchedule, cfg: dict) -> str:
    ms = list(next(iter(summary.values()))["cells"])
    lines = [f"{cfg['model']}, {cfg['epochs']} epochs, {cfg['seeds']} seeds: {metric.replace('_', ' ')}, "
             "mean ± std over seeds", "",
             "| width | params | " + " | ".join(f"M={m}" for m in ms) + " | best M | 90% bootstrap |",
             "|---:|---:|" + "---:|" * len(ms) + "---:|---:|"]
    for w, row in summary.items():
        cells = " | ".join(f"{row['cells'][m]['mean']:.4f} ± {row['cells'][m]['std']:.4f}" for m in ms)
        lo, hi = row["best_interval_90"]
        lines.append(f"| {w} | {row['params']:,} | {cells} | {row['best_magnitude']:g} | {lo:g}..{hi:g} |")
    lines += ["", f"Fitted CapacitySchedule: {schedule.describe()}, c = non-zero parameters "
                  "(least squares on log10 params vs best M; saved as schedule.json)", ""]
    return "\n".join(lines)
