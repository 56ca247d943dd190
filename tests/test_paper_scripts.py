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

    report["cpu"] = "Some Other CPU"  # recorded on another CPU type: a difference is reported, not a failure
    (cell / "report.json").write_text(json.dumps(report))
    other = _run([str(PAPER / "recheck.py"), str(cell), "--out", str(tmp_path)], tiny_sweep, check=False)
    [row] = json.loads((tmp_path / "recheck.json").read_text())
    assert other.returncode == 0 and not row["identical"] and not row["same_cpu"], other.stdout
    assert "Some Other CPU → " in (tmp_path / "recheck.md").read_text()

    report["cpu"] = row["rerun_cpu"]  # the same model name, but another CPU generation: not the same type
    report["environment"] = {**report["environment"], "cpu_id": "vendor_id Other cpu family 99"}
    (cell / "report.json").write_text(json.dumps(report))
    other = _run([str(PAPER / "recheck.py"), str(cell), "--out", str(tmp_path)], tiny_sweep, check=False)
    [row] = json.loads((tmp_path / "recheck.json").read_text())
    assert other.returncode == 0 and not row["same_cpu"] and row["environment_differs"] == ["cpu_id"]
    assert "differs in cpu_id" in (tmp_path / "recheck.md").read_text()


def test_experiment_2_commands_follow_the_plan(tmp_path, monkeypatch):
    """b_prune.py builds PLAN.md's experiment 2 from A's results: the sparsity target, the five rules (the
    increasing control really increases as the model shrinks), dense models reused from A when their M was
    swept, total epochs matched for the from-scratch arm; and augpipe's own parser accepts every command."""
    import argparse

    sys.path.insert(0, str(PAPER))
    import a_sweep
    import b_prune

    from augpipe.driver import options
    from augpipe.driver.capacity import CapacitySchedule

    monkeypatch.setattr(b_prune, "OUT", tmp_path)
    params = {"0.25": 17462, "0.5": 68010, "1": 272186, "2": 1084010}
    assert b_prune.design("resnet20-2k") is None  # nothing from A yet: experiment 2 waits
    CapacitySchedule.fit([(17462, 1.0), (1084010, 13.0)]).save(tmp_path / "a-schedule.json")

    def a_json(v_large, v_small):
        vertices = {"0.25": {"vertex": v_small}, "0.5": {"vertex": 4.0}, "1": {"vertex": 6.0},
                    "2": {"vertex": v_large}}
        (tmp_path / "a.json").write_text(json.dumps({"params": params, "A2": {"vertices": vertices}}))
        return b_prune.design("resnet20-2k")

    d = a_json(12.4, 1.2)
    assert d["target"] == round(1 - 17462 / 1084010, 4) and (d["large"], d["small"]) == (2, 0.25)
    sched = b_prune.schedules(d)
    up = CapacitySchedule.load(sched["increasing"])
    assert up(1084010) == pytest.approx(1.2) and up(17462) == pytest.approx(12.4)  # the negative control
    assert sched["span"] == pytest.approx(12.0)
    dense, prunes = b_prune.a_prune_runs(d, sched)
    assert [p.name for p, _ in dense] == [f"dense-w2-m12-s{s}" for s in (0, 1, 2)]  # M=12 was not swept
    assert dense[0][1][dense[0][1].index("--magnitude") + 1] == "12" and "--epochs" in dense[0][1]
    assert sorted(p.name for p, _ in prunes) == sorted(f"aprune-{r}-s{s}" for r in b_prune.RULES for s in (0, 1, 2))
    constant = next(argv for p, argv in prunes if p.name == "aprune-constant-s1")
    assert constant[constant.index("--from") + 1] == str(dense[1][0]) and constant[constant.index("--magnitude") + 1] == "12"
    (b2, _), (rest, kept) = b_prune.stages(d, sched)  # B1 and A-prune beside the dense models
    assert rest[:3] == dense and rest[-len(prunes):] == prunes and len(rest) == 3 + 9 + 15
    assert kept == {p for p, _ in dense}  # each prune run waits for its own dense model, listed before it
    with_control, _ = b_prune.stages(d, sched, control=True)[1]  # amendment 13: after the dense runs
    import run

    monkeypatch.setattr(run, "_this_cpu", lambda: "AMD EPYC")
    monkeypatch.setattr(a_sweep, "cpus_of", lambda path: {"AMD EPYC"})
    assert b_prune.control_here(d)  # this machine has the aux runs' CPU type
    monkeypatch.setattr(a_sweep, "cpus_of", lambda path: {"Intel(R) Xeon(R) Processor"})
    assert not b_prune.control_here(d)
    control = with_control[3:13]
    assert [p.name for p, _ in control] == [f"b2-plain-m{m}-s{s}" for s in range(5) for m in (0, 10)]
    for p, argv in control:  # A's own plain cell's command; only --out differs
        m, s = int(p.name.split("-")[2][1:]), int(p.name.split("-")[3][1:])
        a_cell = a_sweep.cell("resnet20-2k", 0.25, f"m{m}", s)
        own = a_sweep.command("resnet20-2k", 0.25, a_sweep.ARMS[f"m{m}"], s, a_cell)
        assert argv[:-1] == own[:-1] and argv[-1] == str(p) != own[-1]

    d = a_json(10.2, 0.4)  # rounds to a swept M: A's cell (its weights are kept) is the dense model
    dense, prunes = b_prune.a_prune_runs(d, b_prune.schedules(d))
    assert dense == [] and str(a_sweep.cell("resnet20-2k", 2, "m10", 0)) in prunes[0][1]
    d = a_json(10.2, 9.8)  # the oracle's M equals the constant's: run once
    assert "oracle" not in b_prune.rules(d, b_prune.schedules(d))

    b1 = b_prune.b1_runs(d)
    scratch = [argv for p, argv in b1 if p.name.startswith("b1-scratch")]
    assert len(b1) == 9 and all(a[a.index("--epochs") + 1] == "190" for a in scratch)  # 150 + 4 x 10
    b2 = b_prune.b2_runs(d)
    assert len(b2) == 2 * len(a_sweep.seeds(0.25)) and all("--aux-heads" in argv for _, argv in b2)

    parser = argparse.ArgumentParser()
    options.add_parsers(parser.add_subparsers(dest="command"), {})
    for _, argv in [*dense, *prunes, *b1, *b2]:
        parsed = parser.parse_args(argv)
        assert parsed.split_seed == 0 and parsed.workers == 0


