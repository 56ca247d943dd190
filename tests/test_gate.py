"""The online gate with a scripted teacher whose confidence is a known function
of the augmentation: marking, fallback, drop, reweight, feedback, determinism,
resume, bad input, and caps kept identical across 2 gloo ranks.

The scripted setting: constant images of value 100 + 10 * label (32x32,
grey), RandAugment(1, ops=("TranslateX",)), no crop or flip. TranslateX by
s pixels leaves s columns of zeros, so the teacher (`ShiftTeacher`, a real
nn.Module) reads the label from the brightness and the magnitude from the
empty share: its true-class logit is 4 - 16 * s / 32, the others 0.
Per-sample caps spread the magnitudes over {0, 6, ..., 30}.
"""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import augpipe as ap
from augpipe.core.ops import STANDARD

N, SIDE, CLASSES = 256, 32, 10
POLICY = ap.RandAugment(1, ops=("TranslateX",))
CAP_VALUES = (0, 6, 12, 18, 24, 30)


class ShiftTeacher(nn.Module):
    """Logits from the image: label = (max - 100) / 10, true logit 4 - 16 * (share of zero pixels).
    Expects x = u / 255 (the gate's mean=0, std=1)."""

    def __init__(self, classes: int = CLASSES, wrap=None):
        super().__init__()
        self.classes, self.wrap = classes, wrap
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        u = (x.float() * 255).round()
        empty = (u == 0).float().mean((1, 2, 3))
        label = ((u.amax((1, 2, 3)) - 100) / 10).round().long().clamp(0, self.classes - 1)
        logits = torch.zeros(len(x), self.classes, device=x.device)
        logits[torch.arange(len(x)), label] = 4 - 16 * empty
        if self.wrap == "tuple":
            return logits, empty
        if self.wrap == "dict":
            return {"features": empty, "logits": logits}
        if self.wrap == "bad-dict":
            return {"out": logits, "features": empty}
        return logits


def scripted_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, N)
    images = np.broadcast_to((100 + 10 * labels)[:, None, None, None], (N, 1, SIDE, SIDE)).astype(np.uint8)
    caps = rng.choice(CAP_VALUES, N).astype(np.float32)
    return images.copy(), labels, caps


def scripted_loader(gate=None, data=None, **kw):
    images, labels, caps = data if data is not None else scripted_data()
    kw = {"batch_size": 64, "num_workers": 0, "seed": 0, **kw}
    loader = ap.Loader((images, labels), policy=POLICY, magnitude=30, crop=ap.FullImage(SIDE), **kw)
    loader.set_caps(caps)
    loader.gate = gate
    return loader


def expected_logit(batch) -> np.ndarray:
    """The scripted teacher's true-class logit, from the plan alone (the ops' signed magnitudes)."""
    shift = np.abs(ap.op_params(ap.OP_IDS["TranslateX"], batch.mags[:, 0].numpy(), STANDARD, SIDE, SIDE))
    return 4 - 16 * shift / SIDE


def expected_score(metric: str, logit: np.ndarray) -> np.ndarray:
    def probs(t):
        z = np.exp(np.stack([t] + [np.zeros_like(t)] * (CLASSES - 1), 1))
        return z / z.sum(1, keepdims=True)

    p = probs(logit)
    if metric == "p_true":
        return p[:, 0]
    if metric == "margin":
        return p[:, 0] - p[:, 1]
    if metric == "entropy":
        return 1 - (-(p * np.log(p)).sum(1)) / math.log(CLASSES)
    q = probs(np.full_like(logit, 4.0))  # clean view: no shift
    return np.exp(-(q * (np.log(q) - np.log(p))).sum(1))


def run(loader, limit=None):
    out = []
    for b in loader:
        out.append(b)
        if limit is not None and len(out) == limit:
            break
    return out


def gate(metric="p_true", threshold=0.2, **kw):
    return ap.TeacherGate(ShiftTeacher(kw.pop("classes", CLASSES)), metric=metric, threshold=threshold,
                          mean=0.0, std=1.0, **kw)


# ------------------------------------------------------------------ marking
THRESHOLDS = {"p_true": 0.2, "margin": 0.1, "entropy": 0.1, "kl": 0.5}


@pytest.mark.parametrize("metric", list(THRESHOLDS))
def test_scripted_teacher_marks_exactly_the_expected_samples_and_reweights(metric):
    t = THRESHOLDS[metric]
    loader = scripted_loader(gate(metric, t, action="reweight"))
    gated = 0
    for b in loader:
        want = expected_score(metric, expected_logit(b))
        assert np.allclose(b.difficulty.numpy(), want, atol=1e-5)
        assert np.abs(want - t).min() > 1e-3  # no sample sits on the threshold
        assert torch.equal(b.gated, torch.from_numpy(want < t))
        low = -1.0 if metric == "margin" else 0.0
        w = np.where(want < t, np.clip((want - low) / (t - low), 0, 1), 1.0)
        assert np.allclose(b.weight.numpy(), w, atol=1e-5) and b.size == 64
        gated += int(b.gated.sum())
    assert 0 < gated < N and loader.gate.gated == gated and loader.gate.samples == N


