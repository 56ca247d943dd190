"""Image-folder start-up at ImageNet-like file counts: the header scan and the second start.

    .venv/bin/python benchmarks/headers.py [--files 200000] [--repeats 3]

The folder (built once under ~/.cache/augpipe/folder-<files>/, 100 classes)
holds small real JPEGs: 64 x 48 crops of scikit-image's photographs, each
written many times under distinct names (the scan reads headers and file
ends, so repeated content measures the same work as distinct photographs).
In fresh processes, with the page cache warm (the folder was just listed):
"first start" deletes the folder's header cache and times FolderSource +
its header scan; "second start" times `Loader(folder)` construction with
the header cache and numba's cache warm. Medians of --repeats; results in
benchmarks/results/headers.md/.json with the command and the machine.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIRST = """
import sys, time
from augpipe.sources import FolderSource
from augpipe.sources.headers import cache_file
cache_file(sys.argv[1]).unlink(missing_ok=True)
t0 = time.perf_counter(); src = FolderSource(sys.argv[1]); t1 = time.perf_counter()
src.headers(); t2 = time.perf_counter()
print("TIMES", t1 - t0, t2 - t1, len(src))
"""
SECOND = """
import sys, time
import augpipe as ap
t0 = time.perf_counter(); loader = ap.Loader(sys.argv[1], batch_size=256, magnitude=9, num_workers=2)
t1 = time.perf_counter(); print("TIMES", t1 - t0, 0.0, len(loader.dataset))
"""


def build(root: Path, files: int) -> Path:
    done = root / ".complete"
    if done.is_file():
        return root
    from PIL import Image
    from skimage import data as samples

    blobs = []
    for photo in (samples.astronaut(), samples.chelsea(), samples.coffee()):
        for k in range(4):
            buf = io.BytesIO()
            Image.fromarray(photo[40 * k:40 * k + 48, 50 * k:50 * k + 64]).save(buf, "JPEG", quality=90)
            blobs.append(buf.getvalue())
    per = -(-files // 100)
    for c in range(100):
        d = root / f"class{c:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(min(per, files - c * per)):
            (d / f"{i:05d}.jpg").write_bytes(blobs[(c + i) % len(blobs)])
    done.write_text(f"{files}\n")
    return root


def timed(code: str, folder: Path) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("TIMES")]
    if out.returncode or not line:
        raise RuntimeError(out.stderr[-3000:])
    return [float(x) for x in line[0].split()[1:]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = p.parse_args()
    from augpipe.tools.bench.run import machine

    folder = build(Path.home() / ".cache" / "augpipe" / f"folder-{a.files}", a.files)
    timed(SECOND, folder)  # warm numba's cache and the page cache
    first = [timed(FIRST, folder) for _ in range(a.repeats)]
    second = [timed(SECOND, folder) for _ in range(a.repeats)]
    rate = statistics.median(t[2] / t[1] for t in first)
    listing = statistics.median(t[0] for t in first)
    start2 = statistics.median(t[0] for t in second)
    command = f"python benchmarks/headers.py --files {a.files} --repeats {a.repeats}"
    lines = [f"# Image-folder start-up, {a.files:,} JPEG files", "", f"`{command}` — {machine()}; fresh processes, "
             f"page cache warm; medians of {a.repeats}.", "",
             "| what | figure |", "|---|---:|",
             f"| first start: listing the folder (FolderSource) | {listing:.1f} s |",
             f"| first start: header scan (empty header cache) | **{rate:,.0f} headers/s** |",
             f"| second start: `Loader(folder)` construction | **{start2:.1f} s** |"]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "headers.md").write_text("\n".join(lines) + "\n")
    (a.out / "headers.json").write_text(json.dumps({"command": command, "machine": machine(), "first": first,
                                                    "second": second}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
