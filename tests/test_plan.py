"""The planner: a pure function of (seed, epoch, index, knob, cap)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import augpipe as ap
from augpipe.core.ops import OPS, SIGNED, WIDE
from augpipe.core.plan import make_plan

RA = ap.RandAugment(2).lower()


def plan(indices=np.arange(2000), seed=0, epoch=0, knob=9.0, caps=None, crop=None, policy=RA, h=28, w=28):
    return make_plan(seed, epoch, indices, h, w, knob, caps, crop or ap.RandomCrop(32, 4), policy)


def same(a, b):
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("index", "box", "flip", "ops", "mags", "magnitude"))


def test_same_inputs_same_plan_and_rows_are_independent_of_batching():
    a = plan()
    assert same(a, plan())
    perm = np.random.default_rng(3).permutation(2000)
    b = plan(indices=perm)
    inv = np.argsort(perm)
    assert same(a, b.subset(inv))
    single = plan(indices=np.array([1234]))
    assert same(single, a.subset(np.array([1234])))


@pytest.mark.parametrize("change", [{"seed": 1}, {"epoch": 1}])
def test_seed_and_epoch_change_every_decision_stream(change):
    a, b = plan(), plan(**change)
    assert (a.box != b.box).any(axis=1).mean() > 0.8
    assert (a.ops != b.ops).any(axis=1).mean() > 0.8
    assert (a.flip != b.flip).mean() > 0.3


def test_distributions_flip_ops_signs():
    p = plan(indices=np.arange(20000))
    assert abs(p.flip.mean() - 0.5) < 0.02
    counts = np.bincount(p.ops.ravel(), minlength=14)
    assert counts.shape == (14,)  # RandAugment draws only its 14 ops
    assert np.abs(counts / counts.sum() - 1 / 14).max() < 0.01
    signed = SIGNED[p.ops]
    assert abs((p.mags[signed] < 0).mean() - 0.5) < 0.02
    assert (p.mags[~signed] >= 0).all()
    assert np.allclose(np.abs(p.mags), 9.0) and np.allclose(p.magnitude, 9.0)


def test_caps_bound_the_magnitude_per_sample():
    caps = np.random.default_rng(0).uniform(0, 30, 5000).astype(np.float32)
    idx = np.random.default_rng(1).permutation(5000)[:1000]
    p = plan(indices=idx, knob=12.0, caps=caps)
    expected = np.minimum(12.0, caps[idx])
    np.testing.assert_allclose(p.magnitude, expected, rtol=1e-6)
    np.testing.assert_allclose(np.abs(p.mags), expected[:, None].repeat(2, 1), rtol=1e-6)


def test_pad_crop_offsets_cover_the_padding():
    p = plan(indices=np.arange(5000), h=32, w=32)
    assert (p.box[:, 2:] == 32).all()
    assert p.box[:, :2].min() == -4 and p.box[:, :2].max() == 4
    assert len(np.unique(p.box[:, 0])) == 9


def test_random_resized_crop_boxes_respect_scale_and_ratio():
    crop = ap.RandomResizedCrop(64, scale=(0.2, 0.9), ratio=(0.75, 1.333))
    p = plan(indices=np.arange(5000), crop=crop, h=300, w=400)
    top, left, h, w = p.box.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 300).all() and (left + w <= 400).all()
    area = h * w / (300 * 400)
    assert area.min() > 0.19 and area.max() < 0.91
    assert (w / h).min() > 0.74 and (w / h).max() < 1.34
    # fallback: a 1000x10 sliver cannot fit any in-range box in 10 tries
    sliver = plan(indices=np.arange(5), crop=ap.RandomResizedCrop(8), h=10, w=1000)
    assert (sliver.box[:, 2] == 10).all() and (sliver.box[:, 3] == 13).all()


def test_center_crop_is_deterministic_and_central():
    p = plan(indices=np.arange(10), crop=ap.CenterCrop(224), h=400, w=600)
    assert (p.box == [[25, 125, 350, 350]]).all() and not p.flip.any()


def test_trivial_augment_draws_magnitude_up_to_the_knob():
    p = plan(indices=np.arange(20000), knob=20.0, policy=ap.TrivialAugment().lower())
    assert p.ops.shape[1] == 1 and p.space == WIDE
    assert p.magnitude.min() >= 0 and p.magnitude.max() <= 20.0
    assert abs(p.magnitude.mean() - 10.0) < 0.2
    np.testing.assert_allclose(np.abs(p.mags[:, 0]), p.magnitude)


def test_auto_augment_follows_the_imagenet_subpolicies():
    from augpipe.core.policy import _IMAGENET

    pairs = {tuple(ap.OP_IDS[o] for o, _, _ in sub) for sub in _IMAGENET}
    p = plan(indices=np.arange(5000), knob=30.0, policy=ap.AutoAugment().lower())
    for ops in map(tuple, p.ops[(p.ops >= 0).all(1)]):
        assert ops in pairs
    rotate = p.ops == ap.OP_IDS["Rotate"]
    # Rotate appears with bins 8, 9 and 3 of 10: M = 30 k / 9
    np.testing.assert_allclose(np.unique(np.abs(p.mags[rotate])), [30 * k / 9 for k in (3, 8, 9)], rtol=1e-6)
    half = plan(indices=np.arange(5000), knob=15.0, policy=ap.AutoAugment().lower())
    np.testing.assert_allclose(half.mags, p.mags / 2, rtol=1e-6)


def test_identity_policy_plans_no_ops():
    p = plan(policy=ap.Identity().lower())
    assert (p.ops == -1).all()


def test_planner_runs_as_plain_python_with_the_same_result():
    code = (
        "import json, numpy as np, augpipe as ap; from augpipe.core.plan import make_plan;"
        "p = make_plan(5, 2, np.arange(50), 100, 80, 7.5, None, ap.RandomResizedCrop(32), ap.RandAugment(2).lower());"
        "print(json.dumps([p.box.tolist(), p.flip.tolist(), p.ops.tolist(), p.mags.tolist()]))"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    box, flip, ops, mags = json.loads(out.stdout)
    jit = make_plan(5, 2, np.arange(50), 100, 80, 7.5, None, ap.RandomResizedCrop(32), ap.RandAugment(2).lower())
    assert box == jit.box.tolist() and flip == jit.flip.tolist() and ops == jit.ops.tolist()
    np.testing.assert_array_equal(np.array(mags, np.float32), jit.mags)


@pytest.mark.parametrize("bad", [-1, 31, float("nan"), "high", None, True])
def test_magnitude_validation_names_the_value(bad):
    with pytest.raises(ValueError, match="magnitude"):
        ap.check_magnitude(bad)


def test_randaugment_given_torchvisions_magnitude_points_to_the_loaders_knob():
    with pytest.raises(ValueError, match=r"Loader\(\.\.\., magnitude=9\)"):
        ap.RandAugment(2, 9)
    assert ap.RandAugment(2, ("Rotate", "Color")).ops == ("Rotate", "Color")


def test_every_op_is_declared_once_with_its_table():
    assert [op.name for op in OPS[:14]] == [
        "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
        "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]
    assert len({op.name for op in OPS}) == len(OPS)