def test_uint8_and_float_output_give_the_same_scores():
    a = run(scripted_loader(gate(action="reweight")))
    b = run(scripted_loader(gate(action="reweight"), output="float"))
    for x, y in zip(a, b):
        assert torch.allclose(x.difficulty, y.difficulty, atol=1e-6) and torch.equal(x.gated, y.gated)


def test_keep_ratio_gates_the_lowest_scores_ties_by_position():
    loader = scripted_loader(ap.TeacherGate(ShiftTeacher(), keep_ratio=0.75, action="reweight", mean=0, std=1))
    for b in loader:
        s = b.difficulty.numpy()
        hard = np.zeros(64, bool)
        hard[np.lexsort((np.arange(64), s))[:16]] = True  # 16 lowest, ties: earlier position first
        assert torch.equal(b.gated, torch.from_numpy(hard))
        t = np.sort(s)[16]  # the lowest kept score
        assert np.allclose(b.weight.numpy(), np.where(hard, np.clip(s / t, 0, 1), 1), atol=1e-6)


# ------------------------------------------------------------------ actions
@pytest.mark.parametrize("fallback", [0.0, 3.0, "half"])
def test_fallback_rerenders_hard_samples_with_their_own_plan(fallback):
    plain = run(scripted_loader())
    loader = scripted_loader(gate(action="fallback", fallback=fallback))
    for ref, b in zip(plain, run(loader)):
        hard = b.gated.numpy()
        assert hard.any() and (~hard).any() and b.size == ref.size
        used = ref.magnitude.numpy()[hard]
        weaker = used / 2 if fallback == "half" else np.minimum(used, fallback)
        view = loader.render(ref.index[hard], weaker, epoch=ref.epoch)
        assert torch.equal(b.images[hard], view.images) and torch.equal(b.images[~hard], ref.images[~hard])
        assert np.array_equal(b.magnitude.numpy()[hard], weaker.astype(np.float32))
        assert torch.equal(b.magnitude[~hard], ref.magnitude[~hard]) and torch.equal(b.mags[hard], view.mags)
        assert torch.equal(b.ops, ref.ops) and torch.equal(b.index, ref.index) and torch.equal(b.labels, ref.labels)
        assert np.allclose(b.difficulty.numpy(), expected_score("p_true", expected_logit(ref)), atol=1e-5)
        assert torch.all(b.weight == 1)


def test_fallback_keeps_crop_flip_and_ops_on_real_images(fmnist):
    """Random crop + flip + RandAugment(2), float output, a random tiny CNN: the
    hardest quarter is swapped for loader.render of the same plan at magnitude 0."""
    torch.manual_seed(0)
    teacher = ap.driver.build_model("cnn", 0.25).eval()
    kw = dict(batch_size=50, magnitude=20, seed=3, num_workers=0, output="float")
    plain = run(ap.Loader(fmnist, **kw), 3)
    loader = ap.Loader(fmnist, **kw, gate=ap.TeacherGate(teacher, keep_ratio=0.8, action="fallback"))
    for ref, b in zip(plain, run(loader, 3)):
        hard = b.gated.numpy()
        assert hard.sum() == 10 and torch.equal(b.images[~hard], ref.images[~hard])
        view = loader.render(ref.index[hard], 0.0, epoch=ref.epoch)
        assert torch.equal(b.images[hard], view.images) and not torch.equal(b.images[hard], ref.images[hard])
        assert torch.all(b.magnitude[hard] == 0) and torch.equal(b.ops, ref.ops)


def test_drop_removes_the_hard_samples_consistently():
    plain = run(scripted_loader())
    for ref, b in zip(plain, run(scripted_loader(gate(action="drop")))):
        keep = expected_score("p_true", expected_logit(ref)) >= 0.2
        assert b.size == keep.sum() < ref.size
        for field in ("images", "labels", "index", "magnitude", "ops", "mags"):
            assert torch.equal(getattr(b, field), getattr(ref, field)[torch.from_numpy(keep)])
        assert not b.gated.any() and torch.all(b.weight == 1) and torch.all(b.difficulty >= 0.2)
        assert len(b.weight) == len(b.difficulty) == b.size


