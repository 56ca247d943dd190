"""First use without the wait (augpipe/engine/firstuse.py): with numba's cache empty, a torch- or DALI-backend
Loader on in-memory images, a torch-backend Loader on an image folder (its fused pass), or an FFCV-backend Loader
(its compiled stage) hands out its first batch from the kernels' pure-Python, torch and torchvision twins while
a background process compiles them, and those batches equal the compiled kernels' bit for bit."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import augpipe as ap
from augpipe.core import plan as planner
from augpipe.core.dispatch import compiled
from augpipe.core.ops import OPS, STANDARD, WIDE, param_tables
from augpipe.core.policy import RandomCrop, RandomResizedCrop
from augpipe.engine.firstuse import FirstUse
from augpipe.kernels.interpreted import interpreted
from augpipe.kernels.ops import affine_thetas

POLICIES = {"randaugment": ap.RandAugment(2), "autoaugment": ap.AutoAugment(), "trivial": ap.TrivialAugment()}


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("crop", [RandomResizedCrop(224), RandomCrop(28, padding=3)], ids=["rrc", "pad"])
def test_the_planners_twin_plans_exactly_as_the_compiled_planner(policy, crop, monkeypatch):
    lowered = POLICIES[policy].lower()
    idx = np.arange(600)
    knobs = np.linspace(0, 30, 600)
    want = planner.make_plan(11, 4, idx, 300, 451, knobs, None, crop, lowered)
    compiled_calls = planner.plan_batch.stats.cache_hits, planner.plan_batch.signatures
    got = planner.make_plan(11, 4, idx, 300, 451, knobs, None, crop, lowered, interpreted=True)
    for field in ("box", "flip", "ops", "mags", "magnitude"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    assert (planner.plan_batch.stats.cache_hits, planner.plan_batch.signatures) == compiled_calls


@pytest.mark.parametrize("space", [STANDARD, WIDE])
def test_the_op_parameter_twin_gives_the_compiled_bits(space):
    gen = compiled()
    mags = np.ascontiguousarray(np.linspace(-30, 30, 241))
    twin = interpreted(gen.op_params_array)
    for op_id in range(len(OPS)):
        tables = param_tables(space, 32, 40)
        np.testing.assert_array_equal(twin(op_id, mags, tables), gen.op_params_array(op_id, mags, tables),
                                      err_msg=OPS[op_id].name)


def test_the_affine_matrix_twin_gives_the_compiled_bits():
    rng = np.random.default_rng(0)
    args = [np.ascontiguousarray(rng.uniform(-40, 40, 500)) for _ in range(7)]
    np.testing.assert_array_equal(interpreted(affine_thetas)(*args), affine_thetas(*args))


def test_interpreted_takes_only_numba_kernels():
    with pytest.raises(TypeError, match="njit"):
        interpreted(len)


CODE = """
import sys, time
import numpy as np, torch
import augpipe as ap
rng = np.random.default_rng(0)
arrays = (rng.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8), np.arange(256) % 10)
grey = (rng.integers(0, 256, (256, 1, 28, 28), dtype=np.uint8), np.arange(256) % 10)
source, size, batch = {"-": (arrays, None, 64), "grey": (grey, None, 64)}.get(sys.argv[3], (sys.argv[3], 48, 8))
loader = ap.Loader(source, batch_size=batch, magnitude=15, num_workers=2, output="float", seed=3, backend=sys.argv[2],
                   size=size)
spec = loader.context.spec
batches = list(loader)
print("TWINS", spec.compiling(), flush=True)
torch.save([(b.images, b.labels, b.index, b.magnitude, b.ops, b.mags) for b in batches], sys.argv[1])
deadline = time.time() + 900
while spec.compiling() and time.time() < deadline:
    time.sleep(0.5)