def test_the_every_run_table_lists_a_recorded_run_with_what_reruns_it_and_counts_one_in_flight(tiny_sweep, tmp_path):
    sys.path.insert(0, str(PAPER))
    import runs_table

    records = tmp_path / "records"
    cell = tiny_sweep / "sweep" / "cells" / "w0.25-m14-s1"
    (records / "a" / "r" / "w0.25-m14-s1").mkdir(parents=True)
    (records / "a" / "r" / "w0.25-m14-s1" / "report.json").write_bytes((cell / "report.json").read_bytes())
    (records / "a" / "r" / "w0.5-m0-s0" / "inflight").mkdir(parents=True)  # kept checkpoint, not finished
    (records / "a" / "r" / "w0.5-m0-s0" / "inflight" / "run.json").write_text("{}")
    data = runs_table.write(tmp_path / "out", records)
    report = json.loads((cell / "report.json").read_text())
    [row] = data["runs"]
    assert (row["experiment"], row["run"], row["seed"], row["epochs"]) == ("a", "r/w0.25-m14-s1", 1, 1)
    assert row["val"] == report["val"]["accuracy"] and row["test"] == report["test"]["accuracy"]
    assert row["gap"] == pytest.approx(report["train_clean"]["accuracy"] - report["val"]["accuracy"])
    assert row["cpus"] == [report["cpu"]] and row["wall_s_total"] == report["wall_s_total"]
    assert data["inflight"] == ["a/r/w0.5-m0-s0"]
    text = (tmp_path / "out" / "results.md").read_text()
    assert f"`{report['command']}`" in text and "1 finished runs" in text and "1 in flight" in text


