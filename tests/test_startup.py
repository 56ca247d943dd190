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
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
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
