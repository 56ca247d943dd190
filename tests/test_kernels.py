"""numba kernels (augpipe.kernels.ops, dispatched by augpipe.core.opgen) against the torch executor.

The reference is `augpipe.engine.exec_torch.apply_ops` on NCHW tensors; the kernels
run on the same images as NHWC numpy arrays. One batch per (op, space) holds
three real photos at 32x32 and 37x29, RGB and grayscale, at every integer
magnitude 0..30 (negated too for signed ops) plus random fractional magnitudes.

Both executors compute op parameters with the same compiled functions
(libm, as torchvision's Python), affine matrices with the same numba
function, and the sampling grid with the same elementwise float64
arithmetic (no BLAS), so every comparison here is exact equality, on any
x86-64 CPU (this suite has run on AVX2-only AMD EPYC and AVX-512 Xeon hosts).
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
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

from augpipe.core.dispatch import compiled, op_params
from augpipe.core.ops import NUM_BINS, OP_IDS, OPS, STANDARD, WIDE, param_tables
from augpipe.engine import exec_torch
from augpipe.engine.exec_torch import apply_ops
from augpipe.kernels import ops as K
from augpipe.kernels import torch_ops as torch_kernels

G = compiled()  # the generated dispatch: op_param, apply_op, apply_ops_batch, ...

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
    G.apply_ops_batch(batch, ops.astype(np.int8), mags.astype(np.float32), param_tables(space, h, w),
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
    G.apply_ops_batch(images, np.zeros((1, 1), np.int8), np.zeros((1, 1), np.float32),
                      param_tables(STANDARD, 32, 32), np.empty_like(images))


# ------------------------------------------------------------------ op ids, params

def test_generated_dispatch_follows_the_op_table():
    assert G.NUM_OPS == len(OPS) and G.SIGNED == tuple(op.signed for op in OPS)
    for op_id, op in enumerate(OPS):
        assert bool(G.is_signed(op_id)) == op.signed, op.name
    with pytest.raises(ValueError):
        G.op_param(len(OPS), 1.0, param_tables(STANDARD, 32, 32))


def torchvision_param(name: str, level: float) -> float:
    """The parameter torchvision's RandAugment passes to v2.functional, from its Python source."""
    import math

    if name in ("ShearX", "ShearY"):
        return math.degrees(math.atan(level))
    if name in ("TranslateX", "TranslateY"):
        return float(int(level))
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 1.0 + level
    if name == "Solarize":
        return 255.0 * level
    return level


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_op_params_at_bins_are_torchvision_s(space):
    """op_params (NumPy face) and op_param (compiled) are one function, and at
    every bin give exactly torchvision's Python arithmetic on its own table."""
    from torchvision.transforms import v2

    aug = v2.RandAugment() if space == STANDARD else v2.TrivialAugmentWide()
    rng = np.random.default_rng(space)
    for h, w in SIZES + [(224, 224)]:
        tables = param_tables(space, h, w)
        for op_id, op in enumerate(OPS):
            mags = np.concatenate([np.arange(31.0), -np.arange(31.0), rng.uniform(-30, 30, 50)])
            np.testing.assert_array_equal(op_params(op_id, mags, space, h, w),
                                          [G.op_param(op_id, m, tables) for m in mags], err_msg=op.name)
            if op.name not in aug._AUGMENTATION_SPACE or op.standard is None:
                continue
            table = aug._AUGMENTATION_SPACE[op.name][0](NUM_BINS, h, w)
            for b in range(NUM_BINS):
                want = torchvision_param(op.name, float(table[b]))
                if op.name == "Posterize":
                    want = float(int(table[b]))
                assert op_params(op_id, float(b), space, h, w) == want, (op.name, b)


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
def test_affine_matrix_is_torchvision_s_and_grids_agree(space):
    """Matrices: exactly torchvision's `_get_inverse_affine_matrix` rounded to
    float32. Grids: the numba rows equal the torch executor's bit for bit
    (both compute them elementwise), and torchvision's batched-matmul grid
    within a float32 ulp of the largest term (its rounding depends on the CPU)."""
    rng = np.random.default_rng(10 + space)
    mags = np.concatenate([np.arange(31.0), -np.arange(1.0, 31.0), rng.uniform(-30, 30, 40)])
    for h, w in SIZES + [(224, 224)]:
        for op_id in GEOMETRIC:
            op = OPS[op_id]
            for m in mags:
                p = float(op_params(op_id, m, space, h, w))
                args = dict.fromkeys(("angle", "tx", "ty", "shear_x", "shear_y"), 0.0)
                args[op.affine.arg] = -p if op.affine.negate else p
                cx, cy = (-w * 0.5, -h * 0.5) if op.affine.corner else (0.0, 0.0)
                want = np.array(_get_inverse_affine_matrix([cx, cy], args["angle"], [args["tx"], args["ty"]], 1.0,
                                                           [args["shear_x"], args["shear_y"]], inverted=True),
                                dtype=np.float32)
                theta = K.inverse_affine(*args.values(), cx, cy)
                np.testing.assert_array_equal(theta, want, err_msg=f"{op.name} {m} {h}x{w}")
                if h != 224 and m == int(m) or rng.random() < 0.05:
                    grid = K.affine_grid(theta, h, w)
                    gx, gy = torch_kernels.affine_grid(torch.from_numpy(theta)[None], h, w)
                    np.testing.assert_array_equal(grid[..., 0], gx[0].numpy(), err_msg=f"{op.name} {m} grid x")
                    np.testing.assert_array_equal(grid[..., 1], gy[0].numpy(), err_msg=f"{op.name} {m} grid y")
                    tv = F._geometry._affine_grid(torch.from_numpy(theta).view(1, 2, 3), w, h, w, h)[0].numpy()
                    err = np.abs(grid.astype(np.float64) - tv).max()  # a float32 ulp of the largest term
                    assert err <= 2.5e-7, f"{op.name} {m}: {err:.3g} from torchvision's grid"


