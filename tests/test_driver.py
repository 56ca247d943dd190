"""augpipe.driver as a library: models, train/evaluate, KD, pruning,
capacity schedules, recipes, extra parameters, checkpoints. Tiny models on
real Fashion-MNIST subsets, 1-2 epochs."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import augpipe as ap
from augpipe import driver as D
from augpipe.models import zoo as driver_models
from augpipe.driver.prune import prunable_weights


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: fast and repeatable on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fmnist_train():
    return ap.FashionMNIST("train")


def make_loader(src, n=512, start=0, batch_size=128, train=True, magnitude=9.0, seed=0):
    idx = np.arange(start, start + n)
    return ap.Loader(ap.ArraySource(src.images[idx], src.labels[idx]), batch_size=batch_size, num_workers=0,
                     output="float", seed=seed, magnitude=magnitude, train=train)


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return D.build_model("cnn", 0.25)


# ----------------------------------------------------------------- models
def test_model_families_span_and_docstring_table():
    x = torch.zeros(2, 1, 28, 28)
    rows = re.findall(r"^\|\s*([\d.]+)\s*\|(.+)\|$", driver_models.__doc__, re.M)
    assert len(rows) == 4
    counts = {}
    for width, cells in rows:
        for name, cell in zip(("cnn", "resnet20", "resnet32", "resnet56"), cells.split("|")):
            model = D.build_model(name, float(width))
            counts[name, float(width)] = D.count_params(model)
            assert counts[name, float(width)] == int(cell.strip().replace(",", "")), (name, width)
    for name in ("cnn", "resnet20"):
        assert counts[name, 2.0] / counts[name, 0.25] >= 30
    for name in ("cnn", "resnet20"):
        assert D.build_model(name, 0.25, in_channels=3, num_classes=7)(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert D.resnet_cifar(20, 0.5)(x).shape == (2, 10) and D.SmallCNN(4)(x).shape == (2, 10)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*resnet20, resnet32, resnet56, cnn"):
        D.build_model("vgg")
    with pytest.raises(ValueError, match="6n \\+ 2"):
        D.resnet_cifar(depth=21)
    with pytest.raises(ValueError, match="width"):
        D.build_model("cnn", 0)


# -------------------------------------------------------- losses and train
def test_kd_loss_matches_hand_computation():
    torch.manual_seed(0)
    s, t, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    kd = D.KD(temperature=3.0, kd_weight=0.7, ce_weight=0.3)
    ps, pt = torch.softmax(s / 3, 1), torch.softmax(t / 3, 1)
    ce = -torch.log(torch.softmax(s, 1)[torch.arange(6), y])
    kl = (pt * (pt.log() - ps.log())).sum(1)
    per_sample = 0.3 * ce + 0.7 * 9 * kl
    assert torch.allclose(D.per_sample_loss(s, y, t, kd), per_sample, atol=1e-6)
    assert torch.allclose(D.reduce_loss(D.per_sample_loss(s, y, t, kd)), per_sample.mean(), atol=1e-6)
    w = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.25, 1.0])
    assert torch.allclose(D.reduce_loss(per_sample, w), (w * per_sample).sum() / 6)
    with pytest.raises(ValueError, match="temperature"):
        D.KD(temperature=0)


def test_train_with_teacher_leaves_teacher_untouched(fmnist_train):
    loader = make_loader(fmnist_train)
    teacher, student = small_cnn(1), small_cnn(2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    history = D.train(student, loader, 1, teacher=teacher, kd=D.KD(), progress=False)
    assert np.isfinite(history.last["loss"])
    assert not teacher.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN statistics too
    with pytest.raises(ValueError, match="teacher"):
        D.train(student, loader, 1, kd=D.KD(), progress=False)


def test_train_honours_batch_weight(fmnist_train):
    def run(weight):
        model = small_cnn()
        zero = {k: v.clone() for k, v in model.state_dict().items()}
        on_batch = None if weight is None else (lambda b: setattr(b, "weight", torch.full((len(b.labels),), weight)))
        D.train(model, make_loader(fmnist_train), 1, weight_decay=0.0, on_batch=on_batch, progress=False)
        return zero, {k: v for k, v in model.named_parameters()}

    zero, trained = run(0.0)  # every sample weighs nothing: no parameter moves
    assert all(torch.equal(zero[k], p) for k, p in trained.items())
    _, plain = run(None)
    _, ones = run(1.0)  # weight 1 is the plain mean
    assert all(torch.equal(plain[k], p) for k, p in ones.items())


def test_train_magnitude_forms_reach_the_batches(fmnist_train):
    loader, seen = make_loader(fmnist_train, n=384), []
    record = lambda b: seen.append((b.epoch, b.step, float(b.magnitude.min()), float(b.magnitude.max())))  # noqa: E731
    D.train(small_cnn(), loader, 1, magnitude=4.5, on_batch=record, progress=False)
    assert [s[2:] for s in seen] == [(4.5, 4.5)] * 3 and loader.magnitude == 4.5
    seen.clear()
    D.train(small_cnn(), loader, 2, magnitude=lambda e, s: 10 * e + s, on_batch=record, progress=False)
    assert [s[2] for s in seen] == [0, 1, 2, 10, 11, 12]  # epochs counted from 0 in this call
    assert [s[0] for s in seen] == [1, 1, 1, 2, 2, 2]  # the loader's epochs continue
    seen.clear()
    model = small_cnn()
    D.prune(model, 0.5)
    schedule = D.CapacitySchedule.linear(20, 0, dense_params=D.count_params(model))
    D.train(model, loader, 1, magnitude=schedule, on_batch=record, progress=False)
    expected = schedule(D.count_params(model, nonzero=True))
    assert all(abs(s[2] - expected) < 1e-5 and abs(s[3] - expected) < 1e-5 for s in seen) and expected < 20


def test_evaluate_counts_every_sample(fmnist_train):
    model = small_cnn()
    result = D.evaluate(model, make_loader(fmnist_train, n=300, train=False, batch_size=128))
    assert result["samples"] == 300 and 0 <= result["accuracy"] <= 1 and result["loss"] > 0


def test_train_resumes_bit_identical_from_checkpoints(fmnist_train, tmp_path):
    reference = small_cnn()
    D.train(reference, make_loader(fmnist_train), 3, progress=False, checkpoint_dir=tmp_path / "a")
    first = small_cnn()
    D.train(first, make_loader(fmnist_train), 3, progress=False, checkpoint_dir=tmp_path / "b")
    (tmp_path / "b" / "epoch-0003.pt").unlink()  # as if killed during epoch 3
    resumed = small_cnn(seed=5)  # whatever it starts from, the checkpoint wins
    history = D.train(resumed, make_loader(fmnist_train), 3, progress=False, checkpoint_dir=tmp_path / "b")
    assert len(history) == 3
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(ValueError, match=r"cnn\(width=0.25.*not this resnet20\(width=0.25"):
        D.train(D.build_model("resnet20", 0.25), make_loader(fmnist_train), 3, progress=False,
                checkpoint_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="another training setup"):
        D.train(small_cnn(), make_loader(fmnist_train), 4, progress=False, checkpoint_dir=tmp_path / "b")


# ---------------------------------------------------------------- pruning
def test_unstructured_pruning_is_global_exact_and_not_compounded():
    model = D.build_model("resnet20", 0.25)
    layers = prunable_weights(model)
    total = sum(m.weight.numel() for _, m in layers)
    for target in (0.5, 0.8):
        report = D.prune(model, target, example_input=torch.zeros(1, 1, 28, 28))
        zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
        assert zeros == round(target * total)  # global: exact over the whole model
        assert report.sparsity == pytest.approx(target, abs=1 / total)
        assert report.params_after < report.params_before and report.macs_after < report.macs_before
    per_layer = list(report.layers.values())
    assert max(per_layer) - min(per_layer) > 0.1  # one global ranking, not the same fraction per layer
    with pytest.raises(ValueError, match="already 80.00% sparse"):
        D.prune(model, 0.5)
    D.prune(model, 0.8, permanent=True)
    assert not hasattr(layers[0][1], "weight_mask") and D.weight_sparsity(model) == pytest.approx(0.8, abs=1e-4)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "0.5", float("nan")])
def test_sparsity_outside_unit_interval_is_an_error(bad):
    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\)"):
        D.prune(small_cnn(), bad)


def test_unknown_pruning_method():
    with pytest.raises(ValueError, match="unknown pruning method 'magnitude'.*l1-unstructured, channel"):
        D.prune(small_cnn(), 0.5, method="magnitude")


def test_channel_pruning_shrinks_runs_trains_and_reloads(fmnist_train):
    torch.manual_seed(0)
    model = D.build_model("resnet20", 0.5)
    x = torch.zeros(2, 1, 28, 28)
    dense = D.count_params(model)
    report = D.prune(model, 0.5, "channel", example_input=x)
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    assert report.sparsity == pytest.approx(0.5, abs=0.02)
    report = D.prune(model, 0.75, "channel", example_input=x)  # relative to the dense model, not compounded
    assert 1 - D.count_params(model) / dense == pytest.approx(0.75, abs=0.02)
    loader = make_loader(fmnist_train, n=256)
    D.recalibrate_bn(model, loader, batches=2)
    history = D.train(model, loader, 1, progress=False)
    assert np.isfinite(history.last["loss"]) and model(x).shape == (2, 10)
    fresh = D.build_model("resnet20", 0.5)  # a dense model loads the shrunk weights
    D.load_model(fresh, model.state_dict(), D.model_arch(model))
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    with pytest.raises(ValueError, match="example_input"):
        D.prune(D.build_model("cnn", 0.25), 0.5, "channel")


# ------------------------------------------------------ capacity schedule
def test_capacity_schedule_fit_linear_and_json(tmp_path):
    points = {1_000: 2.0, 10_000: 6.0, 100_000: 10.0}
    fitted = D.CapacitySchedule.fit(points)
    assert (fitted.a, fitted.b) == (pytest.approx(-10.0), pytest.approx(4.0))
    assert fitted(31_623) == pytest.approx(-10 + 4 * np.log10(31_623)) and fitted(10) == 0.0  # clipped at m_min
    raw = [{"params": p, "magnitude": m, "accuracy": acc, "seed": s} for p, best in points.items()
           for m in (0, 2, 6, 10, 14) for s in range(2) for acc in [1 - abs(m - best) / 100 + s / 1000]]
    assert D.CapacitySchedule.fit(raw).to_dict()["points"] == [[p, m] for p, m in points.items()]
    fitted.save(tmp_path / "s.json")
    assert D.CapacitySchedule.load(tmp_path / "s.json")(5_000) == fitted(5_000)
    linear = D.CapacitySchedule.linear(9, 1, dense_params=1000)
    assert (linear(1000), linear(500), linear(0.5), linear(0)) == (9, 5, 5, 1)
    model = small_cnn()
    assert D.CapacitySchedule.linear(9, dense_params=D.count_params(model))(model) == 9
    with pytest.raises(ValueError, match="looks like a ratio"):
        fitted(0.5)
    with pytest.raises(ValueError, match="dense_params"):
        D.CapacitySchedule.linear(9)
    with pytest.raises(ValueError, match="m_dense must be in"):
        D.CapacitySchedule.linear(31, dense_params=10)


# ---------------------------------------------------------------- recipes
def test_iterative_prune_sets_the_schedule_magnitude_each_round(fmnist_train, tmp_path):
    model, loader = small_cnn(), make_loader(fmnist_train, n=256)
    schedule = D.CapacitySchedule.linear(12, 0, dense_params=D.count_params(model))
    seen = []
    rounds = D.iterative_prune(model, loader, target_sparsity=0.6, rounds=3, finetune_epochs=1, magnitude=schedule,
                               val_loader=make_loader(fmnist_train, n=256, start=5000, train=False),
                               checkpoint_dir=tmp_path, progress=False, lr=0.01,
                               on_batch=lambda b: seen.append(b.magnitude.clone()))
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert [r["sparsity"] for r in rounds] == pytest.approx([0, 0.2, 0.4, 0.6], abs=1e-3)
    per_round = [torch.cat(seen[i * len(loader):(i + 1) * len(loader)]) for i in range(3)]
    for r, mags in zip(rounds[1:], per_round):
        assert r["magnitude"] == pytest.approx(schedule(r["params"]))
        assert torch.allclose(mags, torch.full_like(mags, r["magnitude"]))
        assert 0 <= r["accuracy"] <= 1 and len(r["mask_digests"]) == 1
    assert rounds[1]["magnitude"] > rounds[2]["magnitude"] > rounds[3]["magnitude"]
    # A second call finds the round checkpoints and returns the same records without training.
    again = D.iterative_prune(small_cnn(seed=3), make_loader(fmnist_train, n=256), target_sparsity=0.6, rounds=3,
                              finetune_epochs=1, magnitude=schedule, checkpoint_dir=tmp_path, progress=False)
    assert [r["magnitude"] for r in again] == [r["magnitude"] for r in rounds]
    walls = [r["wall_s_total"] for r in rounds[1:]]
    assert walls == sorted(walls) and walls[0] > 0
    assert again[-1]["wall_s_total"] > walls[-2]  # the first process's time is carried over, not restarted


def test_iterative_prune_magnitude_as_function_of_sparsity(fmnist_train):
    seen = []
    rounds = D.iterative_prune(small_cnn(), make_loader(fmnist_train, n=256), target_sparsity=0.5, rounds=2,
                               finetune_epochs=1, magnitude=lambda s: 20 * (1 - s), progress=False,
                               on_batch=lambda b: seen.append(float(b.magnitude[0])))
    assert [r["magnitude"] for r in rounds[1:]] == pytest.approx([15, 10], abs=0.01)
    assert seen == pytest.approx([rounds[1]["magnitude"]] * 2 + [rounds[2]["magnitude"]] * 2)


def test_dense_strong_then_weak(fmnist_train):
    model, seen = small_cnn(), []
    out = D.dense_strong_then_weak(model, make_loader(fmnist_train, n=256), epochs=1, finetune_epochs=1, strong=14,
                                   weak=0, sparsity=0.5, progress=False,
                                   on_batch=lambda b: seen.append(float(b.magnitude[0])))
    assert seen == [14, 14, 0, 0]
    assert out["rounds"][-1]["sparsity"] == pytest.approx(0.5, abs=1e-3) and len(out["dense"]["epochs"]) == 1


def test_aux_heads_train_then_deploy_to_the_small_model(fmnist_train):
    for name in ("resnet20", "cnn"):
        torch.manual_seed(0)
        small = D.build_model(name, 0.25)
        n_small = D.count_params(small)
        wrapped = D.AuxHeads(small, weight=0.5)
        assert len(wrapped.layers) == 2 and D.count_params(wrapped) > n_small
        heads_before = [p.clone() for p in wrapped.heads.parameters()]
        D.train(wrapped, make_loader(fmnist_train, n=256, magnitude=14), 1, progress=False)
        assert all(not torch.equal(a, b) for a, b in zip(heads_before, wrapped.heads.parameters()))
        x = next(iter(make_loader(fmnist_train, n=8, batch_size=8, train=False)))[0]
        wrapped.eval()
        expected = wrapped(x)
        deployed = wrapped.deploy()
        assert deployed is small and D.count_params(deployed) == n_small
        assert D.count_params(deployed) == D.count_params(D.build_model(name, 0.25))
        assert all(not m._forward_hooks for m in deployed.modules())
        assert torch.equal(deployed(x), expected)


def test_checkpoint_of_another_model_names_both(tmp_path):
    D.save_model(small_cnn(), tmp_path / "cnn.pt")
    state = torch.load(tmp_path / "cnn.pt", weights_only=False)
    with pytest.raises(ValueError, match=r"holds a cnn\(width=0.25, in_channels=1, num_classes=10\) model, "
                                         r"not this resnet20\(width=1, in_channels=1, num_classes=10\)"):
        D.load_model(D.build_model("resnet20"), state["model"], state["arch"], tmp_path / "cnn.pt")
