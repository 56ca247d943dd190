"""The paper's experiments 2-4 with augpipe's CLI, after `1_sweep.sh`.

    python benchmarks/paper/run.py prune    # experiment 2 (finding A): iterative pruning, 3 magnitude rules
    python benchmarks/paper/run.py extra    # experiment 3 (finding B): extra parameters for small models
    python benchmarks/paper/run.py gate     # experiment 4 (finding C): teacher gating, tables, per-op limits
    python benchmarks/paper/run.py all      # the three, then `summarize.py`
    python benchmarks/paper/run.py all --device cuda   # options after the name go to every augpipe command

On a GPU machine, keep its runs apart: AUGPIPE_RUNS=runs/paper-cuda for the
runs; the summary then goes to benchmarks/paper/results-paper-cuda.

Every run is one `augpipe ...` command (printed, and recorded in the run's
report.json); runs already finished (report.json present) are skipped, so a
killed script is rerun as is. Two runs at a time, one thread each (2 cores).
Choices that depend on experiment 1 (each size's best magnitude, the fitted
capacity schedule, the teacher) are read from its results, which pick them
on the validation split; the test split is only reported.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = Path(os.environ.get("AUGPIPE_RUNS", ROOT / "runs" / "paper"))
SWEEP = RUNS / "sweep"
AUGPIPE = [sys.executable, "-m", "augpipe"]  # this interpreter's augpipe (run it with the venv's python)
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SEEDS = (0, 1, 2)
JOBS = 2
# the sweep's data and training settings, shared by every run here
DATA = ["--data", "fashion-mnist", "--train-size", "4000", "--val-size", "2000", "--batch-size", "128",
        "--workers", "0", "--no-progress"]


def sweep() -> dict:
    path = SWEEP / "results.json"
    if not path.is_file():
        sys.exit(f"{path} is missing: run benchmarks/paper/1_sweep.sh first")
    return json.loads(path.read_text())


def best_m(width: float) -> float:
    return float(sweep()["summary"][f"{width:g}"]["best_magnitude"])


def cell(width: float, magnitude: float, seed: int) -> Path:
    return SWEEP / "cells" / f"w{width:g}-m{magnitude:g}-s{seed}"


EXTRA: list[str] = []  # options given after the experiment's name, appended to every command


def record_dir(records: Path, out: Path) -> Path:
    """Where a run's record lives in the repository: its path under RUNS, under `records`."""
    return records / out.relative_to(RUNS)


def restore(records: Path | None, out: Path, keep_model: bool) -> None:
    """Bring a run finished in an earlier session (on this or another machine) back from its committed
    record: run directories live on the machine, records in the repository. A run that was interrupted
    at the end of a session gets its run.json and last checkpoint back (`save_inflight`), so it resumes."""
    if records is None or (out / "report.json").is_file():
        return
    rec = record_dir(records, out)
    files = ["report.json", *(["model.pt"] if keep_model else [])]
    if all((rec / f).is_file() for f in files):
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(rec / f, out / f)
        return
    inflight = rec / "inflight"
    if (inflight / "run.json").is_file() and not list(out.glob("checkpoints/epoch-*.pt")):
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inflight / "run.json", out / "run.json")
        for ckpt in inflight.glob("epoch-*.pt"):
            shutil.copyfile(ckpt, out / "checkpoints" / ckpt.name)


def save_inflight(records: Path) -> list[Path]:
    """Keep every unfinished run under RUNS in its record: run.json, its latest checkpoint and the CPU it
    ran on so far (`inflight/`), so a later session on another machine resumes it instead of starting
    over. Run it with the runs paused or stopped; commit what it writes."""
    saved = []
    for run_file in sorted(RUNS.rglob("run.json")):
        out = run_file.parent
        ckpts = sorted(out.glob("checkpoints/epoch-*.pt"))
        if (out / "report.json").is_file() or not ckpts:
            continue
        inflight = record_dir(records, out) / "inflight"
        if inflight.exists():
            shutil.rmtree(inflight)
        inflight.mkdir(parents=True)
        shutil.copyfile(run_file, inflight / "run.json")
        shutil.copyfile(ckpts[-1], inflight / ckpts[-1].name)
        kept = {"cpus": _cpus(records, out) + [_this_cpu()],
                "environments": _environments(records, out) + [_this_environment()]}
        (inflight / "cpus.json").write_text(json.dumps(kept) + "\n")
        saved.append(out)
    return saved


