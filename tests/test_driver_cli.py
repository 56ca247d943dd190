"""`augpipe train | prune | sweep`: runs, reports, resume, bad input; a run
killed with SIGKILL and resumed; data-parallel under torchrun (2 CPU ranks)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_driver import one_thread  # noqa: F401 (autouse: one intra-op thread in this module)

from augpipe import driver as D
from augpipe.cli import main
from augpipe.driver.data import make_data, make_loaders
from augpipe.driver.runs import load_run_model

TINY = ["--model", "cnn", "--width", "0.25", "--train-size", "512", "--test-size", "1000", "--workers", "0",
        "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny `augpipe train` run (cnn width 0.25, 2 epochs)."""
    out = tmp_path_factory.mktemp("runs") / "a"
    main(["train", *TINY, "--val-size", "256", "--epochs", "2", "--magnitude", "9", "--out", str(out)])
    return out


def _state(path: Path) -> dict:
    return torch.load(path / "model.pt", weights_only=False)["model"]


def _cli_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as err:
        main(argv)
    return str(err.value.code) + capsys.readouterr().err


def test_train_writes_report_plot_checkpoints_and_resumes(trained, capsys):
    report = json.loads((trained / "report.json").read_text())
    assert [e["epoch"] for e in report["history"]] == [0, 1]
    assert report["history"][0]["magnitude"] == 9 and report["params"] == 2294
    assert report["test"]["samples"] == 1000 and report["val"]["samples"] == 256
    assert 0 < report["data_wait"] < 1 and report["images_per_s"] > 0
    assert report["command"].startswith("augpipe train --model cnn")
    assert (trained / "plot.png").stat().st_size > 1000
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]
    before = _state(trained)
    main(["train", *TINY, "--val-size", "256", "--epochs", "2", "--magnitude", "9", "--out", str(trained)])
    assert "resuming" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(before.values(), _state(trained).values()))


