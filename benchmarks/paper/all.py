"""Every experiment of PLAN.md in order, resumable: the regime pilot, then C
(which needs no go rule), C2's measurement, then A in the pilot's regime (if
the go rule chose one), then experiment 2 (A in pruning, and B) once A has
its vertices. Rerun it as is after an interruption; finished runs
are skipped, interrupted ones resume.

    .venv/bin/python benchmarks/paper/all.py
    .venv/bin/python benchmarks/paper/all.py save-inflight   # before a session ends (runs paused):
                                                             # unfinished runs' last checkpoints into the records
    .venv/bin/python benchmarks/paper/all.py summary         # every experiment's tables from what has run,
                                                             # and results2/results.md (every finished run)

Finished runs are kept in benchmarks/paper/results2/records/ (commit them); run directories stay on the
machine (runs/paper2/).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import a_sweep  # noqa: E402
import b_prune  # noqa: E402
import c_teacher  # noqa: E402
import pilot  # noqa: E402

import run  # noqa: E402
import runs_table  # noqa: E402


def summary() -> None:
    for experiment in (pilot, c_teacher, a_sweep, b_prune):
        experiment.summarise()
    d = runs_table.write()
    print(f"{len(d['runs'])} finished runs, {len(d['inflight'])} in flight: {runs_table.OUT / 'results.md'}")


if __name__ == "__main__":
    if sys.argv[1:] == ["save-inflight"]:
        for out in run.save_inflight(pilot.RECORDS):
            print(f"kept {out.relative_to(run.RUNS)} (its last checkpoint) in {pilot.RECORDS}")
        sys.exit()
    if sys.argv[1:] == ["summary"]:
        summary()
        sys.exit()
    if sys.argv[1:]:
        sys.exit(__doc__)
    pilot.pilot()
    c_teacher.experiment()
    c_teacher.measure()
    a_sweep.experiment()
    b_prune.experiment()
    runs_table.write()
