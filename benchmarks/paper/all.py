"""Every experiment of PLAN.md in order, resumable: the regime pilot, then C
(which needs no go rule), C2's measurement, then A in the pilot's regime (if
the go rule chose one), then experiment 2 (A in pruning, and B) once A has
its vertices. Rerun it as is after an interruption; finished runs
are skipped, interrupted ones resume.

    .venv/bin/python benchmarks/paper/all.py
    .venv/bin/python benchmarks/paper/all.py save-inflight   # before a session ends (runs paused):
                                                             # unfinished runs' last checkpoints into the records

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

if __name__ == "__main__":
    if sys.argv[1:] == ["save-inflight"]:
        for out in run.save_inflight(pilot.RECORDS):
            print(f"kept {out.relative_to(run.RUNS)} (its last checkpoint) in {pilot.RECORDS}")
        sys.exit()
    pilot.pilot()
    c_teacher.experiment()
    c_teacher.measure()
    a_sweep.experiment()
    b_prune.experiment()
