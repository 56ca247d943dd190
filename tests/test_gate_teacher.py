"""A real teacher trained here on Fashion-MNIST: gating raises the teacher's
p_true; checkpoint formats; the offline difficulty table; the per-op report
and limits; `augpipe score | report | show --caps`; `augpipe train` with a
gate, a table's caps and a report's limits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import augpipe as ap
from augpipe import driver as D
from augpipe.cli import main
from augpipe.gate.report import REPORT_OPS, op_report, write_report
from augpipe.gate.teacher import load_teacher
from augpipe.sources import FashionMNIST


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


@pytest.fixture(scope="module")
def teacher():
    """An MLP trained 300 steps (batch 64, Adam) on 4,096 training images (crop + flip): ~74 % test accuracy."""
    src = FashionMNIST("train")
    data = (src.images[:4096], src.labels[:4096])
    loader = ap.Loader(data, batch_size=64, policy="identity", num_workers=0, seed=0, output="float")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    for step, (images, labels) in zip(range(300), (b for _ in range(5) for b in loader)):
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def test_images():
    src = FashionMNIST("test")
    return src.images[:512], src.labels[:512]


def p_true(gate, batch, loader) -> float:
    return float(gate.score(batch, loader).mean())


def test_real_teacher_gated_batches_have_higher_p_true_at_magnitude_30(teacher, test_images):
    judge = ap.TeacherGate(teacher, threshold=0.5)  # a scorer: .score() only
    plain = ap.Loader(test_images, batch_size=128, magnitude=30, num_workers=0, seed=0, output="float")
    judge.bind(plain)
    ungated = np.mean([p_true(judge, b, plain) for b in plain])
    for action in ("fallback", "drop"):
        loader = ap.Loader(test_images, batch_size=128, magnitude=30, num_workers=0, seed=0, output="float",
                           gate=ap.TeacherGate(teacher, threshold=0.5, action=action))
        batches = list(loader)
        gated = np.mean([p_true(judge, b, loader) for b in batches])
        assert gated > ungated + 0.1, (action, gated, ungated)
        assert 0.1 < loader.gate.gated / loader.gate.samples < 0.9
    clean = ap.Loader(test_images, batch_size=512, train=False, num_workers=0, output="float")
    assert (teacher(next(iter(clean))[0]).argmax(1).numpy() == test_images[1]).mean() > 0.65  # a real teacher


# ------------------------------------------------------------------ checkpoints
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_every_checkpoint_format_loads_the_same_teacher(teacher, tmp_path, test_images):
    x = torch.rand(4, 1, 28, 28)
    want = teacher(x)
    torch.save(teacher.state_dict(), tmp_path / "sd.pt")
    torch.save({"state_dict": teacher.state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save(teacher, tmp_path / "whole.pt")
    torch.jit.save(torch.jit.trace(teacher, x), tmp_path / "script.pt")
    for path, ctor in (("sd.pt", mlp), ("wrapped.pt", mlp), ("whole.pt", None), ("script.pt", None)):
        model = load_teacher(tmp_path / path, ctor, trust=path == "whole.pt")  # a pickled module needs trust
        assert torch.allclose(model(x), want, atol=1e-5), path
    with pytest.raises(ValueError, match=r"whole\.pt holds pickled Python objects .*--trust-checkpoint"):
        load_teacher(tmp_path / "whole.pt")
    cnn = D.build_model("cnn", 0.25).eval()  # an `augpipe train` run directory
    D.save_model(cnn, tmp_path / "run" / "model.pt", config={"model": "cnn", "width": 0.25})
    for path in ("run", "run/model.pt"):
        assert torch.allclose(load_teacher(tmp_path / path)(x), cnn(x), atol=1e-5), path
    assert ap.TeacherGate(load_teacher(tmp_path / "whole.pt", trust=True), keep_ratio=0.5).teacher.fingerprint() == \
        ap.TeacherGate(teacher, keep_ratio=0.5).teacher.fingerprint()


def test_bad_checkpoints_name_the_file_and_what_was_expected(teacher, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"teacher checkpoint .*missing\.pt does not exist; expected an "):
        load_teacher(tmp_path / "missing.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty is a directory without model.pt"):
        load_teacher(tmp_path / "empty")
    torch.save(teacher.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match=r"sd\.pt holds a state_dict .*pass constructor="):
        load_teacher(tmp_path / "sd.pt")
    with pytest.raises(ValueError, match=r"sd\.pt does not fit the constructor's SmallCNN"):
        load_teacher(tmp_path / "sd.pt", lambda: D.build_model("cnn", 0.25))
    with pytest.raises(TypeError, match="constructor must return an nn.Module"):
        load_teacher(tmp_path / "sd.pt", lambda: "mlp")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"notes\.txt cannot be read by torch\.load"):
        load_teacher(tmp_path / "notes.txt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt holds a list; expected"):
        load_teacher(tmp_path / "list.pt")


# ------------------------------------------------------------------ difficulty table
def test_difficulty_table_scores_caps_files_and_apply(teacher, test_images, tmp_path):
    data = (test_images[0][:96], test_images[1][:96])
    table = ap.DifficultyTable.build(teacher, data, magnitudes=[0, 15, 30], views=2, batch_size=64, progress=False)
    assert table.scores.shape == (96, 3, 2) and len(table) == 96
    meta = table.metadata
    assert meta["metric"] == "p_true" and meta["views"] == 2 and meta["magnitudes"] == [0, 15, 30]
    assert meta["policy"] == "RandAugment(num_ops=2)" and meta["seed"] == 0 and meta["teacher"]
    means = table.mean_scores.mean(0)
    assert means[0] > means[1] > means[2]
    # entry (i, m, v) is the teacher's p_true on loader.render(i, m, epoch=v)
    loader = ap.Loader(data, batch_size=96, magnitude=0, num_workers=0, seed=0, shuffle=False)
    judge = ap.TeacherGate(teacher, threshold=0.5)
    judge.bind(loader)
    view = loader.render(np.arange(96), 15.0, epoch=1)
    assert np.allclose(table.scores[:, 1, 1], judge.score(view, loader), atol=1e-6)
    assert not np.allclose(table.scores[:, 1:, 0], table.scores[:, 1:, 1])  # two different views

    caps = table.caps(0.5)
    for i in range(96):
        ok = table.mean_scores[i] >= 0.5
        n = len(ok) if ok.all() else int(np.argmin(ok))
        assert caps[i] == ([0, 15, 30][n - 1] if n else 0)

    path = table.save(tmp_path / "t.npz")
    again = ap.DifficultyTable.load(path)
    assert np.array_equal(again.scores, table.scores) and again.metadata == json.loads(json.dumps(meta))
    assert np.array_equal(again.keys, table.keys)

    assert np.array_equal(again.apply(loader, 0.5), caps) and np.array_equal(loader.caps, caps)
    other = ap.Loader((test_images[0][96:192], test_images[1][96:192]), num_workers=0)
    with pytest.raises(ValueError, match=f"built on dataset {meta['dataset']}, but the loader's dataset is "
                                         f"{other.dataset.fingerprint()}"):
        again.apply(other, 0.5)
    subset = ap.Loader((data[0][10:50], data[1][10:50]), num_workers=0)  # a training subset of the scored set
    assert np.array_equal(again.apply(subset, 0.5, match="samples"), caps[10:50])
    with pytest.raises(ValueError, match="96 of the loader's 96 samples are not in this table"):
        again.apply(other, 0.5, match="samples")
    with pytest.raises(ValueError, match=r"one value per sample \(96\)"):
        loader.set_caps(caps[:10])
    with pytest.raises(FileNotFoundError, match="nope.npz does not exist"):
        ap.DifficultyTable.load(tmp_path / "nope.npz")


def test_table_caps_rule_on_known_scores():
    means = np.array([[0.9, 0.8, 0.7, 0.6],    # passes everywhere -> 30
                      [0.9, 0.4, 0.8, 0.9],    # fails at 10 (no comeback) -> 0
                      [0.3, 0.9, 0.9, 0.9],    # fails at the first -> 0
                      [0.6, 0.55, 0.5, 0.2]])  # -> 20
    scores = np.stack([means + 0.05, means - 0.05], axis=2)  # two views, their mean is `means`
    table = ap.DifficultyTable(scores, [0, 10, 20, 30], {"dataset": "x"})
    assert table.caps(0.5).tolist() == [30, 0, 0, 20]
    assert table.caps(0.0).tolist() == [30, 30, 30, 30] and table.caps(1.0).tolist() == [0, 0, 0, 0]


# ------------------------------------------------------------------ per-op report
def test_op_report_heat_map_and_limits(teacher, test_images, tmp_path):
    report = op_report(teacher, test_images, samples=64, magnitudes=[0, 10, 20, 30], progress=False)
    assert list(report["ops"]) == list(REPORT_OPS) and len(REPORT_OPS) == 13 and "Identity" not in report["ops"]
    assert report["samples"] == 64 and 0.6 < report["baseline_accuracy"] <= 1
    for name in ("ShearX", "TranslateY", "Rotate", "Brightness", "Contrast"):  # identity ops at M=0
        assert report["ops"][name]["accuracy"][0] == report["baseline_accuracy"]
        assert report["ops"][name]["p_true"][-1] < report["baseline_p_true"]
    paths = write_report(report, tmp_path / "rep", ap.limits_from_report(report, drop=0.1))
    assert json.loads(paths["report"].read_text()) == json.loads(json.dumps(report))
    assert paths["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["limits"].is_file()


def test_limits_from_report_are_monotone_and_limit_the_policy():
    report = {"magnitudes": [0, 10, 20, 30], "baseline_accuracy": 0.9,
              "ops": {"Solarize": {"accuracy": [0.9, 0.85, 0.5, 0.88]}, "Rotate": {"accuracy": [0.9, 0.9, 0.89, 0.86]},
                      "Posterize": {"accuracy": [0.7, 0.9, 0.9, 0.9]}}}
    assert ap.limits_from_report(report, min_accuracy=0.8) == {"Solarize": 10, "Rotate": 30, "Posterize": 0}
    assert ap.limits_from_report(report, drop=0.02) == {"Solarize": 0, "Rotate": 20, "Posterize": 0}
    for kw in ({}, {"min_accuracy": 0.8, "drop": 0.1}):
        with pytest.raises(ValueError, match="exactly one of min_accuracy= and drop="):
            ap.limits_from_report(report, **kw)
    policy = ap.RandAugment(1, ops=("Solarize",)).with_limits({"Solarize": 12})
    images = np.random.default_rng(0).integers(0, 256, (64, 1, 16, 16), dtype=np.uint8)
    batch = next(iter(ap.Loader((images, np.zeros(64, np.int64)), policy=policy, magnitude=30, batch_size=64,
                                    num_workers=0)))
    assert torch.all(batch.mags.abs() <= 12) and torch.any(batch.mags.abs() == 12)


# ------------------------------------------------------------------ command line
def test_score_show_and_report_commands(photo_folder, tmp_path, capsys):
    torch.save(D.build_model("cnn", 0.25, 3, 3).state_dict(), tmp_path / "sd.pt")
    teacher = ["--teacher", str(tmp_path / "sd.pt"), "--teacher-arch", "cnn:0.25", "--size", "32", "--no-progress"]
    main(["score", str(photo_folder), *teacher, "--magnitudes", "0,15,30", "--views", "1",
          "--out", str(tmp_path / "t.npz")])
    assert "24 samples x 3 magnitudes x 1 views" in capsys.readouterr().out
    table = ap.DifficultyTable.load(tmp_path / "t.npz")
    assert table.scores.shape == (24, 3, 1) and table.metadata["source"] == str(photo_folder)
    main(["show", "--caps", str(tmp_path / "t.npz"), "--caps-threshold", "0.34", "--out", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    main(["report", str(photo_folder), *teacher, "--samples", "12", "--magnitudes", "0,30", "--drop", "0.1",
          "--out", str(tmp_path / "rep")])
    limits = json.loads((tmp_path / "rep" / "limits.json").read_text())
    assert set(limits) == set(REPORT_OPS) and (tmp_path / "rep" / "heatmap.png").is_file()
    for argv, match in ((["score", str(photo_folder), "--teacher", str(tmp_path / "no.pt"), "--out", "x.npz"],
                         "no.pt does not exist"),
                        (["score", str(photo_folder), "--teacher", str(tmp_path / "sd.pt"), "--out", "x.npz"],
                         "holds a state_dict"),
                        (["score", str(photo_folder), *teacher[:3], "cnn:0.5", "--out", "x.npz"],
                         "does not fit the constructor")):
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert match in str(err.value.code)


def test_train_with_gate_caps_and_limits(teacher, tmp_path):
    from augpipe.driver.data import make_data

    D.save_model(D.build_model("cnn", 0.25), tmp_path / "teacher" / "model.pt", config={"model": "cnn", "width": 0.25})
    train = make_data("fashion-mnist", train_size=256, val_size=0, seed=0).train
    ap.DifficultyTable.build(teacher, train, magnitudes=[0, 30], views=1, progress=False).save(tmp_path / "t.npz")
    report = {"magnitudes": [0, 15, 30], "baseline_accuracy": 0.9,
              "ops": {"Solarize": {"accuracy": [0.9, 0.7, 0.5]}, "Rotate": {"accuracy": [0.9, 0.9, 0.9]}}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    tiny = ["train", "--model", "cnn", "--width", "0.25", "--train-size", "256", "--val-size", "0", "--test-size",
            "200", "--batch-size", "64", "--workers", "0", "--no-progress", "--no-plot", "--magnitude", "20"]
    main([*tiny, "--epochs", "1", "--gate", "fallback", "--gate-teacher", str(tmp_path / "teacher"),
          "--gate-keep-ratio", "0.75", "--gate-feedback", "2,0.5", "--caps", str(tmp_path / "t.npz"),
          "--caps-threshold", "0.5", "--limits", str(tmp_path / "r.json"), "--limits-drop", "0.1",
          "--out", str(tmp_path / "run")])
    out = json.loads((tmp_path / "run" / "report.json").read_text())
    assert out["history"][0]["gated"] == 64 and out["gate"]["gated"] == 64 and out["gate"]["samples"] == 256
    assert out["limits"] == {"Solarize": 0.0, "Rotate": 30.0} and out["caps"]["threshold"] == 0.5
    assert out["config"]["gate"] == "fallback" and out["config"]["gate_feedback"] == [2, 0.5]
    assert "--gate fallback" in out["command"]
    main([*tiny, "--epochs", "0", "--out", str(tmp_path / "plain")])  # no gating: no gate keys in the config
    assert not any(k.startswith(("gate", "caps", "limits")) for k in
                   json.loads((tmp_path / "plain" / "run.json").read_text())["config"])
    with pytest.raises(SystemExit) as err:
        main([*tiny, "--epochs", "0", "--gate-keep-ratio", "0.5", "--out", str(tmp_path / "bad")])
    assert "--gate-keep-ratio needs --gate fallback|drop|reweight" in str(err.value.code)