print("READY", not spec.compiling(), flush=True)
"""


def _loader_batches(env, out: Path, backend: str, folder):
    done = subprocess.run([sys.executable, "-c", CODE, str(out), backend, str(folder or "-")], capture_output=True,
                          text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr, torch.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("backend, source", [("torch", "arrays"), ("dali", "arrays"), ("torch", "folder"),
                                             ("ffcv", "grey"), ("ffcv", "folder")])
def test_a_first_use_starts_at_once_with_the_compiled_kernels_values(backend, source, tmp_path, monkeypatch,
                                                                      photo_folder):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    if backend == "ffcv":
        pytest.importorskip("ffcv")
    folder = {"folder": photo_folder, "grey": "grey"}.get(source)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "AUGPIPE_CACHE": str(tmp_path / "augpipe")}
    env.pop("AUGPIPE_FIRST_USE", None)
    out, err, first = _loader_batches(env, tmp_path / "first.pt", backend, folder)
    assert "TWINS True" in out and "READY True" in out, (out, err[-2000:])
    assert "compiling augpipe's kernels once in the background" in err
    locks = tmp_path / "augpipe" / "first-use"
    log = next(locks.glob("*.log"))
    for _ in range(600):  # the background process finishes the torch executor's kernels, then removes its lock
        if not list(locks.glob("*.pid")):
            break
        import time
        time.sleep(0.5)
    assert not list(locks.glob("*.pid")) and "kernels compiled and cached" in log.read_text()
    # the next process finds every kernel cached: no first-use line, no twins
    out, err, second = _loader_batches(env, tmp_path / "second.pt", backend, folder)
    assert "TWINS False" in out and "first use" not in err and "compiling" not in err, err[-2000:]
    # and this process, with the compiled kernels (waiting for a compile if its cache lacked them)
    monkeypatch.setenv("AUGPIPE_FIRST_USE", "wait")
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (256, 3, 32, 32), dtype=np.uint8), np.arange(256) % 10)
    grey = (rng.integers(0, 256, (256, 1, 28, 28), dtype=np.uint8), np.arange(256) % 10)
    data, size, batch = {None: (arrays, None, 64), "grey": (grey, None, 64)}.get(folder, (folder, 48, 8))
    loader = ap.Loader(data, batch_size=batch, magnitude=15, num_workers=2, output="float", seed=3, backend=backend,
                       size=size)
    want = [(b.images, b.labels, b.index, b.magnitude, b.ops, b.mags) for b in loader]
    assert len(want) == len(first) > 0
    assert loader.context.spec.first_use is None
    for a, b, c in zip(first, second, want, strict=True):  # images, labels, index, magnitude, ops, mags
        for x, y, z in zip(a, b, c, strict=True):
            assert torch.equal(x, z) and torch.equal(y, z)


def test_a_bad_first_use_setting_is_named(monkeypatch):
    monkeypatch.setenv("AUGPIPE_FIRST_USE", "later")
    with pytest.raises(ValueError, match="AUGPIPE_FIRST_USE"):
        ap.Loader((np.zeros((8, 1, 8, 8), np.uint8), np.zeros(8, np.int64)), batch_size=4, num_workers=0)


class _Switch(FirstUse):
    """A first use whose kernels count as cached once the test says so (they are: this process's cache is
    warm), so that a Loader switches from the twins to the compiled path where the test wants it."""

    now = False

    def ready(self) -> bool:
        return self.now and super().ready()


@pytest.mark.parametrize("backend", ["ffcv", "torch"])
def test_the_switch_from_twins_to_compiled_kernels_mid_epoch_keeps_every_batch(backend, monkeypatch, photo_folder):
    """FFCV's stage is built when the twins stop (the steps after the switch come from FFCV's own pipeline);
    the torch backend's folder pass takes over per batch. Either way the two epochs are the compiled ones."""
    if backend == "ffcv":
        pytest.importorskip("ffcv")
    from augpipe.engine import firstuse

    def epochs(loader, switch: bool):
        out = []
        for epoch in range(2):
            loader.set_epoch(epoch)
            for step, b in enumerate(loader):
                out.append((b.images, b.labels, b.index, b.magnitude, b.ops))
                if switch and step == 0 and epoch == 0:
                    assert loader.context.spec.compiling()  # the first batch came from the twins
                    made[0].now = True
        return out

    kw = dict(batch_size=4, magnitude=12, num_workers=2, seed=5, backend=backend, size=40, output="float")
    want = epochs(ap.Loader(photo_folder, **kw), False)
    made = []
    monkeypatch.setattr(firstuse, "begin", lambda parallel, normalize, say=None, folder_channels=0, extra="":
                        made.append(_Switch(parallel, normalize, folder_channels, extra)) or made[-1])
    loader = ap.Loader(photo_folder, **kw)
    got = epochs(loader, True)
    assert not loader.context.spec.compiling()
    if backend == "ffcv":
        assert loader._backend._ffcv is not None  # FFCV's pipeline built mid-epoch 0
    assert len(got) == len(want) == 12
    for a, b in zip(got, want):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
