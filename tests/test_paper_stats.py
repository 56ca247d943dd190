"""benchmarks/paper/stats.py, the pre-registered statistics, against scipy."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "paper"))
import stats  # noqa: E402

A = [0.861, 0.874, 0.869, 0.858, 0.866]
B = [0.852, 0.861, 0.866, 0.850, 0.851]


def test_paired_t_matches_scipy_with_n_minus_1_df_and_its_interval():
    r = stats.paired(A, B)
    ref = st.ttest_rel(A, B)
    assert r["t"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue) and r["df"] == 4
    ci = ref.confidence_interval(0.95)
    assert r["ci"] == pytest.approx([ci.low * 100, ci.high * 100])
    assert r["per_seed"] == pytest.approx([(a - b) * 100 for a, b in zip(A, B)])


def test_welch_matches_scipy_including_satterthwaite_df():
    b = B[:3]
    r = stats.welch(A, b)
    ref = st.ttest_ind(A, b, equal_var=False)
    assert r["t"] == pytest.approx(ref.statistic) and r["p"] == pytest.approx(ref.pvalue)
    assert r["df"] == pytest.approx(ref.df)
    assert 2 < r["df"] < 6  # neither n-1 nor n1+n2-2


def test_holm_matches_the_step_down_definition():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_vertex_of_a_known_quadratic_and_its_bootstrap_interval_contains_it():
    ms = [0, 5, 10, 15]
    curve = [0.8 - 0.001 * (m - 7) ** 2 for m in ms]
    assert stats.vertex(ms, curve) == pytest.approx(7)
    rng = np.random.default_rng(1)
    acc = np.array(curve)[:, None] + rng.normal(0, 0.002, (4, 5))
    b = stats.vertex_bootstrap(ms, acc)
    assert b["ci"][0] <= b["vertex"] <= b["ci"][1]
    assert stats.vertex(ms, [0.9, 0.8, 0.7, 0.6]) == 0  # falling: the best end


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="paired test"):
        stats.paired([0.1], [0.2])
    with pytest.raises(ValueError, match="Welch"):
        stats.welch([0.1], [0.2, 0.3])


def test_every_planned_command_parses_with_the_driver(tmp_path, monkeypatch):
    """The pilot's and C's commands are valid `augpipe train` command lines
    (a typo in an option would otherwise surface hours into the queue)."""
    import argparse

    from augpipe.driver.options import _config, add_parsers

    monkeypatch.setenv("AUGPIPE_RUNS", str(tmp_path))
    import a_sweep
    import c_teacher
    import pilot

    parser = argparse.ArgumentParser(prog="augpipe")
    add_parsers(parser.add_subparsers(dest="command"))
    runs = [r for regime in pilot.REGIMES for r in pilot.runs_for(regime, [0, 1, 2])]
    runs += c_teacher.teacher_runs() + c_teacher.student_runs(list(c_teacher.arms(0)))
    assert len(runs) == 48 + 5 + 9 * 5  # seed 0's teacher retrained too (PLAN.md amendment 3)
    a = [r for regime in pilot.REGIMES for r in a_sweep.runs_for(regime)]
    # width 0.25 five seeds, the three larger widths three (PLAN.md amendment 5); five arms each
    assert all(len(a_sweep.runs_for(regime)) == 5 * (5 + 3 * 3) for regime in ("cnn2-2k", "resnet20-2k", "cnn2-8k"))
    assert sum(1 for out, _ in a_sweep.runs_for("cnn2-2k") if out.is_relative_to(pilot.RUNS)) == 12  # reused
    runs += a
    for out, argv in runs:
        cfg = _config(parser.parse_args(argv), "train")
        assert cfg["split_seed"] == 0 and cfg["val_size"] == 5000 and cfg["out"] == str(out)
    arms = {a for a in c_teacher.arms(1)}
    assert {"teacher-fallback", "random-fallback", "kd", "self-entropy-fallback", "ungated-m15"} <= arms


def test_a_finished_run_survives_its_machine_through_its_committed_record(tmp_path, monkeypatch):
    """run.execute copies report.json (and model.pt where asked) into the records directory; a later
    session with an empty runs directory counts the run as finished and gets its files back."""
    import json

    import run

    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    records = tmp_path / "records"
    out = run.RUNS / "c" / "teacher-s1"
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps({"val": {"accuracy": 0.9}}))
    (out / "model.pt").write_bytes(b"weights")
    run._keep(records, out, keep_model=False)
    assert (records / "c" / "teacher-s1" / "report.json").is_file()
    assert not (records / "c" / "teacher-s1" / "model.pt").exists()  # only where later runs read it
    run._keep(records, out, keep_model=True)
    for f in out.iterdir():
        f.unlink()
    assert run.read_report(out) is None and run.read_report(out, records)["val"]["accuracy"] == 0.9
    run.restore(records, out, keep_model=True)
    assert (out / "model.pt").read_bytes() == b"weights" and (out / "report.json").is_file()
    # a record without the weights a dependent run needs does not count as finished
    other = run.RUNS / "c" / "teacher-s2"
    (records / "c" / "teacher-s2").mkdir(parents=True)
    (records / "c" / "teacher-s2" / "report.json").write_text("{}")
    run.restore(records, other, keep_model=True)
    assert not (other / "report.json").exists()


def test_an_interrupted_run_resumes_in_a_later_session_from_its_committed_checkpoint(tmp_path, monkeypatch):
    import json

    import run

    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    records = tmp_path / "records"
    out = run.RUNS / "pilot" / "m5-s2"
    (out / "checkpoints").mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"kind": "train"}))
    for e in (40, 41):
        (out / "checkpoints" / f"epoch-{e:04d}.pt").write_bytes(b"state %d" % e)
    assert run.save_inflight(records) == [out]
    inflight = records / "pilot" / "m5-s2" / "inflight"
    assert sorted(p.name for p in inflight.iterdir()) == ["cpus.json", "epoch-0041.pt", "run.json"]
    import shutil

    shutil.rmtree(run.RUNS)  # the machine is gone
    run.restore(records, out, keep_model=False)
    assert (out / "run.json").is_file() and (out / "checkpoints" / "epoch-0041.pt").read_bytes() == b"state 41"
    (out / "report.json").write_text(json.dumps({"cpu": "Other CPU", "val": {"accuracy": 0.8}}))
    run._keep(records, out, keep_model=False)  # finished: the record says every CPU it ran on
    rec = json.loads((records / "pilot" / "m5-s2" / "report.json").read_text())
    assert rec["cpus"] == sorted({"Other CPU", run._this_cpu()}) and not inflight.exists()
    assert rec["environments"] == [run._this_environment()]  # the session it began in (the last one recorded none)


def test_two_scripts_never_train_into_the_same_run_directory(tmp_path, monkeypatch, capsys):
    """A run whose lock a live process holds is skipped (not started twice); a stale lock, whose process
    is gone, is taken over; the lock is released when the run ends."""
    import subprocess

    import run

    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    # a stand-in for `augpipe`: the run "trains" by writing its report and counting its starts
    script = ("import sys, pathlib; out = pathlib.Path(sys.argv[-1]); out.mkdir(parents=True, exist_ok=True); "
              "(out / 'starts').open('a').write('x'); (out / 'report.json').write_text('{}')")
    monkeypatch.setattr(run, "AUGPIPE", [sys.executable, "-c", script])
    busy, stale = run.RUNS / "b" / "busy", run.RUNS / "b" / "stale"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        busy.parent.mkdir(parents=True)
        (busy.parent / "busy.lock").write_text(str(holder.pid))
        (stale.parent / "stale.lock").write_text(str(gone.pid))
        run.execute([(busy, ["--out", str(busy)]), (stale, ["--out", str(stale)])])
        assert f"skip b/busy: running in process {holder.pid}" in capsys.readouterr().out
        assert not busy.exists() and (busy.parent / "busy.lock").read_text() == str(holder.pid)
        assert (stale / "starts").read_text() == "x" and not (stale.parent / "stale.lock").exists()
    finally:
        holder.kill()
        holder.wait()
    run.execute([(busy, ["--out", str(busy)])])  # its holder is gone: the run starts, once
    assert (busy / "starts").read_text() == "x" and not (busy.parent / "busy.lock").exists()
    assert run.claim(busy) is None and run.claim(busy) is None  # this process may retake its own lock
    run.release(busy)


def test_a_run_that_starts_from_another_waits_for_it_and_only_for_it(tmp_path, monkeypatch, capsys):
    """With two jobs, a run whose command names an earlier run's directory starts after that run ends
    (while an unrelated run goes on beside it); a source that fails leaves its dependant unstarted; a
    source listed after its dependant is refused."""
    import json
    import time

    import run

    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(run, "JOBS", 2)
    # a stand-in for `augpipe`: argv is [--from SRC] [--sleep S] [--fail] --out OUT
    script = ("import sys, time, json, pathlib; a = sys.argv[1:]; out = pathlib.Path(a[-1]); "
              "out.mkdir(parents=True, exist_ok=True); t0 = time.time(); "
              "time.sleep(float(a[a.index('--sleep') + 1]) if '--sleep' in a else 0); "
              "sys.exit(3) if '--fail' in a else None; "
              "(out / 'report.json').write_text(json.dumps({'start': t0, 'end': time.time()}))")
    monkeypatch.setattr(run, "AUGPIPE", [sys.executable, "-c", script])
    src, dep, other = (run.RUNS / "b" / n for n in ("dense", "prune", "other"))
    run.execute([(src, ["--sleep", "1.5", "--out", str(src)]), (dep, ["--from", str(src), "--out", str(dep)]),
                 (other, ["--sleep", "0.5", "--out", str(other)])])
    t = {p.name: json.loads((p / "report.json").read_text()) for p in (src, dep, other)}
    assert t["prune"]["start"] >= t["dense"]["end"]  # waited for its source
    assert t["other"]["start"] < t["dense"]["end"]  # the unrelated run did not wait

    bad, orphan = run.RUNS / "b" / "bad", run.RUNS / "b" / "orphan"
    with pytest.raises(SystemExit, match="1 runs failed"):
        run.execute([(bad, ["--fail", "--out", str(bad)]), (orphan, ["--from", str(bad), "--out", str(orphan)])])
    assert "skip b/orphan: b/bad has not finished" in capsys.readouterr().out and not orphan.exists()
    late = run.RUNS / "b" / "late"
    with pytest.raises(ValueError, match="listed after it"):
        run.execute([(orphan, ["--from", str(late), "--out", str(orphan)]), (late, ["--out", str(late)])])


def test_spearman_bootstrap_resamples_whole_samples():
    rng = np.random.default_rng(0)
    n, views = 300, 5
    clusters = np.repeat(np.arange(n), views)
    base = 2 * rng.normal(size=n)[clusters]  # a per-sample effect shared by its views
    x = base + rng.normal(size=n * views)
    y = -base + rng.normal(size=n * views)
    r = stats.spearman_bootstrap(x, y, clusters, resamples=400)
    assert r["rho"] == pytest.approx(st.spearmanr(x, y)[0])
    lo, hi = r["ci"]
    assert lo < r["rho"] < hi < 0
    # independent data: the interval covers zero
    null = stats.spearman_bootstrap(rng.normal(size=n * views), rng.normal(size=n * views), clusters, resamples=400)
    assert null["ci"][0] < 0 < null["ci"][1]
    # views of one sample are not independent: the cluster interval is wider than a pairs bootstrap's
    pairs = stats.spearman_bootstrap(x, y, np.arange(n * views), resamples=400)
    assert hi - lo > 1.3 * (pairs["ci"][1] - pairs["ci"][0])
    with pytest.raises(ValueError, match="equal length"):
        stats.spearman_bootstrap(x, y[:-1], clusters)


def test_spearman_exact_counts_every_ordering():
    import itertools

    def brute(x, y):  # the share of the n! orderings of y at least as extreme, both tails (scipy's rule)
        obs = st.spearmanr(x, y)[0]
        rhos = [st.spearmanr(x, list(p))[0] for p in itertools.permutations(y)]
        le = np.mean([r <= obs + 1e-12 for r in rhos])
        ge = np.mean([r >= obs - 1e-12 for r in rhos])
        return min(1.0, 2 * min(le, ge))

    x = np.log10([17_462, 68_642, 272_186, 1_084_010])
    for y in ([6.9, 11.9, 11.3, 11.6], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [3.0, 1.0, 4.0, 2.0]):
        r = stats.spearman_exact(x, y)
        assert r["rho"] == pytest.approx(st.spearmanr(x, y)[0])
        assert r["p"] == pytest.approx(brute(x, y))
    perfect = stats.spearman_exact(x, [1, 2, 3, 4])
    assert perfect["p"] == pytest.approx(1 / 12) == perfect["p_min"]  # scipy's t approximation says 0 here
    assert st.spearmanr(x, [1, 2, 3, 4])[1] < 1e-6
    five = stats.spearman_exact(np.arange(5), [1, 2, 3, 5, 4])
    assert five["p"] == pytest.approx(brute(np.arange(5), [1, 2, 3, 5, 4]))
    with pytest.raises(ValueError, match="equal length"):
        stats.spearman_exact(x, [1, 2, 3])
    with pytest.raises(ValueError, match="too large"):
        stats.spearman_exact(np.arange(10), np.arange(10))
