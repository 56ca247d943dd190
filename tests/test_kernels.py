"""numba kernels (augpipe.kernels.ops / .params) against the torch executor.

The reference is `augpipe.backends.torch_ops.apply_ops` (bit-exact with
torchvision, see test_conformance.py) on NCHW tensors; the kernels run on the
same images as NHWC numpy arrays. One batch per (op, space) holds three real
photos at 32x32 and 37x29, RGB and grayscale, at every integer magnitude 0..30
(negated too for signed ops) plus random fractional magnitudes.

Measured agreement (CPU, torch 2.14.1, numba 0.68.1, AVX-512 host): every op,
geometric ones included, agrees bit for bit with the torch executor: 0
differing values in all batches below, in the mixed K=2 plans, and on 224x224
photos; so every comparison is exact equality. The sampling grid itself
(`affine_grid`) equals torch's `_affine_grid` bit for bit, and the float32
affine matrices equal torch_ops._inverse_affine's.

The one inexact piece is `op_param` for ShearX/ShearY: NumPy's float64 arctan
(SVML, AVX-512) and libm's atan differ by 1-2 ulp on ~0.4-0.7% of arguments
(neither is always correctly rounded), so op_param may differ from op_params
by <= 2 ulp of float64 there; the float32 matrix built from it was identical
in all ~44k magnitudes tried.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from augpipe.kernels import ops as K
from augpipe.kernels import params as P
from torchvision.transforms.v2 import functional as F

from augpipe.backends import torch_ops
from augpipe.backends.torch_ops import apply_ops
from augpipe.ops import NUM_BINS, OP_IDS, OPS, STANDARD, WIDE, op_params, param_tables

ROOT = Path(__file__).resolve().parents[1]
SPACES = {"standard": STANDARD, "wide": WIDE}
SIZES = [(32, 32), (37, 29)]  # (H, W): square (rot90 short cuts) and not
VARIANTS = [(size, channels) for size in SIZES for channels in (3, 1)]
SHEARS = (OP_IDS["ShearX"], OP_IDS["ShearY"])
GEOMETRIC = tuple(OP_IDS[n] for n in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"))
HISTOGRAM = tuple(OP_IDS[n] for n in ("Contrast", "AutoContrast", "Equalize"))


# ------------------------------------------------------------------ data

@functools.cache
def photos(size: tuple[int, int], channels: int) -> torch.Tensor:
    """astronaut, coffee, chelsea resized with torchvision: uint8 (3, C, H, W)."""
    images = []
    for load in (skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea):
        image = F.resize(torch.from_numpy(np.ascontiguousarray(load())).permute(2, 0, 1), list(size), antialias=True)
        images.append(F.rgb_to_grayscale(image) if channels == 1 else image)
    return torch.stack(images)


@functools.cache
def edge_images(size: tuple[int, int], channels: int) -> torch.Tensor:
    """Corner cases for the histogram ops: flat, a flat channel, Equalize's
    step == 0, a dominant maximum, a two-level checkerboard."""
    h, w = size
    photo = photos(size, 3)[0]
    nearly_flat = torch.full((3, h, w), 100, dtype=torch.uint8)
    nearly_flat[:, :1, :3] = 200
    clipped = photo.clone()
    clipped[clipped >= 128] = 255
    flat_red = photo.clone()
    flat_red[0] = 77
    checker = ((torch.arange(h)[:, None] + torch.arange(w)) % 2 * 255).to(torch.uint8).expand(3, h, w)
    images = [torch.zeros(3, h, w, dtype=torch.uint8), torch.full((3, h, w), 255, dtype=torch.uint8),
              nearly_flat, clipped, flat_red, checker.contiguous()]
    return torch.stack([F.rgb_to_grayscale(x) if channels == 1 else x for x in images])


def nhwc(images: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())


def magnitudes(op_id: int, seed: int) -> np.ndarray:
    """Every integer magnitude (negated too for signed ops) + 6 random fractional ones."""
    signed = OPS[op_id].signed
    mags = list(range(NUM_BINS)) + ([-m for m in range(1, NUM_BINS)] if signed else [])
    frac = np.random.default_rng(seed).uniform(0, 30, 6)
    if signed:
        frac[::2] *= -1
    return np.array(mags + list(frac), dtype=np.float32)


def run_kernels(images: torch.Tensor, ops: np.ndarray, mags: np.ndarray, space: int) -> np.ndarray:
    """apply_ops_batch on an NHWC copy of `images`; returns NHWC."""
    batch = nhwc(images).copy()
    h, w = batch.shape[1:3]
    K.apply_ops_batch(batch, ops.astype(np.int8), mags.astype(np.float32), param_tables(space, h, w),
                      np.empty_like(batch))
    return batch


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape, what
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert not diff.any(), f"{what}: {int((diff > 0).sum())}/{diff.size} values differ, max |diff| {int(diff.max())}"


@pytest.fixture(scope="module", autouse=True)
def compiled():
    """Compile (or load from numba's cache) once for the module."""
    images = nhwc(photos((32, 32), 3))[:1].copy()
    K.apply_ops_batch(images, np.zeros((1, 1), np.int8), np.zeros((1, 1), np.float32),
                      param_tables(STANDARD, 32, 32), np.empty_like(images))


# ------------------------------------------------------------------ op ids, params

def test_op_id_constants_match_op_table():
    assert P.OP_IDS == OP_IDS
    assert P.NUM_OPS == len(OPS)
    for name, op_id in OP_IDS.items():
        const = "".join("_" + ch if ch.isupper() and i else ch for i, ch in enumerate(name)).upper()
        assert getattr(P, const) == op_id, name
        assert bool(P.is_signed(op_id)) == OPS[op_id].signed, name


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_op_param_matches_op_params(space):
    rng = np.random.default_rng(space)
    mags = np.concatenate([np.arange(31.0), -np.arange(31.0), rng.uniform(-30, 30, 300),
                           rng.uniform(-30, 30, 100).astype(np.float32), [0.5, 29.5, 30.0, -30.0, 1e-9]])
    for h, w in SIZES + [(224, 224)]:
        tables = param_tables(space, h, w)
        for op_id in range(len(OPS)):
            want = op_params(op_id, mags, space, h, w)
            got = np.array([P.op_param(op_id, m, tables) for m in mags])
            if op_id in SHEARS:
                # libm atan vs NumPy's SVML arctan: <= 2 ulp (measured), on ~0.5% of magnitudes
                ulps = np.abs(got.view(np.int64) - want.view(np.int64))
                assert ulps.max() <= 2 and (ulps > 0).mean() < 0.03, (OPS[op_id].name, ulps.max())
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{OPS[op_id].name} {space} {h}x{w}")


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_affine_matrix_and_grid_match_torch(space):
    rng = np.random.default_rng(10 + space)
    mags = np.concatenate([np.arange(31.0), -np.arange(1.0, 31.0), rng.uniform(-30, 30, 40)])
    for h, w in SIZES + [(224, 224)]:
        tables = param_tables(space, h, w)
        for op_id in GEOMETRIC:
            name = OPS[op_id].name
            for m in mags:
                p = P.op_param(op_id, m, tables)
                args = {"angle": -p if name == "Rotate" else 0.0, "tx": p if name == "TranslateX" else 0.0,
                        "ty": p if name == "TranslateY" else 0.0, "shear_x": p if name == "ShearX" else 0.0,
                        "shear_y": p if name == "ShearY" else 0.0}
                cx, cy = (-w * 0.5, -h * 0.5) if name.startswith("Shear") else (0.0, 0.0)
                want = torch_ops._inverse_affine(*(np.array([v]) for v in args.values()), np.array([cx]),
                                                 np.array([cy])).astype(np.float32)[0]
                theta = K.inverse_affine(*args.values(), cx, cy)
                np.testing.assert_array_equal(theta, want, err_msg=f"{name} {m} {h}x{w}")
                if h != 224 and m == int(m) or rng.random() < 0.05:
                    grid = torch_ops._affine_grid(torch.from_numpy(theta).view(1, 2, 3), h, w)[0].numpy()
                    np.testing.assert_array_equal(K.affine_grid(theta, h, w), grid, err_msg=f"{name} {m} grid")


# ------------------------------------------------------------------ every op

@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
@pytest.mark.parametrize("op_id", range(len(OPS)), ids=[op.name for op in OPS])
def test_every_op_matches_torch_executor(op_id, space):
    # Measured: 0 differing values for every op, geometric ones included.
    mags = magnitudes(op_id, seed=100 * op_id + space)
    for size, channels in VARIANTS:
        sets = [photos(size, channels)] + ([edge_images(size, channels)] if op_id in HISTOGRAM else [])
        images = torch.cat(sets).repeat_interleave(len(mags), 0)
        ops = np.full((len(images), 1), op_id, np.int8)
        col = np.tile(mags, len(images) // len(mags))[:, None]
        want = nhwc(apply_ops(images, ops, col, space))
        assert_same(run_kernels(images, ops, col, space), want, f"{OPS[op_id].name} space={space} {size} C={channels}")


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_mixed_plans_match_torch_executor(space):
    # RandAugment/TrivialAugment-like K=2 plans, with empty slots and Invert.
    rng = np.random.default_rng(7 + space)
    for size, channels in VARIANTS:
        base = photos(size, channels)
        n = 300
        images = base[rng.integers(0, len(base), n)]
        ops = rng.integers(-1, len(OPS), (n, 2)).astype(np.int8)
        mags = rng.uniform(0, 30, (n, 2))
        mags[:, 0] = np.where(rng.random(n) < 0.3, np.round(mags[:, 0]), mags[:, 0])
        mags = (mags * rng.choice([-1.0, 1.0], (n, 2))).astype(np.float32)
        want = nhwc(apply_ops(images, ops, mags, space))
        assert_same(run_kernels(images, ops, mags, space), want, f"mixed space={space} {size} C={channels}")


def test_large_images_match_torch_executor():
    # 224x224 (rot90 short cuts, contrast mean near 50k pixels), RandAugment-like plans at magnitude 9.
    rng = np.random.default_rng(3)
    images = photos((224, 224), 3)[rng.integers(0, 3, 24)]
    ops = np.stack([np.arange(24) % 14 + 1, rng.integers(0, 15, 24)], 1).astype(np.int8)
    mags = (np.full((24, 2), 9.0) * rng.choice([-1.0, 1.0], (24, 2))).astype(np.float32)
    ops[0] = [OP_IDS["Rotate"], -1]
    mags[0] = [20.0, 0.0]  # 90 degrees in the wide space
    for space in SPACES.values():
        assert_same(run_kernels(images, ops, mags, space), nhwc(apply_ops(images, ops, mags, space)), f"224 {space}")


def test_batch_edge_cases():
    images = nhwc(photos((37, 29), 3)).copy()
    original = images.copy()
    tables = param_tables(WIDE, 37, 29)
    for ops in (np.zeros((3, 0), np.int8), np.full((3, 2), -1, np.int8), np.zeros((3, 3), np.int8)):
        K.apply_ops_batch(images, ops, np.zeros(ops.shape, np.float32), tables, np.empty_like(images))
        assert_same(images, original, f"no-op plan {ops.shape}")
    empty = images[:0].copy()
    K.apply_ops_batch(empty, np.zeros((0, 2), np.int8), np.zeros((0, 2), np.float32), tables, empty.copy())
    # odd number of real ops ends in scratch and is copied back; even ends in place
    for k in (1, 2, 3):
        ops = np.full((3, k), OP_IDS["Invert"], np.int8)
        got = images.copy()
        K.apply_ops_batch(got, ops, np.zeros((3, k), np.float32), tables, np.empty_like(got))
        assert_same(got, original if k % 2 == 0 else 255 - original, f"{k} inverts")
    with pytest.raises(ValueError):
        K.apply_ops_batch(images, np.full((3, 1), len(OPS), np.int8), np.zeros((3, 1), np.float32), tables,
                          np.empty_like(images))
    with pytest.raises(ValueError):
        K.apply_ops_batch(images, np.zeros((2, 1), np.int8), np.zeros((2, 1), np.float32), tables,
                          np.empty_like(images))


KERNELS = [K.op_identity, K.op_shear_x, K.op_shear_y, K.op_translate_x, K.op_translate_y, K.op_rotate,
           K.op_brightness, K.op_color, K.op_contrast, K.op_sharpness, K.op_posterize, K.op_solarize,
           K.op_autocontrast, K.op_equalize, K.op_invert]


def test_single_image_kernels_leave_src_alone():
    params = [0.0, 17.0, -17.0, 5.0, -5.0, 33.0, 1.5, 1.7, 0.4, 1.9, 3.0, 100.0, 0.0, 0.0, 0.0]
    for channels in (3, 1):
        src = nhwc(photos((37, 29), channels))[1].copy()
        keep = src.copy()
        for op_id, (kernel, p) in enumerate(zip(KERNELS, params)):
            dst = np.full_like(src, 7)
            kernel(src, p, dst)
            assert_same(src, keep, f"{OPS[op_id].name} wrote to src")
            again = np.zeros_like(src)
            K.apply_op(op_id, src, p, again)
            assert_same(again, dst, f"apply_op({OPS[op_id].name})")
            want = nhwc(torch_ops.apply_op(torch.from_numpy(src).permute(2, 0, 1)[None], op_id, [p]))[0]
            assert_same(dst, want, f"{OPS[op_id].name} single image")


# ------------------------------------------------------------------ without the JIT

_NOJIT_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from kernels import ops as K, params as P
assert not hasattr(K.apply_ops_batch, "py_func"), "the JIT is still on"
d = np.load(sys.argv[2])
images, scratch = d["images"].copy(), np.empty_like(d["images"])
K.apply_ops_batch(images, d["ops"], d["mags"], d["tables"], scratch)
params = np.array([P.op_param(int(o), float(m), d["tables"]) for o, m in zip(d["pops"], d["pmags"])])
np.savez(sys.argv[3], images=images, params=params)
"""


def test_pure_python_gives_identical_results(tmp_path):
    # A subset (Brightness, Posterize, Equalize, ShearX, Rotate, Contrast, Sharpness, op_param)
    # under NUMBA_DISABLE_JIT=1: the kernels are plain Python + NumPy scalars.
    rng = np.random.default_rng(5)
    chosen = [OP_IDS[n] for n in ("Brightness", "Posterize", "Equalize", "ShearX", "Rotate", "Contrast", "Sharpness")]
    images = nhwc(photos((32, 32), 3))[rng.integers(0, 3, len(chosen))]
    ops = np.array([[o, chosen[(i + 1) % len(chosen)]] for i, o in enumerate(chosen)], np.int8)
    mags = (rng.uniform(0, 30, ops.shape) * rng.choice([-1, 1], ops.shape)).astype(np.float32)
    tables = param_tables(STANDARD, 32, 32)
    pops = np.repeat(np.arange(len(OPS)), 8)
    pmags = rng.uniform(-30, 30, len(pops))
    np.savez(tmp_path / "in.npz", images=images, ops=ops, mags=mags, tables=tables, pops=pops, pmags=pmags)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", _NOJIT_SCRIPT, str(ROOT), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], env=env, check=True, timeout=120)
    out = np.load(tmp_path / "out.npz")
    jitted = images.copy()
    K.apply_ops_batch(jitted, ops, mags, tables, np.empty_like(jitted))
    assert_same(out["images"], jitted, "NUMBA_DISABLE_JIT apply_ops_batch")
    np.testing.assert_array_equal(out["params"], [P.op_param(o, m, tables) for o, m in zip(pops, pmags)])