def test_the_gpu_sweep_skips_cleanly_without_cuda_and_runs_its_plan_within_budget_on_the_cpu(tmp_path):
    gpu = _run([str(PAPER / "gpu_sweep.py"), "--out", str(tmp_path / "none")], tmp_path)
    assert "no CUDA device" in gpu.stdout and not (tmp_path / "none").exists()

    budget = 150.0
    _run([str(PAPER / "gpu_sweep.py"), "--device", "cpu", "--widths", "0.25", "--train-size", "128", "--val-size",
          "64", "--test-size", "64", "--batch-size", "64", "--workers", "0", "--max-epochs", "2", "--budget-s",
          str(budget), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")], tmp_path)
    state = json.loads((tmp_path / "out" / "gpu-a.json").read_text())
    assert set(state["probe"]) == {"0.25"} and state["probe"]["0.25"]["epoch_s"] > 0
    done = [[r["width"], r["arm"], r["seed"]] for r in state["runs"]]
    assert done + state["skipped"] == state["plan"] and done[:2] == [[0.25, "m0", 0], [0.25, "m10", 0]]
    for r in state["runs"]:  # each cell is a real run of the planned length, with its command
        assert r["epochs"] == state["epochs"] and r["command"].startswith("augpipe train --model resnet20")
        assert 0 <= r["val"] <= 1 and r["gap"] == pytest.approx(r["train_clean"] - r["val"])
    assert sum(r["wall_s"] for r in state["runs"]) < budget
    assert "| 0.25 | m0 | 0 |" in (tmp_path / "out" / "gpu-a.md").read_text()


def test_the_loader_digest_names_a_runs_batches_and_changes_with_its_seed(tiny_sweep, tmp_path):
    cell = tiny_sweep / "sweep" / "cells" / "w0.25-m14-s1"
    args = ["--batches", "2"]
    first = _run([str(PAPER / "loader_digest.py"), str(cell), *args], tiny_sweep).stdout.split()[0]
    again = _run([str(PAPER / "loader_digest.py"), str(cell), *args], tiny_sweep).stdout.split()[0]
    report = json.loads((cell / "report.json").read_text())
    report["config"]["seed"] += 1  # another augmentation stream (the split is fixed by the sweep's seed rule)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "report.json").write_text(json.dumps(report))
    other = _run([str(PAPER / "loader_digest.py"), str(tmp_path / "other"), *args], tiny_sweep).stdout.split()[0]
    assert len(first) == 40 and first == again != other


def test_a_sweep_starts_the_primary_arms_of_every_seed_before_the_other_arms_of_a_width(monkeypatch):
    """Amendment 8: within a width, M=0 and M=10 for all seeds run first (A1 is computable if the sweep is cut
    short); widths stay cheapest first; the set of runs and every command are unchanged."""
    sys.path.insert(0, str(PAPER))
    import a_sweep

    runs = a_sweep.runs_for("resnet20-2k")
    monkeypatch.setattr(a_sweep, "begun", lambda out: False)  # none begun (the real records have runs in flight)
    ordered = a_sweep.in_order(runs)
    assert sorted(map(str, ordered)) == sorted(map(str, runs))
    names = [(float(argv[argv.index("--width") + 1]), out.name) for out, argv in ordered]
    assert [w for w, _ in names] == sorted(w for w, _ in names)
    largest = [n for w, n in names if w == 2]
    assert largest[:6] == [f"w2-m{m}-s{s}" for s in (0, 1, 2) for m in (0, 10)]
    assert largest[6:9] == ["w2-identity-s0", "w2-m5-s0", "w2-m15-s0"]
    begun = a_sweep.cell("resnet20-2k", 2, "m5", 1)  # a run with a checkpoint resumes before new arms start
    monkeypatch.setattr(a_sweep, "begun", lambda out: out == begun)
    largest = [out.name for out, argv in a_sweep.in_order(runs) if argv[argv.index("--width") + 1] == "2"]
    assert largest[:7] == ["w2-m0-s0", "w2-m10-s0", "w2-m0-s1", "w2-m5-s1", "w2-m10-s1", "w2-m0-s2", "w2-m10-s2"]
    smallest = [n.replace("w0.25-", "") for w, n in names if w == 0.25]
    assert smallest[:10] == [f"m{m}-s{s}" for s in range(5) for m in (0, 10)]


def test_a_summary_computes_a1_as_a_paired_difference_in_differences_and_marks_it_partial(tmp_path, monkeypatch):
    """A1 = (L's M=10 − M=0) − (S's M=10 − M=0) over the seeds both have, with scipy's paired t; labelled
    partial (no verdict) until L has its three seeds; the capacity schedule is not saved from a partial sweep."""
    from scipy import stats as st

    sys.path.insert(0, str(PAPER))
    import a_sweep

    rng = __import__("numpy").random.default_rng(0)
    values = {(w, a, s): 0.85 + 0.01 * w * (a == "m10") + 0.002 * rng.standard_normal()
              for w in (0.25, 0.5, 1, 2) for a in a_sweep.ARMS for s in a_sweep.seeds(w)}
    missing = {(2, a, 2) for a in a_sweep.ARMS}  # L's seed 2 has not run

    def val(path):
        return next((v for (w, a, s), v in values.items() if (w, a, s) not in missing
                     and path == a_sweep.cell("resnet20-2k", w, a, s)), None)

    monkeypatch.setattr(a_sweep, "OUT", tmp_path)
    monkeypatch.setattr(a_sweep, "regime", lambda: "resnet20-2k")
    monkeypatch.setattr(a_sweep, "_val", val)
    monkeypatch.setattr(a_sweep, "_report_field", lambda path, key: 0.1)
    monkeypatch.setattr(a_sweep, "cpus_of", lambda path: {"test CPU"})
    result = a_sweep.summarise()
    gain = {w: [values[w, "m10", s] - values[w, "m0", s] for s in (0, 1)] for w in (0.25, 2)}
    want = st.ttest_rel(gain[2], gain[0.25])
    assert result["A1"]["n"] == 2 and result["A1"]["p"] == pytest.approx(want.pvalue)
    assert result["A1"]["diff"] == pytest.approx(100 * (sum(gain[2]) - sum(gain[0.25])) / 2)
    text = (tmp_path / "a.md").read_text()
    assert "**Partial**: 65 of 70 runs." in text and "partial: 2 of 3 seeds, no verdict" in text
    assert not (tmp_path / "a-schedule.json").exists()

    missing.clear()
    result = a_sweep.summarise()
    assert result["A1"]["n"] == 3 and "no verdict" not in (tmp_path / "a.md").read_text()
    assert (tmp_path / "a-schedule.json").is_file() and set(result["A2"]["vertices"]) == {"0.25", "0.5", "1", "2"}
    assert result["A2"]["p_min"] == pytest.approx(1 / 12) and result["A2"]["p"] >= 1 / 12  # exact: 4 sizes, 4!
    assert result["A1"]["p"] < 0.05 and "A1_verdict" not in result  # passes raw: its verdict waits for Holm
    assert "verdict after the Holm adjustment" in (tmp_path / "a.md").read_text()

    for s, off in zip(a_sweep.seeds(2), (0.006, -0.005, 0.002)):  # L gains about what S gains: fails unadjusted
        values[2, "m10", s] = values[2, "m0", s] + values[0.25, "m10", s] - values[0.25, "m0", s] + 0.01 + off
        values[0.25, "m10", s] += 0.01  # (both gain, so the precondition holds)
    result = a_sweep.summarise()
    assert result["A1"]["p"] > 0.05 and result["A1_verdict"] == "not reproduced"
    assert "**not reproduced** (fails unadjusted" in (tmp_path / "a.md").read_text()

    for s in a_sweep.seeds(2):  # L loses from M=10: the precondition is absent, no verdict word but that
        values[2, "m10", s] = values[2, "m0", s] - 0.005
    result = a_sweep.summarise()
    assert "A1_verdict" not in result and "untestable here (precondition absent)" in (tmp_path / "a.md").read_text()


def test_settled_verdicts_are_the_ones_holm_cannot_change():
    """A contrast failing raw stays "not reproduced" under any Holm family; one passing raw may still fail."""
    sys.path.insert(0, str(PAPER))
    import stats

    rng = __import__("numpy").random.default_rng(1)
    for _ in range(200):
        tests = [stats.paired(0.01 * rng.standard_normal(3) + rng.uniform(-0.02, 0.02), [0.0] * 3)
                 for _ in range(4)]
        adjusted = stats.holm([t["p"] for t in tests])
        for t, p in zip(tests, adjusted):
            if stats.settled(t) is not None:
                assert stats.verdict(t, p) == stats.settled(t) == "not reproduced"
    assert stats.settled({"p": 0.01, "diff": 1.0}) is None
    assert stats.settled({"p": 0.01, "diff": -1.0}) == "not reproduced"


def test_experiment_2_summary_tests_the_family_with_holm_and_withholds_verdicts_until_every_seed_is_in(
        tmp_path, monkeypatch):
    """b.md from synthetic reports: A3 is scipy's paired t of capacity vs constant, Holm runs over {A1, A3, B1,
    B2}; a contrast short of its seeds is reported without a verdict; an absent precondition (L does not gain
    from M=10) makes every primary "untestable here"; A-prune is reported at every round's sparsity."""
    from scipy import stats as st

    sys.path.insert(0, str(PAPER))
    import a_sweep
    import b_prune
    import run
    import stats

    from augpipe.driver.capacity import CapacitySchedule

    monkeypatch.setattr(b_prune, "OUT", tmp_path)
    monkeypatch.setattr(a_sweep, "regime", lambda: "resnet20-2k")
    params = {"0.25": 17462, "0.5": 68010, "1": 272186, "2": 1084010}
    a1 = {"diff": 1.0, "ci": [0.1, 1.9], "t": 5.0, "df": 2.0, "p": 0.04, "n": 3, "per_seed": [1.0, 0.9, 1.1]}
    (tmp_path / "a.json").write_text(json.dumps({"params": params, "A1": a1, "A2": {"vertices": {
        "0.25": {"vertex": 1.2}, "0.5": {"vertex": 4.0}, "1": {"vertex": 6.0}, "2": {"vertex": 12.4}}}}))
    CapacitySchedule.fit([(17462, 1.0), (1084010, 13.0)]).save(tmp_path / "a-schedule.json")
    rng = __import__("numpy").random.default_rng(1)
    base = {"capacity": 0.80, "constant": 0.79, "zero": 0.785, "increasing": 0.78, "oracle": 0.79}
    reports = {}
    for s in (0, 1, 2):
        for rule, acc in base.items():
            accs = [0.88, acc + 0.03, acc + 0.02, acc + 0.01, acc + 0.002 * rng.standard_normal()]
            reports[b_prune.RUNS / "resnet20-2k" / f"aprune-{rule}-s{s}"] = {
                "val": {"accuracy": accs[-1]}, "rounds": [
                    {"round": k, "sparsity": k / 4, "params": 1000 - k, "magnitude": 12.0 - k, "accuracy": a}
                    for k, a in enumerate(accs)]}
        for m, acc in ((10, 0.79), (0, 0.78)):
            reports[b_prune.RUNS / "resnet20-2k" / f"b1-from-m{m}-s{s}"] = {"val": {"accuracy": acc + 0.001 * s}}
        reports[b_prune.RUNS / "resnet20-2k" / f"b1-scratch-w0.25-m1-s{s}"] = {"val": {"accuracy": 0.786}}
    for s in range(5):
        for m in (0, 10):
            noise = 0.001 * rng.standard_normal()
            reports[a_sweep.cell("resnet20-2k", 0.25, f"m{m}", s)] = {"val": {"accuracy": 0.86 + noise}}
            reports[b_prune.RUNS / "resnet20-2k" / f"b2-aux-m{m}-s{s}"] = {
                "val": {"accuracy": 0.86 + 0.004 * (m == 10) + 0.001 * rng.standard_normal()}}
    for s in (0, 1, 2):
        for m in (0, 10):
            reports[a_sweep.cell("resnet20-2k", 2, f"m{m}", s)] = {"val": {"accuracy": 0.88 + 0.01 * (m == 10)
                                                                            + 0.001 * s * (m == 0)}}
    monkeypatch.setattr(run, "read_report", lambda path, records=None: reports.get(path))

    data = b_prune.summarise()
    cap = [reports[b_prune.RUNS / "resnet20-2k" / f"aprune-capacity-s{s}"]["val"]["accuracy"] for s in (0, 1, 2)]
    const = [reports[b_prune.RUNS / "resnet20-2k" / f"aprune-constant-s{s}"]["val"]["accuracy"] for s in (0, 1, 2)]
    assert data["family"]["A3"]["p"] == pytest.approx(st.ttest_rel(cap, const).pvalue)
    ps = [data["family"][k]["p"] for k in ("A1", "A3", "B1", "B2")]
    assert [data["holm"][k] for k in ("A1", "A3", "B1", "B2")] == pytest.approx(stats.holm(ps))
    assert set(data["verdicts"]) == {"A1", "A3", "B1", "B2"} and data["complete"]
    text = (tmp_path / "b.md").read_text()
    assert "round 4: sparsity 1.000, 996 params" in text and "| capacity | 0.8800 (M 12.0, 3) |" in text
    assert "round 1, capacity − constant: +1.00 points" in text
    assert "(b.png)" in text and (tmp_path / "b.png").stat().st_size > 10_000

    del reports[b_prune.RUNS / "resnet20-2k" / "aprune-capacity-s2"]  # one seed short
    data = b_prune.summarise()
    assert "A3" not in data["verdicts"] and "partial: 2 of 3 seeds, no verdict" in (tmp_path / "b.md").read_text()

    for s in (0, 1, 2):  # L loses from M=10: the precondition of A and B is absent
        reports[a_sweep.cell("resnet20-2k", 2, "m10", s)]["val"]["accuracy"] = 0.87
    data = b_prune.summarise()
    assert set(data["verdicts"].values()) == {"untestable here (precondition absent)"}
    assert "**absent**: A1, A3, B1, B2 are untestable here" in (tmp_path / "b.md").read_text()


def test_a_refit_that_differs_only_by_rounding_leaves_the_schedule_file_alone(tmp_path):
    """Experiment 2 reads a-schedule.json while its runs go on; the same vertices refitted on another CPU type
    differ in the last bits. Such a refit must not rewrite the file; a real change of the fit must."""
    sys.path.insert(0, str(PAPER))
    import run

    from augpipe.driver.capacity import CapacitySchedule

    path = tmp_path / "a-schedule.json"
    points = [(17462, 6.9), (68642, 11.88), (272186, 11.25), (1084010, 11.85)]
    assert run.save_schedule(CapacitySchedule.fit(points), path)
    before = path.read_bytes()
    rounded = [(c, m * (1 + 3e-15)) for c, m in points]
    assert CapacitySchedule.fit(rounded).to_dict() != CapacitySchedule.fit(points).to_dict()  # bits differ
    assert not run.save_schedule(CapacitySchedule.fit(rounded), path) and path.read_bytes() == before
    moved = [(c, m + 0.5 * (i == 0)) for i, (c, m) in enumerate(points)]
    assert run.save_schedule(CapacitySchedule.fit(moved), path)
    assert CapacitySchedule.load(path)(17462) == pytest.approx(CapacitySchedule.fit(moved)(17462))
    assert not list(tmp_path.glob("*.tmp.json"))
