"""MixUp, CutMix and RandomErasing: the planner's choices, executed, equal
torchvision v2's and timm's pixels and soft targets given the same choices;
the choices are deterministic per sample, follow the knob where asked, resume,
and reach the gate and the driver."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as st
from torchvision.transforms import v2

import augpipe as ap
from augpipe.core.mixing import CUTMIX, MIXUP, make_mix_plan

timm_mixup = pytest.importorskip("timm.data.mixup")
C = 10


@pytest.fixture(scope="module")
def grey():
    src = ap.FashionMNIST("test")
    return src.images[:512].clone(), src.labels[:512]


def _unmixed_and_mixed(source, **kwargs):
    """(the batch without mixing/erasing, the same batch with them, loader)."""
    args = dict(batch_size=64, seed=3, num_workers=0, magnitude=9, **kwargs)
    loader = ap.Loader(source, **args)
    batch = next(iter(loader))
    plain = loader.render(batch.index, batch.magnitude, epoch=batch.epoch, mix=False)
    return plain, batch, loader


def _patch_timm(monkeypatch, mixer, plan):
    """Feed timm the plan: λ before box correction is irrelevant once its box and corrected λ are given."""
    lam = plan.lam.astype(np.float32).copy()
    use_cutmix = plan.kind == CUTMIX
    mixer._params_per_elem = lambda n: (lam.copy(), use_cutmix.copy())
    boxes = iter([(tuple(int(v) for v in plan.box[i]), float(plan.lam[i])) for i in np.flatnonzero(use_cutmix)])
    monkeypatch.setattr(timm_mixup, "cutmix_bbox_and_lam", lambda *a, **k: next(boxes))


def _plan(batch, loader):
    return make_mix_plan(loader.seed, batch.epoch, batch.index.numpy(), batch.magnitude.numpy(),
                         tuple(batch.images.shape[-2:]), loader.mix, loader.erase)


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_mixed_pixels_and_soft_targets_equal_timms_given_the_plan(grey, monkeypatch, output):
    mix = ap.Mixing(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, switch_prob=0.5, label_smoothing=0.1)
    plain, batch, loader = _unmixed_and_mixed(grey, output=output, mix=mix)
    plan = _plan(batch, loader)
    assert {MIXUP, CUTMIX} <= set(plan.kind.tolist()) and (plan.kind == 0).any()  # all three cases occur
    mixer = timm_mixup.Mixup(mode="elem", mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, switch_prob=0.5,
                             num_classes=C, label_smoothing=0.1)
    _patch_timm(monkeypatch, mixer, plan)
    if output == "float":
        x, target = mixer(plain.images.clone(), plain.labels.clone())
    else:  # timm's uint8 path is its collate: float32 mix, np.rint
        collate = timm_mixup.FastCollateMixup(mode="elem", mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8,
                                              switch_prob=0.5, num_classes=C, label_smoothing=0.1)
        _patch_timm(monkeypatch, collate, plan)
        x, target = collate([(img.numpy(), int(y)) for img, y in zip(plain.images, plain.labels)])
    assert torch.equal(x, batch.images)
    torch.testing.assert_close(batch.targets, target.float(), rtol=0, atol=1e-7)
    assert torch.equal(batch.labels, plain.labels)  # labels stay each sample's own


def test_mixup_and_cutmix_rows_equal_torchvision_v2(grey):
    plain, batch, loader = _unmixed_and_mixed(grey, output="float", mix=ap.CutMix(1.0) | ap.MixUp(0.8))
    plan = _plan(batch, loader)
    h, w = batch.images.shape[-2:]
    for i in range(batch.size):
        j = int(plan.partner[i])
        pair = torch.stack([plain.images[i], plain.images[j]])  # roll(1, 0) gives row 0 the partner
        labels = torch.tensor([0, 1])
        if plan.kind[i] == MIXUP:
            out = v2.MixUp(num_classes=C).transform(pair, {"lam": float(plan.lam[i]), "labels": labels,
                                                           "batch_size": 2})
        elif plan.kind[i] == CUTMIX:
            y1, y2, x1, x2 = (int(v) for v in plan.box[i])
            lam = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)  # torchvision's lam_adjusted
            assert plan.lam[i] == np.float32(lam)
            out = v2.CutMix(num_classes=C).transform(pair, {"box": (x1, y1, x2, y2), "lam_adjusted": lam,
                                                            "labels": labels, "batch_size": 2})
        else:
            assert plan.lam[i] == 1 and int(batch.mix_index[i]) == int(batch.index[i])
            out = pair
        assert torch.equal(out[0], batch.images[i]), (i, plan.kind[i])


def test_erased_pixels_equal_torchvision_v2_given_the_rectangles(grey):
    erase = ap.RandomErasing(p=0.6, fill=0.0)
    plain, batch, loader = _unmixed_and_mixed(grey, output="float", erase=erase)
    rects = batch.erased.numpy()
    assert batch.lam is None and (rects[:, 0, 2] > 0).mean() == pytest.approx(0.6, abs=0.2)
    h, w = batch.images.shape[-2:]
    for i in range(batch.size):
        top, left, rh, rw = (int(v) for v in rects[i, 0])
        expected = plain.images[i]
        if rh:
            assert 0 < rh < h and 0 < rw < w and 0 <= top <= h - rh and 0 <= left <= w - rw
            area = rh * rw / (h * w)
            assert 0.0 < area < 1 / 3 + 0.1  # scale (0.02, 1/3), up to rounding of the sides
            expected = v2.RandomErasing().transform(expected, {"i": top, "j": left, "h": rh, "w": rw,
                                                               "v": torch.tensor([0.0])[:, None, None]})
        assert torch.equal(expected, batch.images[i]), i


def test_lambda_is_beta_distributed_and_boxes_follow_the_cutmix_rule():
    from augpipe.core.mixing import MIX_STREAM, beta_draw
    from augpipe.kernels.rng import sample_key

    idx = np.arange(20000)
    for alpha in (0.2, 1.0, 3.0):
        plan = make_mix_plan(5, 0, idx, np.full(idx.size, 9.0), (32, 32), ap.MixUp(alpha), None)
        mixed = plan.kind == MIXUP
        assert mixed.sum() == idx.size - (idx.size % 2)  # p = 1: all but a self-paired middle
        # the draws before float32 rounding (which piles Beta(0.2, 0.2)'s mass within 3e-8 of 1 onto 1.0)
        keys = [np.uint64(sample_key(np.uint64(5), np.uint64(0), np.uint64(i))) for i in idx]
        lam = np.array([beta_draw(k, MIX_STREAM + 4, alpha) for k in keys])
        assert np.array_equal(lam[mixed].astype(np.float32), plan.lam[mixed])
        assert st.kstest(lam, st.beta(alpha, alpha).cdf).pvalue > 0.01, alpha
    plan = make_mix_plan(5, 0, idx[:4000], np.full(4000, 9.0), (32, 32), ap.CutMix(1.0, correct_lam=False), None)
    area = (plan.box[:, 1] - plan.box[:, 0]) * (plan.box[:, 3] - plan.box[:, 2]) / 1024
    assert np.all(area <= 1 - plan.lam + 1e-6)  # the clipped box never exceeds the planned share


def test_choices_depend_on_the_sample_not_on_workers_or_resume(grey):
    kwargs = dict(batch_size=32, seed=11, magnitude=12, mix=ap.CutMix(1.0) | ap.MixUp(0.8),
                  erase=ap.RandomErasing(0.5, count=(1, 3)))
    ref = list(ap.Loader(grey, num_workers=0, **kwargs))
    two = list(ap.Loader(grey, num_workers=2, **kwargs))
    resumed = ap.Loader(grey, num_workers=0, **kwargs)
    it = iter(resumed)
    for _ in range(5):
        next(it)
    state = resumed.state_dict()
    again = ap.Loader(grey, num_workers=1, **kwargs)
    again.load_state_dict(state)
    rest = list(again)
    for got in (two, [None] * 5 + rest):
        for a, b in zip(ref, got):
            if b is None:
                continue
            for f in ("images", "targets", "lam", "mix_index", "mix_box", "erased"):
                assert torch.equal(getattr(a, f), getattr(b, f)), f
    # another batch size pairs samples differently, but each sample's own rectangles stay
    other = list(ap.Loader(grey, num_workers=0, **{**kwargs, "batch_size": 64}))
    rect = {int(i): r for b in ref for i, r in zip(b.index, b.erased)}
    assert all(torch.equal(rect[int(i)], r) for b in other for i, r in zip(b.index, b.erased))


def test_follow_scales_the_probability_with_the_samples_magnitude():
    idx = np.arange(4000)
    for follow, mix in (("prob", ap.MixUp(0.8, follow="prob")), ("alpha", ap.MixUp(0.8, follow="alpha"))):
        at = {m: (make_mix_plan(0, 0, idx, np.full(idx.size, m), (28, 28), mix, None).kind != 0).mean()
              for m in (0.0, 15.0, 30.0)}
        assert at[0.0] == 0 and at[30.0] > 0.99
        if follow == "prob":
            assert at[15.0] == pytest.approx(0.5, abs=0.03)
    erase = ap.RandomErasing(0.5, follow="prob")
    share = (make_mix_plan(0, 0, idx, np.full(idx.size, 6.0), (28, 28), None, erase).rects[:, 0, 2] > 0).mean()
    assert share == pytest.approx(0.5 * 6 / 30, abs=0.02)
    fixed = ap.MixUp(0.8)  # the default ignores the magnitude, as timm does
    assert (make_mix_plan(0, 0, idx, np.zeros(idx.size), (28, 28), fixed, None).kind != 0).mean() > 0.99


def test_existing_plans_do_not_change_and_eval_loaders_refuse_mixing(grey):
    kwargs = dict(batch_size=32, seed=2, num_workers=0, magnitude=9)
    a = next(iter(ap.Loader(grey, **kwargs)))
    b = next(iter(ap.Loader(grey, mix=ap.MixUp(0.8), **kwargs)))
    assert torch.equal(a.ops, b.ops) and torch.equal(a.mags, b.mags) and torch.equal(a.index, b.index)
    with pytest.raises(ValueError, match="train=False"):
        ap.Loader(grey, train=False, mix=ap.MixUp(0.8))


@pytest.mark.parametrize("make, match", [
    (lambda: ap.MixUp(0.0), "alpha"), (lambda: ap.CutMix(-1), "alpha"), (lambda: ap.MixUp(0.8, p=1.5), "p"),
    (lambda: ap.Mixing(0, 0), "mixup_alpha > 0"), (lambda: ap.Mixing(switch_prob=-0.1), "switch_prob"),
    (lambda: ap.Mixing(label_smoothing=2), "label_smoothing"), (lambda: ap.RandomErasing(p=1.1), "p"),
    (lambda: ap.RandomErasing(scale=(0.5, 0.1)), "scale"), (lambda: ap.RandomErasing(ratio=(0, 1)), "ratio"),
    (lambda: ap.RandomErasing(count=0), "count"), (lambda: ap.RandomErasing(value="noise"), "value"),
    (lambda: ap.MixUp(0.8, follow="sometimes"), "follow"), (lambda: ap.RandomErasing(follow="alpha"), "follow"),
    (lambda: ap.MixUp(0.8) | ap.MixUp(0.4), "one MixUp"),
    (lambda: ap.Mixing(mixup_alpha=float("nan")), "mixup_alpha must be a finite number >= 0"),
    (lambda: ap.RandomErasing(fill=float("inf")), "fill must be a finite number"),
])
def test_bad_mixing_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_loader_combinations_are_named(grey):
    with pytest.raises(ValueError, match="output='float'"):
        ap.Loader(grey, erase=ap.RandomErasing(value="pixel"), output="uint8")
    with pytest.raises(ValueError, match="0..255"):
        ap.Loader(grey, erase=ap.RandomErasing(fill=0.5), output="uint8")
    with pytest.raises(TypeError, match="Mixing"):
        ap.Loader(grey, mix=v2.MixUp(num_classes=C))


def test_gate_judges_mixed_samples_against_their_soft_target_and_falls_back_unmixed(grey):
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, C))
    gate = ap.TeacherGate(teacher, metric="p_true", threshold=0.1, action="fallback")
    loader = ap.Loader(grey, batch_size=64, seed=4, num_workers=0, mix=ap.MixUp(1.0), output="float", gate=gate)
    raw = next(iter(loader._backend.iterate(0, 0)))  # mixed (the torch backend applies the stage), not gated
    assert raw.lam is not None and raw.gated is None
    batch = next(iter(loader))
    with torch.no_grad():
        p = torch.softmax(gate.teacher.logits(raw.images).float(), 1)
    partner = torch.as_tensor(loader.dataset.labels[raw.mix_index.numpy()])
    expected = raw.lam * p[torch.arange(64), raw.labels] + (1 - raw.lam) * p[torch.arange(64), partner]
    torch.testing.assert_close(batch.difficulty, expected, rtol=1e-5, atol=1e-6)
    hard = batch.gated
    assert hard.any() and (~hard).any()
    unmixed = loader.render(batch.index[hard], 0.0, epoch=batch.epoch, mix=False)
    assert torch.equal(batch.images[hard], unmixed.images) and torch.all(batch.lam[hard] == 1)
    assert torch.equal(batch.targets[hard], torch.nn.functional.one_hot(batch.labels[hard], C).float())
    assert torch.equal(batch.images[~hard], raw.images[~hard])


def test_driver_trains_on_soft_targets_with_timms_option_names(tmp_path):
    from augpipe.driver.runs import mixing_from

    mix, erase = mixing_from({"mixup": 0.8, "cutmix": 1.0, "reprob": 0.25, "smoothing": 0.1})
    assert mix == ap.Mixing(0.8, 1.0, label_smoothing=0.1) and erase == ap.RandomErasing(0.25)
    assert mixing_from({}) == (None, None)
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "augpipe", "train", "--model", "cnn", "--width", "0.25", "--train-size", "256",
           "--val-size", "128", "--epochs", "1", "--mixup", "0.8", "--cutmix", "1.0", "--reprob", "0.25",
           "--smoothing", "0.1", "--workers", "0", "--no-progress", "--no-plot", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["config"]["mixup"] == 0.8 and report["history"][0]["loss"] > 0


def test_show_draws_one_batch_mixed_and_erased_across_magnitudes(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    out = tmp_path / "mixed.png"
    subprocess.run([sys.executable, "-m", "augpipe", "show", "--mix", "both", "--erase", "0.5", "--magnitudes",
                    "0,9,30", "--out", str(out)], check=True, capture_output=True)
    grid = np.asarray(Image.open(out).convert("L"), dtype=np.int16)
    assert grid.shape == (22 + 8 * 96, 150 + 3 * 96)
    cells = [grid[22 + 2:22 + 94, 150 + c * 96 + 2:150 + c * 96 + 94] for c in range(3)]
    assert np.abs(cells[0] - cells[2]).mean() > 1  # the ops at M=30 differ from M=0 on the same mixed sample


def test_the_one_pass_normalisation_equals_torchs_for_every_level_and_layout():
    """output='float' on CPU is normalised by a numba pass (fused with mixing where a loader mixes);
    it must give torch's x.float().mul_(1/(255·std)).add_(-mean/std) bit for bit."""
    src = ap.FashionMNIST("test", channels=3)
    ctx = ap.Loader(ap.ArraySource(src.images[:8].numpy(), src.labels[:8]), output="float", num_workers=0,
                    batch_size=8).context
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    for x in (levels.contiguous(), levels.permute(0, 1, 3, 2)):
        assert torch.equal(ctx.normalize(x), x.float().mul_(ctx.norm_scale).add_(ctx.norm_shift))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_the_cuda_path_batched_torch_equals_the_cpu_kernels(dtype):
    """CUDA batches are mixed and erased by batched torch ops; run them here on CPU against the kernels."""
    from augpipe.engine import mixing

    idx = np.arange(64)
    plan = make_mix_plan(1, 2, idx, np.full(64, 9.0), (28, 28), ap.CutMix(1.0) | ap.MixUp(0.8),
                         ap.RandomErasing(0.7, count=(1, 3), fill=7))
    assert {MIXUP, CUTMIX} <= set(plan.kind.tolist())
    x = (torch.rand(64, 3, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(dtype)
    erase = ap.RandomErasing(0.7, count=(1, 3), fill=7)
    kernels = mixing.mix(mixing.erase(x.clone(), plan, erase, 1, 2, idx), plan)
    torch_ops = mixing.mix_torch(mixing.erase(x.clone(), plan, erase, 1, 2, idx, torch_ops=True), plan)
    assert torch.equal(kernels, torch_ops)