def test_drop_of_every_sample_yields_empty_consistent_batches():
    for b in scripted_loader(gate(threshold=1.0, action="drop")):
        assert b.size == 0 and b.images.shape == (0, 1, SIDE, SIDE) and len(b.index) == len(b.weight) == 0


def test_amp_scores_close_to_float32(fmnist):
    teacher = ap.driver.build_model("cnn", 0.25).eval()
    kw = dict(batch_size=64, num_workers=0, magnitude=9)
    a = run(ap.Loader(fmnist, **kw, gate=ap.TeacherGate(teacher, keep_ratio=0.5, action="reweight")), 1)[0]
    b = run(ap.Loader(fmnist, **kw, gate=ap.TeacherGate(teacher, keep_ratio=0.5, action="reweight", amp=True)), 1)[0]
    assert torch.allclose(a.difficulty, b.difficulty, atol=0.05) and not torch.equal(a.difficulty, b.difficulty)


# ------------------------------------------------------------------ feedback
def test_feedback_moves_caps_and_the_next_epoch_plans_use_them():
    images, labels, caps = scripted_data()
    loader = scripted_loader(gate(action="reweight", feedback=ap.CapFeedback(down=2, up=0.5)),
                             data=(images, labels, caps))
    hard = np.zeros(N, bool)
    for b in loader:
        hard[b.index.numpy()] = b.gated.numpy()
    assert loader.epoch == 1 and 0 < hard.sum() < N
    want = np.where(hard, np.maximum(0, caps - 2), np.minimum(30, caps + 0.5)).astype(np.float32)
    assert np.array_equal(loader.caps, want)
    assert (loader.caps[hard] < caps[hard]).all() and (loader.caps[~hard] >= caps[~hard]).all()
    for b in loader:  # epoch 1 is planned with the new caps (knob 30)
        assert np.array_equal(b.magnitude.numpy(), want[b.index.numpy()])
    assert loader.state_dict()["caps"] is not None


# ------------------------------------------------------------------ determinism and resume
def _fingerprint(batches):
    return [(b.images.clone(), b.index.clone(), b.magnitude.clone(), b.gated.clone(), b.weight.clone())
            for b in batches]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(x, y))


def _resumable(data, workers=0):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        teacher = ap.driver.build_model("cnn", 0.25).eval()
    g = ap.TeacherGate(teacher, keep_ratio=0.7, action="fallback", fallback="half",
                       feedback=ap.CapFeedback(down=3, up=1))
    return ap.Loader(data, batch_size=64, magnitude=14, seed=7, num_workers=workers, gate=g)


def test_gated_run_is_bit_identical_and_resumes_mid_epoch(fmnist):
    data = (fmnist[0][:320], fmnist[1][:320])
    a = _resumable(data)
    whole = _fingerprint(run(a) + run(a))  # 2 epochs of 5 batches, caps fed back in between
    again = _resumable(data)
    _same(whole, _fingerprint(run(again) + run(again)))
    b = _resumable(data, workers=2)  # worker threads prefetching: same results
    _same(whole, _fingerprint(run(b) + run(b)))
    assert np.array_equal(a.caps, b.caps) and a.gate.state_dict() == b.gate.state_dict()
    assert (a.caps < 30).any()

    c = _resumable(data)
    first = _fingerprint(run(c)) + _fingerprint(run(c, 2))
    state = c.state_dict()
    assert state["epoch"] == 1 and state["step"] == 2 and state["gate"]["batches"] == 7
    d = _resumable(data)
    d.load_state_dict(state)
    assert np.array_equal(d.caps, state["caps"])
    _same(whole, first + _fingerprint(run(d)))
    assert np.array_equal(d.caps, a.caps) and d.gate.state_dict() == a.gate.state_dict()


# ------------------------------------------------------------------ teacher outputs, eval mode, bad input
@pytest.mark.parametrize("wrap", ["tuple", "dict"])
def test_tuple_and_dict_outputs_use_first_element_or_logits_key(wrap):
    a = run(scripted_loader(gate(action="reweight")), 1)[0]
    t = ap.TeacherGate(ShiftTeacher(wrap=wrap), threshold=0.2, action="reweight", mean=0, std=1)
    b = run(scripted_loader(t), 1)[0]
    assert torch.equal(a.difficulty, b.difficulty) and torch.equal(a.gated, b.gated)


def test_dict_without_logits_is_a_clear_error_unless_output_key_names_it():
    with pytest.raises(TypeError, match=r"keys \['features', 'out'\].*output_key"):
        scripted_loader(ap.TeacherGate(ShiftTeacher(wrap="bad-dict"), threshold=0.2, mean=0, std=1))
    t = ap.TeacherGate(ShiftTeacher(wrap="bad-dict"), threshold=0.2, mean=0, std=1, output_key="out")
    assert run(scripted_loader(t), 1)[0].gated.any()