def _this_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def _this_environment() -> dict:
    """This machine's environment as a report records it (CPU generation, ISA, library versions)."""
    from augpipe.driver.runs import environment

    return environment()


def _environments(records: Path, out: Path) -> list[dict]:
    """The environments an in-flight run ran in during earlier sessions (kept since 2026-12-06)."""
    f = record_dir(records, out) / "inflight" / "cpus.json"
    return json.loads(f.read_text()).get("environments", []) if f.is_file() else []


def _cpus(records: Path, out: Path) -> list[str]:
    """The CPUs an in-flight run ran on in earlier sessions."""
    f = record_dir(records, out) / "inflight" / "cpus.json"
    return json.loads(f.read_text())["cpus"] if f.is_file() else []


def _keep(records: Path | None, out: Path, keep_model: bool) -> None:
    """Copy a finished run's report.json (and its final weights where later runs read them) into its record."""
    if records is None or not (out / "report.json").is_file():
        return
    rec = record_dir(records, out)
    rec.mkdir(parents=True, exist_ok=True)
    for f in ["model.pt"] if keep_model else []:
        shutil.copyfile(out / f, rec / f)
    report = json.loads((out / "report.json").read_text())
    earlier = _cpus(records, out)
    if earlier:  # resumed across sessions: every CPU type (and environment) the run's processes ran on
        report["cpus"] = sorted(set(earlier + [report.get("cpu", _this_cpu())]))
        envs = _environments(records, out) + [report.get("environment")]
        report["environments"] = [e for i, e in enumerate(envs) if e is not None and e not in envs[:i]]
    (rec / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    if (rec / "inflight").exists():
        shutil.rmtree(rec / "inflight")


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure through a temporary file, then rename (no half-written plot), and close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def save_schedule(schedule, path: Path) -> bool:
    """Write a fitted CapacitySchedule unless `path` already holds the same fit up to rounding; True if it wrote.
    Experiment 2's runs read these files while they run, and the same data refitted on another CPU type
    differs in the last bits (numpy's least squares rounds differently there): a summary rerun must not
    change an input of runs in flight, nor the committed file, for that. Written through a temporary file."""
    import numpy as np

    new = schedule.to_dict()
    if path.is_file():
        old = json.loads(path.read_text())

        def numbers(d):
            return [d["a"], d["b"], *(x for point in d.get("points") or [] for x in point)]

        same = {k: old.get(k) for k in ("kind", "m_min", "m_max", "dense_params")} == \
            {k: new[k] for k in ("kind", "m_min", "m_max", "dense_params")}
        if same and len(numbers(old)) == len(numbers(new)) and np.allclose(numbers(old), numbers(new), rtol=1e-9,
                                                                           atol=0):
            return False
    tmp = path.with_suffix(".tmp.json")
    schedule.save(tmp)
    tmp.replace(path)
    return True


def read_report(out: Path, records: Path | None = None) -> dict | None:
    """A run's report.json from its directory, or else from its committed record; None if it has not finished."""
    for f in (out / "report.json", *([record_dir(records, out) / "report.json"] if records is not None else [])):
        if f.is_file():
            return json.loads(f.read_text())
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def claim(out: Path) -> int | None:
    """Take a run's lock (`<out>.lock` beside it, holding this process's pid) so that two scripts on this
    machine never train into the same directory; returns the pid of the live process that holds it instead,
    or None once taken. A lock whose process is gone is stale and taken over."""
    lock = out.parent / f"{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (FileNotFoundError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                return pid
            lock.unlink(missing_ok=True)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return None


def release(out: Path) -> None:
    (out.parent / f"{out.name}.lock").unlink(missing_ok=True)


def _schedule(todo: list, needs: dict, ended: dict, one) -> list[int]:
    """`one(job)` for every job, JOBS threads at a time, each taking the first pending job whose sources
    (`needs`) have ended, so a run waiting for its source holds no core. Returns the exit codes; a job
    whose call raised counts as 1 (the thread prints the traceback)."""
    pending, codes, ready = list(todo), [], threading.Condition()

    def worker():
        while True:
            with ready:
                while True:
                    if not pending:
                        return
                    job = next((j for j in pending if all(ended[str(p)].is_set() for p in needs[j[0]])), None)
                    if job is not None:
                        pending.remove(job)
                        break
                    ready.wait()
            rc = 1
            try:
                rc = one(job)
            finally:
                with ready:
                    codes.append(rc)
                    ready.notify_all()

    workers = [threading.Thread(target=worker) for _ in range(JOBS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return codes


def execute(runs: list[tuple[Path, list[str]]], records: Path | None = None, keep_model=False) -> None:
    """Run `augpipe <argv>` for every (out, argv) not finished yet, JOBS at a time.

    With `records` (a directory in the repository), each finished run's report.json, and its model.pt
    with `keep_model` (True for every run, or a set of run directories: teachers, models later runs
    start from), is copied to records/<path under RUNS>;
    a run with a record counts as finished and its files are restored from it, so results survive the
    machine they ran on once committed. A run another script on this machine is running (its lock) is
    skipped, not started twice. A run whose command names an earlier run's directory (`--from`,
    `--teacher`) waits for that run, so runs that start from a model need not wait for a whole stage."""
    def keep(out: Path) -> bool:
        return keep_model is True or (not isinstance(keep_model, bool) and out in keep_model)

    for out, _ in runs:
        restore(records, out, keep(out))
    todo = [(out, argv) for out, argv in runs if not (out / "report.json").is_file()]
    print(f"{len(runs)} runs, {len(runs) - len(todo)} done, {len(todo)} to run", flush=True)
    ended = {str(out): threading.Event() for out, _ in todo}
    position = {str(out): i for i, (out, _) in enumerate(todo)}
    needs = {}
    for i, (out, argv) in enumerate(todo):
        needs[out] = [Path(a) for a in argv if a in position and a != str(out)]
        later = [p for p in needs[out] if position[str(p)] > i]
        if later:  # sources first: no cycle can leave every worker waiting
            raise ValueError(f"{out} starts from {later[0]}, which is listed after it")

    def one(job):
        out, argv = job
        try:
            return run_one(out, argv)
        finally:
            ended[str(out)].set()

    def run_one(out: Path, argv: list[str]) -> int:
        for src in needs[out]:
            if not (src / "report.json").is_file():
                print(f"  skip {out.relative_to(RUNS)}: {src.relative_to(RUNS)} has not finished", flush=True)
                return 0
        argv = [a.replace(f"{ROOT}/", "") for a in argv] + EXTRA  # checkout-relative paths (cwd=ROOT)
        out.parent.mkdir(parents=True, exist_ok=True)
        if (holder := claim(out)) is not None:
            print(f"  skip {out.relative_to(RUNS)}: running in process {holder}", flush=True)
            return 0
        try:
            if (out / "report.json").is_file():  # finished by another script since the list was made
                return 0
            command = [*AUGPIPE, *argv]
            start = time.perf_counter()
            with open(out.parent / f"{out.name}.log", "w") as log:
                log.write("$ " + shlex.join(["augpipe", *argv]) + "\n")
                log.flush()
                rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT).returncode
            if rc == 0:
                _keep(records, out, keep(out))
        finally:
            release(out)
        print(f"  {'ok ' if rc == 0 else 'FAILED'} {out.relative_to(RUNS)} ({time.perf_counter() - start:.0f} s)",
              flush=True)
        return rc

    codes = _schedule(todo, needs, ended, one)
    failed = len(todo) - codes.count(0)  # a run whose script raised counts as failed
    if failed:
        sys.exit(f"{failed} runs failed: see the .log beside each run directory")


# ------------------------------------------------------------ experiment 2
PRUNE_WIDTH = 1.0
PRUNE = ["--target", "0.9", "--rounds", "4", "--steps", "geometric", "--finetune-epochs", "8", "--lr", "0.01",
         "--workers", "0", "--no-progress"]


def prune_runs() -> list[tuple[Path, list[str]]]:
    dense_m = best_m(PRUNE_WIDTH)
    rules = {"capacity": ["--magnitude", "capacity", "--schedule", str(SWEEP / "schedule.json")],
             "constant": ["--magnitude", f"{dense_m:g}"], "zero": ["--magnitude", "0"]}
    if dense_m == 0:
        del rules["constant"]  # the dense model's best is 0: the constant rule is the zero rule
    runs = []
    for method in ("l1-unstructured", "channel"):
        for rule, args in rules.items():
            for s in SEEDS:
                out = RUNS / "prune" / f"{method}-{rule}-s{s}"
                runs.append((out, ["prune", "--from", str(cell(PRUNE_WIDTH, dense_m, s)), "--method", method,
                                   *args, *PRUNE, "--out", str(out)]))
    return runs


# ------------------------------------------------------------ experiment 3
SMALL = (0.25, 0.5)
DENSE = 1.0
STRONG = 14


def extra_runs() -> list[tuple[Path, list[str]]]:
    sizes = {w: sweep()["summary"][f"{w:g}"]["params"] for w in (*SMALL, DENSE)}
    runs = []
    for w in SMALL:
        target = round(1 - sizes[w] / sizes[DENSE], 4)  # the dense model pruned to the small one's parameters
        for s in SEEDS:
            out = RUNS / "extra" / f"dense-strong-prune-weak-w{w:g}-s{s}"
            runs.append((out, ["prune", "--from", str(cell(DENSE, STRONG, s)), "--method", "channel",
                               "--target", str(target), "--rounds", "3", "--steps", "geometric", "--magnitude", "0",
                               "--finetune-epochs", "10", "--lr", "0.01", "--workers", "0", "--no-progress",
                               "--out", str(out)]))
            out = RUNS / "extra" / f"aux-heads-strong-w{w:g}-s{s}"
            runs.append((out, ["train", "--model", "cnn", "--width", f"{w:g}", "--magnitude", str(STRONG),
                               "--aux-heads", "0.3", "--seed", str(s), "--epochs", "30", "--lr", "0.1", *DATA,
                               "--out", str(out)]))
    return runs


# ------------------------------------------------------------ experiment 4
STUDENT = 0.25
GATE_M = (14, 30)  # the paper's strong magnitude, and where the sweep measured the largest harm
THRESHOLD = "0.5"  # p_true: the teacher no longer prefers the label at even odds


def teacher() -> Path:
    summary = sweep()["summary"]
    largest = max(summary.values(), key=lambda r: r["params"])
    return cell(largest["width"], largest["best_magnitude"], 0)


def gate_prep_runs() -> list[tuple[Path, list[str]]]:
    t = str(teacher())
    table, report = RUNS / "gate" / "table", RUNS / "gate" / "report"
    return [(table, ["score", "fashion-mnist", "--teacher", t, "--out", str(table / "table.npz"),
                     "--magnitudes", ",".join(str(m) for m in range(0, 31, 5)), "--views", "1"]),
            (report, ["report", "fashion-mnist", "--teacher", t, "--out", str(report), "--samples", "1000"])]


def gate_runs() -> list[tuple[Path, list[str]]]:
    t = str(teacher())
    variants = {
        "fallback": ["--gate", "fallback", "--gate-teacher", t, "--gate-threshold", THRESHOLD, "--gate-fallback", "0"],
        "drop": ["--gate", "drop", "--gate-teacher", t, "--gate-threshold", THRESHOLD],
        "reweight": ["--gate", "reweight", "--gate-teacher", t, "--gate-threshold", THRESHOLD],
        "table-caps": ["--caps", str(RUNS / "gate" / "table" / "table.npz"), "--caps-threshold", THRESHOLD],
        "op-limits": ["--limits", str(RUNS / "gate" / "report" / "report.json"), "--limits-drop", "0.1"],
    }
    runs = []
    for m in GATE_M:
        for name, args in variants.items():
            for s in SEEDS:
                out = RUNS / "gate" / f"{name}-m{m}-s{s}"
                runs.append((out, ["train", "--model", "cnn", "--width", f"{STUDENT:g}", "--magnitude", str(m),
                                   "--seed", str(s), "--epochs", "30", "--lr", "0.1", *DATA, *args,
                                   "--out", str(out)]))
    return runs


def _prepared(runs):
    """Score and report write no report.json of their own: mark them done by their outputs."""
    for out, argv in runs:
        done = out / ("table.npz" if argv[0] == "score" else "report.json")
        if done.is_file() and argv[0] == "score" and not (out / "report.json").is_file():
            (out / "report.json").write_text(json.dumps({"command": "augpipe " + shlex.join(argv)}) + "\n")
    return runs


def main(which: str) -> None:
    if which in ("gate", "all"):
        prep = _prepared(gate_prep_runs())
        execute(prep)
        _prepared(prep)
        execute(gate_runs())
    if which in ("prune", "all"):
        execute(prune_runs())
    if which in ("extra", "all"):
        execute(extra_runs())
    if which == "all":
        subprocess.run([sys.executable, str(Path(__file__).with_name("summarize.py"))], check=True, cwd=ROOT)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("prune", "extra", "gate", "all"):
        sys.exit(__doc__)
    EXTRA[:] = sys.argv[2:]
    main(sys.argv[1])