def test_prune_with_a_fitted_schedule_from_a_sweep(trained, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--model", "cnn", "--widths", "0.25,0.5", "--magnitudes", "0,9", "--seeds", "2", "--epochs", "1",
            "--train-size", "256", "--val-size", "128", "--test-size", "200", "--out", str(sweep)]
    main(argv)
    results = json.loads((sweep / "results.json").read_text())
    assert len(results["cells"]) == 8 and set(results["summary"]) == {"0.25", "0.5"}
    for row in results["summary"].values():
        assert row["best_magnitude"] in (0, 9) and set(row["cells"]) == {"0", "9"} and row["cells"]["9"]["n"] == 2
    cell = json.loads((sweep / "cells" / "w0.5-m9-s1.json").read_text())
    assert cell["command"].startswith("augpipe train --model cnn --width 0.5 --magnitude 9 --seed 1 --epochs 1")
    assert {"seed", "epochs", "wall_s", "params", "val_accuracy"} <= set(cell)
    assert "best M" in (sweep / "table.md").read_text() and (sweep / "plot.png").is_file()
    main(argv)  # a rerun finds every cell done
    assert "8 already done, 0 to run" in capsys.readouterr().out

    schedule = D.CapacitySchedule.load(sweep / "schedule.json")
    out = tmp_path / "b"
    main(["prune", "--from", str(trained), "--target", "0.5", "--rounds", "2", "--finetune-epochs", "1",
          "--magnitude", "capacity", "--schedule", str(sweep / "schedule.json"), "--workers", "0", "--no-progress",
          "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert [r["sparsity"] for r in report["rounds"]] == pytest.approx([0, 0.25, 0.5], abs=1e-3)
    for r in report["rounds"][1:]:
        assert r["magnitude"] == pytest.approx(schedule(r["params"]))
        assert all(e["magnitude"] == pytest.approx(r["magnitude"], abs=1e-5) for e in r["finetune"]["epochs"])
    assert report["config"]["train_size"] == 512 and report["eval_set"] == "val" and report["test"]["samples"] == 1000
    assert (out / "plot.png").is_file() and (out / "checkpoints" / "round-02.pt").is_file()


def test_prune_keeps_the_source_runs_split(tmp_path):
    """A run whose split seed is not its seed: pruning it evaluates on the same validation images (its round 0
    is the source model on the source's validation split), not on a split redrawn from --seed."""
    src, out = tmp_path / "src", tmp_path / "pruned"
    main(["train", *TINY, "--val-size", "256", "--epochs", "1", "--seed", "1", "--split-seed", "7", "--out", str(src)])
    main(["prune", "--from", str(src), "--target", "0.3", "--rounds", "1", "--finetune-epochs", "1", "--workers", "0",
          "--no-progress", "--out", str(out)])
    source, report = (json.loads((p / "report.json").read_text()) for p in (src, out))
    assert report["config"]["split_seed"] == 7 and report["config"]["seed"] == 1
    assert report["rounds"][0]["accuracy"] == source["val"]["accuracy"]
    # recorded as a training run is (PLAN.md's per-run fields): the final model's val, train_clean, gap, wall time
    assert report["val"]["accuracy"] == report["rounds"][-1]["accuracy"] and report["val"]["samples"] == 256
    assert report["train_clean"]["samples"] == 512  # the training subset (--train-size)
    assert report["train_val_gap"] == report["train_clean"]["accuracy"] - report["val"]["accuracy"]
    assert report["wall_s_total"] == pytest.approx(report["wall_s"], abs=0.01)  # one process: its own time
    assert report["wall_s"] > 0 and report["cpu"] and report["params"] > 0


def test_channel_prune_cli_default_capacity_schedule(trained, tmp_path):
    out = tmp_path / "c"
    main(["prune", "--from", str(trained), "--target", "0.5", "--rounds", "1", "--finetune-epochs", "1",
          "--method", "channel", "--val-size", "0", "--workers", "0", "--no-progress", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    dense, pruned = report["rounds"]
    assert pruned["params"] < dense["params"] and pruned["macs"] < dense["macs"] and report["eval_set"] == "test"
    assert pruned["magnitude"] == pytest.approx(9 * pruned["params"] / dense["params"])  # linear from the dense M
    model, config, _ = load_run_model(out)  # the shrunk model reloads from its model.pt
    assert D.count_params(model) == pruned["params"] and config["method"] == "channel"


def test_bad_input_is_reported_by_name(trained, tmp_path, capsys):
    assert "unknown model 'vgg'" in _cli_error(["train", "--model", "vgg", "--out", str(tmp_path / "x")], capsys)
    assert "unknown data 'cifar'" in _cli_error(["train", *TINY, "--data", "cifar", "--out", str(tmp_path / "x")],
                                                capsys)
    prune = ["prune", "--from", str(trained), "--out", str(tmp_path / "p")]
    assert "unknown method 'random'" in _cli_error([*prune, "--target", "0.5", "--method", "random"], capsys)
    assert "sparsity must be in [0, 1)" in _cli_error([*prune, "--target", "1.0"], capsys)
    assert "sparsity must be in [0, 1)" in _cli_error([*prune, "--target", "-0.2"], capsys)
    message = _cli_error([*prune, "--target", "0.5", "--model", "resnet20"], capsys)
    assert "cnn(width=0.25" in message and "resnet20(width=0.25" in message
    message = _cli_error(["train", *TINY, "--val-size", "256", "--epochs", "3", "--out", str(trained)], capsys)
    assert "holds another run: epochs: 2 here, 3 now" in message
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "not an augpipe run" in _cli_error(["train", *TINY, "--out", str(tmp_path / "full")], capsys)




def test_a_failing_sweep_cell_is_named_and_the_others_are_recorded(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--model", "cnn", "--widths", "0.25", "--magnitudes", "0,9", "--seeds", "1", "--epochs", "1",
            "--train-size", "256", "--val-size", "128", "--test-size", "200", "--out", str(sweep)]
    main(argv)
    for name in ("w0.25-m0-s0", "w0.25-m9-s0"):  # as if the sweep was killed before recording them
        (sweep / "cells" / f"{name}.json").unlink()
    run = sweep / "cells" / "w0.25-m9-s0" / "run.json"  # and one cell's directory now holds another run
    run.write_text(run.read_text().replace('"epochs": 1', '"epochs": 5'))
    message = _cli_error(argv, capsys)
    assert "1 sweep cells failed" in message and "w0.25-m9-s0: " in message and "holds another run" in message
    assert (sweep / "cells" / "w0.25-m0-s0.json").is_file() and not (sweep / "cells" / "w0.25-m9-s0.json").exists()

def test_a_run_from_before_an_option_existed_resumes(tmp_path):
    from augpipe.driver.checkpoint import prepare_run_dir
    assert prepare_run_dir(tmp_path / "r", {"kind": "train", "epochs": 2}, "augpipe train") is False
    assert prepare_run_dir(tmp_path / "r", {"kind": "train", "epochs": 2, "gate": None}, "augpipe train") is True
    with pytest.raises(ValueError, match="gate: None here, 'drop' now"):
        prepare_run_dir(tmp_path / "r", {"kind": "train", "epochs": 2, "gate": "drop"}, "augpipe train")
    with pytest.raises(ValueError, match="kind: 'train' here, 'prune' now"):
        prepare_run_dir(tmp_path / "r", {"kind": "prune", "epochs": 2}, "augpipe prune")

def test_killed_run_resumes_to_the_same_weights(tmp_path):
    def command(out):
        return [sys.executable, "-m", "augpipe", "train", *TINY, "--val-size", "0", "--epochs", "6", "--out", str(out)]

    reference = subprocess.Popen(command(tmp_path / "ref"), env=ENV, cwd=tmp_path)
    killed = subprocess.Popen(command(tmp_path / "run"), env=ENV, cwd=tmp_path)
    second = tmp_path / "run" / "checkpoints" / "epoch-0002.pt"
    deadline = time.monotonic() + 120
    while not second.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "run" / "model.pt").exists()
    subprocess.run(command(tmp_path / "run"), env=ENV, cwd=tmp_path, check=True)
    assert reference.wait() == 0
    ref, resumed = _state(tmp_path / "ref"), _state(tmp_path / "run")
    assert ref.keys() == resumed.keys() and all(torch.equal(ref[k], resumed[k]) for k in ref)
    reports = [json.loads((tmp_path / d / "report.json").read_text()) for d in ("ref", "run")]
    untimed = [[{k: v for k, v in e.items() if k not in ("seconds", "images_per_s", "data_wait")}
                for e in r["history"]] for r in reports]
    assert untimed[0] == untimed[1] and reports[0]["test"] == reports[1]["test"]


def test_torchrun_two_cpu_processes_train_evaluate_and_prune(tmp_path):
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "augpipe"]
    out, pruned = tmp_path / "ddp", tmp_path / "ddp-pruned"
    subprocess.run([*run, "train", *TINY, "--val-size", "128", "--epochs", "2", "--record-indices", "--out", str(out)],
                   env=ENV, cwd=tmp_path, check=True, timeout=300)
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2 and report["test"]["samples"] == 1000 and report["val"]["samples"] == 128
    seen = [np.load(out / f"indices-rank{r}.npy") for r in (0, 1)]
    for epoch in (0, 1):
        shards = [set(s[s[:, 0] == epoch, 1].tolist()) for s in seen]
        assert len(shards[0]) == len(shards[1]) == 256 and not shards[0] & shards[1]
        assert shards[0] | shards[1] == set(range(512))
    model = D.build_model("cnn", 0.25)
    D.load_model(model, _state(out), D.model_arch(model))
    data = make_data("fashion-mnist", train_size=512, val_size=128, seed=0, test_size=1000)
    _, _, test = make_loaders(data, batch_size=128, magnitude=9, seed=0, workers=0)
    assert D.evaluate(model, test)["accuracy"] == pytest.approx(report["test"]["accuracy"], abs=2e-3)

    subprocess.run([*run, "prune", "--from", str(out), "--target", "0.5", "--rounds", "1", "--finetune-epochs", "1",
                    "--workers", "0", "--no-progress", "--out", str(pruned)], env=ENV, cwd=tmp_path, check=True,
                   timeout=300)
    rounds = json.loads((pruned / "report.json").read_text())["rounds"]
    assert rounds[1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    for r in rounds:
        assert len(r["mask_digests"]) == 2 and r["mask_digests"][0] == r["mask_digests"][1]


def test_torchrun_repeated_augmentation_serves_each_sample_on_both_ranks(tmp_path):
    """`augpipe train --repeats 2` under torchrun (DeiT's repeated augmentation): both ranks see the same
    256 of the 512 samples in an epoch, in the same order, another 256 the next epoch; the epoch length
    is that of a run without repeats."""
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "augpipe"]
    out = tmp_path / "ra"
    subprocess.run([*run, "train", *TINY, "--val-size", "128", "--epochs", "2", "--repeats", "2",
                    "--record-indices", "--out", str(out)], env=ENV, cwd=tmp_path, check=True, timeout=300)
    seen = [np.load(out / f"indices-rank{r}.npy") for r in (0, 1)]
    firsts = []
    for epoch in (0, 1):
        orders = [s[s[:, 0] == epoch, 1] for s in seen]
        assert len(orders[0]) == 256 and np.array_equal(orders[0], orders[1]) and len(set(orders[0])) == 256
        firsts.append(set(orders[0].tolist()))
    assert firsts[0] != firsts[1]
    assert json.loads((out / "report.json").read_text())["config"]["repeats"] == 2


def test_import_augpipe_stays_light_and_help_lists_the_commands(capsys):
    code = """
import sys
import augpipe, augpipe.cli
heavy = ("augpipe.driver", "augpipe.integrations", "torch_pruning", "lightning", "matplotlib")
assert not [m for m in sys.modules if m.startswith(heavy)], "import augpipe loaded the driver"
try:
    augpipe.cli.main(["prune", "--help"])
except SystemExit:
    pass
assert not [m for m in sys.modules if m.startswith(heavy[2:])], "the CLI loaded a heavy library to parse"
"""
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "linear in the remaining non-zero parameters" in done.stdout  # --magnitude capacity's default, in --help
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out
    assert all(name in usage for name in ("train", "prune", "sweep"))