def test_teacher_runs_in_eval_mode_without_touching_batchnorm_or_grads(fmnist):
    teacher = ap.driver.build_model("cnn", 0.25).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    loader = ap.Loader(fmnist, batch_size=64, num_workers=0, gate=ap.TeacherGate(teacher, keep_ratio=0.5))
    b = run(loader, 2)[-1]
    assert teacher.training and all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not b.difficulty.requires_grad and all(p.grad is None for p in teacher.parameters())


def test_wrong_class_count_fails_when_attached_naming_both_numbers():
    with pytest.raises(ValueError, match=r"teacher outputs 7 classes but the loader's dataset has 10 classes"):
        scripted_loader(gate(classes=7))
    loader = scripted_loader()
    with pytest.raises(ValueError, match="7 classes.*10 classes"):
        loader.gate = gate(classes=7)
    assert loader.gate is None


@pytest.mark.parametrize("kw, match", [
    ({"threshold": 0.5, "keep_ratio": 0.5}, "exactly one of threshold"),
    ({}, "exactly one of threshold"),
    ({"keep_ratio": 0.0}, r"keep_ratio must be a number in \(0, 1\]"),
    ({"keep_ratio": 1.5}, r"keep_ratio must be a number in \(0, 1\]"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"threshold": 0.5, "action": "skip"}, "unknown action 'skip'"),
    ({"threshold": 0.5, "fallback": 31}, "fallback"),
    ({"threshold": 0.5, "fallback": "quarter"}, "fallback must be a magnitude in"),
    ({"threshold": 0.5, "metric": "loss"}, "unknown metric 'loss'"),
])
def test_bad_gate_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        ap.TeacherGate(ShiftTeacher(), **kw)


def test_bad_teacher_and_feedback_arguments():
    with pytest.raises(TypeError, match="teacher must be an nn.Module or a callable"):
        ap.TeacherGate("model.pt", threshold=0.5)
    with pytest.raises(TypeError, match="feedback must be a CapFeedback"):
        ap.TeacherGate(ShiftTeacher(), threshold=0.5, feedback=(2, 0.5))
    with pytest.raises(ValueError, match="CapFeedback down"):
        ap.CapFeedback(down=-1)
    with pytest.raises(ValueError, match="fails on a batch of this loader's images, shape \\(2, 1, 32, 32\\)"):
        scripted_loader(ap.TeacherGate(ap.driver.build_model("cnn", 0.25, in_channels=3), threshold=0.5))


def test_feedback_on_a_sharded_loader_needs_torch_distributed():
    with pytest.raises(ValueError, match="needs torch.distributed"):
        scripted_loader(gate(feedback=ap.CapFeedback()), rank=0, world_size=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_loader_and_teacher():
    cpu = run(scripted_loader(gate(action="fallback")))
    cuda = run(scripted_loader(gate(action="fallback"), device="cuda"))
    for a, b in zip(cpu, cuda):
        assert torch.equal(a.gated, b.gated.cpu()) and torch.equal(a.images, b.images.cpu())


# ------------------------------------------------------------------ distributed
def _distributed_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    loader = scripted_loader(gate(action="fallback", feedback=ap.CapFeedback(down=2, up=0.5)), batch_size=32)
    seen = [np.stack([b.index.numpy(), b.gated.numpy()], 1) for b in loader]
    np.save(os.path.join(out_dir, f"seen{rank}.npy"), np.concatenate(seen))
    np.save(os.path.join(out_dir, f"caps{rank}.npy"), loader.caps)
    dist.barrier()
    dist.destroy_process_group()


def test_caps_stay_identical_across_two_gloo_ranks(tmp_path):
    init = tempfile.mktemp(dir=tmp_path)
    mp.spawn(_distributed_worker, args=(2, init, str(tmp_path)), nprocs=2)
    caps = [np.load(tmp_path / f"caps{r}.npy") for r in range(2)]
    seen = [np.load(tmp_path / f"seen{r}.npy") for r in range(2)]
    assert np.array_equal(caps[0], caps[1])
    assert len(seen[0]) == len(seen[1]) == N // 2 and not set(seen[0][:, 0]) & set(seen[1][:, 0])
    start = scripted_data()[2]
    want = start.copy()
    for rows in seen:  # each rank's updates, applied on both
        idx, hard = rows[:, 0], rows[:, 1].astype(bool)
        want[idx] = np.where(hard, np.maximum(0, start[idx] - 2), np.minimum(30, start[idx] + 0.5))
        assert hard.any() and (~hard).any()
    assert np.array_equal(caps[0], want)
