"""Compiled once per install: a second process builds a folder Loader from
numba's on-disk cache, compiling nothing, and the first one says it compiles."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CODE = """
import sys
import augpipe as ap
from augpipe.engine.fused import render_jpeg_batch
loader = ap.Loader(sys.argv[1], batch_size=8, magnitude=9, num_workers=2, size=64)
batch = next(iter(loader))
stats = render_jpeg_batch.stats
print("HITS", sum(stats.cache_hits.values()), "MISSES", sum(stats.cache_misses.values()))
"""


def _run(folder, cache: Path):
    # compiled in this process (the foreground path); test_firstuse covers the background compile's cache
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "AUGPIPE_FIRST_USE": "wait"}
    done = subprocess.run([sys.executable, "-c", CODE, str(folder)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("HITS")).split()
    return int(line[1]), int(line[3]), done.stderr


def _files(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_second_process_compiles_nothing(photo_folder, tmp_path):
    cache = tmp_path / "numba"
    hits, misses, err = _run(photo_folder, cache)
    assert misses >= 1 and "augpipe: compiling the image-folder kernels once" in err
    before = _files(cache)
    assert any("render_jpeg_batch" in f for f in before)
    hits, misses, err = _run(photo_folder, cache)
    assert hits >= 1 and misses == 0, (hits, misses)
    assert _files(cache) == before  # nothing new written, nothing rewritten
    assert "compiling" not in err


MIX_CODE = """
import numpy as np
import augpipe as ap
from augpipe.kernels.mixing import normalize_mix
from augpipe.core.mixing import plan_mixing
arrays = (np.random.default_rng(0).integers(0, 256, (32, 3, 16, 16), dtype=np.uint8), np.arange(32) % 4)
loader = ap.Loader(arrays, batch_size=8, num_workers=0, output="float", mix=ap.CutMix(1.0) | ap.MixUp(0.8),
                   erase=ap.RandomErasing(0.5))
batch = next(iter(loader))
misses = sum(normalize_mix.stats.cache_misses.values()) + sum(plan_mixing.stats.cache_misses.values())
print("HITS", sum(normalize_mix.stats.cache_hits.values()), "MISSES", misses)
"""


@pytest.mark.slow
def test_the_mixing_kernels_are_compiled_once_too(tmp_path):
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}

    def once():
        done = subprocess.run([sys.executable, "-c", MIX_CODE], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("HITS")).split()
        return int(line[1]), int(line[3]), done.stderr

    hits, misses, err = once()
    assert misses >= 1 and "compiling the mixing and erasing kernels once" in err
    hits, misses, err = once()
    assert hits >= 1 and misses == 0 and "compiling" not in err, (hits, misses, err[-500:])