# ------------------------------------------------------------------ every op

@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
@pytest.mark.parametrize("op_id", range(len(OPS)), ids=[op.name for op in OPS])
def test_every_op_matches_torch_executor(op_id, space):
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
        G.apply_ops_batch(images, ops, np.zeros(ops.shape, np.float32), tables, np.empty_like(images))
        assert_same(images, original, f"no-op plan {ops.shape}")
    empty = images[:0].copy()
    G.apply_ops_batch(empty, np.zeros((0, 2), np.int8), np.zeros((0, 2), np.float32), tables, empty.copy())
    # odd number of real ops ends in scratch and is copied back; even ends in place
    for k in (1, 2, 3):
        ops = np.full((3, k), OP_IDS["Invert"], np.int8)
        got = images.copy()
        G.apply_ops_batch(got, ops, np.zeros((3, k), np.float32), tables, np.empty_like(got))
        assert_same(got, original if k % 2 == 0 else 255 - original, f"{k} inverts")
    with pytest.raises(ValueError):
        G.apply_ops_batch(images, np.full((3, 1), len(OPS), np.int8), np.zeros((3, 1), np.float32), tables,
                          np.empty_like(images))
    with pytest.raises(ValueError):
        G.apply_ops_batch(images, np.zeros((2, 1), np.int8), np.zeros((2, 1), np.float32), tables,
                          np.empty_like(images))


# A parameter per op (by name: a new op without one fails here, not silently skipped).
SINGLE_PARAMS = {"Identity": 0.0, "ShearX": 17.0, "ShearY": -17.0, "TranslateX": 5.0, "TranslateY": -5.0,
                 "Rotate": 33.0, "Brightness": 1.5, "Color": 1.7, "Contrast": 0.4, "Sharpness": 1.9,
                 "Posterize": 3.0, "Solarize": 100.0, "AutoContrast": 0.0, "Equalize": 0.0, "Invert": 0.0}


def test_single_image_kernels_leave_src_alone():
    assert set(SINGLE_PARAMS) == {op.name for op in OPS}
    for channels in (3, 1):
        src = nhwc(photos((37, 29), channels))[1].copy()
        keep = src.copy()
        for op_id, op in enumerate(OPS):
            p = SINGLE_PARAMS[op.name]
            dst = np.full_like(src, 7)
            op.kernel(src, p, dst)
            assert_same(src, keep, f"{op.name} wrote to src")
            again = np.zeros_like(src)
            G.apply_op(op_id, src, p, again)
            assert_same(again, dst, f"apply_op({op.name})")
            want = nhwc(exec_torch.apply_op(torch.from_numpy(src).permute(2, 0, 1)[None], op_id, [p]))[0]
            assert_same(dst, want, f"{op.name} single image")


# ------------------------------------------------------------------ without the JIT

_NOJIT_SCRIPT = """
import sys
import numpy as np
from augpipe.core.dispatch import compiled
G = compiled()
assert not hasattr(G.apply_ops_batch, "py_func"), "the JIT is still on"
d = np.load(sys.argv[2])
images, scratch = d["images"].copy(), np.empty_like(d["images"])
G.apply_ops_batch(images, d["ops"], d["mags"], d["tables"], scratch)
params = np.array([G.op_param(int(o), float(m), d["tables"]) for o, m in zip(d["pops"], d["pmags"])])
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
    G.apply_ops_batch(jitted, ops, mags, tables, np.empty_like(jitted))
    assert_same(out["images"], jitted, "NUMBA_DISABLE_JIT apply_ops_batch")
    np.testing.assert_array_equal(out["params"], [G.op_param(o, m, tables) for o, m in zip(pops, pmags)])
