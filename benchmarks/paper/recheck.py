"""Rerun recorded paper runs from their report.json commands and compare.

    python benchmarks/paper/recheck.py runs/paper/sweep/cells/w0.25-m14-s1 runs/paper/gate/fallback-m14-s0 ...

Each run's recorded `augpipe ...` command is executed again, unchanged except
for `--out` (a fresh directory under $AUGPIPE_RUNS/recheck/), with the same
thread settings as the original runs (benchmarks/paper/env.sh: one thread per
process). The test and validation accuracy and loss of the rerun are compared
with the recorded ones bit for bit; the table is written to
benchmarks/paper/results/recheck.md and recheck.json. Exit status 1 if any
rerun on the recorded run's CPU type differs. The CPU models of both are listed:
bit-identity holds on the same CPU type; across CPU types a rerun behaves like
another seed, so such a row is reported and does not fail. Reports written since
2026-12-06 hold their `environment` (CPU family/model/stepping and ISA flags, the
ISA torch dispatches to, python/torch/numpy/numba versions): where both runs have
it, "same CPU type" means the same environment, since a VM's model name ("AMD
EPYC") can cover CPU generations that round differently. A committed record
(benchmarks/paper/results2/records/...) is a run directory here too.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = Path(os.environ.get("AUGPIPE_RUNS", ROOT / "runs" / "paper"))
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def metrics(report: dict) -> dict:
    """The final numbers a run reports: test always, validation where the run has one."""
    out = {"test_accuracy": report["test"]["accuracy"], "test_loss": report["test"].get("loss")}
    if "val" in report:
        out |= {"val_accuracy": report["val"]["accuracy"], "val_loss": report["val"].get("loss")}
    elif report.get("rounds"):
        out["val_accuracy"] = report["rounds"][-1]["accuracy"]
    if "train_clean" in report:
        out |= {"train_clean_accuracy": report["train_clean"]["accuracy"],
                "train_clean_loss": report["train_clean"]["loss"]}
    return out


def rerun(run: Path) -> dict:
    recorded = json.loads((run / "report.json").read_text())
    argv = shlex.split(recorded["command"])
    if argv[0] != "augpipe" or "--out" not in argv:
        raise SystemExit(f"{run}: recorded command is not an `augpipe ... --out DIR` run: {recorded['command']}")
    out = RUNS / "recheck" / run.name
    shutil.rmtree(out, ignore_errors=True)
    argv[argv.index("--out") + 1] = str(out)
    argv[0:1] = [sys.executable, "-m", "augpipe"]  # this interpreter's augpipe (the venv's)
    print(f"rerunning {run} ...", flush=True)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{run.name}.log", "w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT, check=True)
    again = json.loads((out / "report.json").read_text())
    a, b = metrics(recorded), metrics(again)
    row = {"run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
           "command": recorded["command"].replace(f"{ROOT}/", ""), "recorded": a, "rerun": b,
           "identical": a == b, "rerun_wall_s": round(time.perf_counter() - start, 1),
           "recorded_wall_s": recorded.get("wall_s_total", recorded.get("wall_s")),
           # bit-identity is promised on the same CPU type only (training kernels round differently across CPUs)
           "recorded_cpu": recorded.get("cpu"), "rerun_cpu": again.get("cpu"),
           "recorded_cpus": sorted(set(recorded.get("cpus") or [recorded.get("cpu")]) - {None})}
    # identity is expected only where every process of the recorded run ran on the rerun's CPU type; where
    # both reports hold their environment (CPU family/model/ISA, numeric libraries), it must match too
    row["same_cpu"] = row["recorded_cpus"] == [again.get("cpu")]
    env_a, env_b = recorded.get("environment"), again.get("environment")
    row["environment_differs"] = None if env_a is None or env_b is None else \
        sorted(k for k in set(env_a) | set(env_b) if env_a.get(k) != env_b.get(k))
    if row["environment_differs"]:
        row["same_cpu"] = False
    print(f"  {'identical' if row['identical'] else 'DIFFERENT'}"
          f"{'' if row['same_cpu'] else ' (recorded on another CPU type: not expected to be identical)'}: "
          f"recorded {a} rerun {b}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding a report.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "paper" / "results")
    args = parser.parse_args()
    missing = [str(r) for r in args.runs if not (r / "report.json").is_file()]
    if missing:
        sys.exit(f"no report.json in: {', '.join(missing)}")
    rows = [rerun(r.resolve()) for r in args.runs]
    lines = ["# Reruns of recorded paper runs\n",
             "`python benchmarks/paper/recheck.py " + " ".join(r["run"] for r in rows) + "` — each recorded "
             "command run again (new `--out`), one thread per process as in the original runs.\n",
             "| run | recorded test acc / loss | rerun test acc / loss | bit-identical | CPU (recorded → rerun) |",
             "|---|---:|---:|---|---|"]
    different = [r for r in rows if not r["identical"] and r["same_cpu"]]
    for r in rows:
        rec, new = r["recorded"], r["rerun"]
        lines.append(f"| {r['run']} | {rec['test_accuracy']:.4f} / {rec['test_loss']!r} | "
                     f"{new['test_accuracy']:.4f} / {new['test_loss']!r} | {'yes' if r['identical'] else '**no**'} | "
                     f"{'; '.join(r['recorded_cpus']) or 'not recorded'} → {r['rerun_cpu']}"
                     f"{'' if r['same_cpu'] else ' (another CPU type)'}"
                     + ("; environment not recorded" if r["environment_differs"] is None else
                        f"; differs in {', '.join(r['environment_differs'])}" if r["environment_differs"] else
                        "; same environment") + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recheck.md").write_text("\n".join(lines) + "\n")
    (args.out / "recheck.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))
    # a rerun on another CPU type behaves like another seed (README): only same-CPU differences fail
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    main()
