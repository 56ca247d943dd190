"""The paper's scripts (benchmarks/paper/) against a tiny real sweep: the summary
lists every run with what reproduces it, and a rerun of a recorded command is
compared bit for bit (and a changed record is caught)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "benchmarks" / "paper"


def _run(argv, runs: Path, check=True):
    env = {**os.environ, "AUGPIPE_RUNS": str(runs), "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True)
    assert not check or done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    runs = tmp_path_factory.mktemp("paper")
    _run(["-m", "augpipe", "sweep", "--model", "cnn", "--widths", "0.25,0.5", "--magnitudes", "0,14", "--seeds", "2",
          "--epochs", "1", "--train-size", "128", "--val-size", "64", "--test-size", "64", "--batch-size", "64",
          "--workers", "0", "--jobs", "1", "--out", str(runs / "sweep")], runs)
    return runs


def test_summary_lists_every_run_with_seed_epochs_wall_time_and_command(tiny_sweep, tmp_path):
    _run([str(PAPER / "summarize.py"), "--out", str(tmp_path)], tiny_sweep)
    data = json.loads((tmp_path / "results.json").read_text())
    runs = data["runs"]
    assert len(runs) == 8  # 2 widths x 2 magnitudes x 2 seeds
    assert {(r["width"], r["magnitude"], r["seed"]) for r in runs} == {
        (w, m, s) for w in (0.25, 0.5) for m in (0.0, 14.0) for s in (0, 1)}
    for r in runs:
        assert r["epochs"] == 1 and r["wall_s"] > 0 and r["command"].startswith("augpipe train ")
    text = (tmp_path / "results.md").read_text()
    assert "| 0.25 | 2,294 |" in text and "8 training runs" in text
    assert "Experiment 2 has not run" in text  # missing runs are said, never filled in
    assert (tmp_path / "sweep-plot.png").stat().st_size > 0


def test_recheck_reruns_a_recorded_command_bit_identically_and_catches_a_changed_record(tiny_sweep, tmp_path):
    cell = tiny_sweep / "sweep" / "cells" / "w0.25-m14-s1"
    ok = _run([str(PAPER / "recheck.py"), str(cell), "--out", str(tmp_path)], tiny_sweep)
    [row] = json.loads((tmp_path / "recheck.json").read_text())
    assert row["identical"] and row["rerun"]["test_loss"] == row["recorded"]["test_loss"], ok.stdout

    report = json.loads((cell / "report.json").read_text())
    report["test"]["loss"] += 1e-12  # one ulp-scale change must be reported
    (cell / "report.json").write_text(json.dumps(report))
    changed = _run([str(PAPER / "recheck.py"), str(cell), "--out", str(tmp_path)], tiny_sweep, check=False)
    assert changed.returncode == 1
    assert "| **no** |" in (tmp_path / "recheck.md").read_text()
