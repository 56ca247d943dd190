"""One prepared check for a GPU machine: CUDA parity tests + throughput tables.

    .venv/bin/python benchmarks/gpu_check.py [--quick] [--images N] [--out DIR]

On a machine with a CUDA device it
  1. runs pytest on the conformance, loader, DALI (and FFCV, if present) tests;
     their CUDA variants run there instead of skipping (log: pytest.txt,
     junit XML: pytest.xml);
  2. runs `augpipe bench --backend all` (or every backend whose library is
     installed) at 32px and 224px (tables: bench-32px.md/.json,
     bench-224px.md/.json), plus a device-side DALI/torch table at 224px
     (`gpu-rows.md`: augpipe-torch and augpipe-dali with device="cuda",
     DALI stock with mixed decoding and GPU rand_augment);
  3. writes everything under benchmarks/results/gpu/ and a summary.json.
Without CUDA it prints why and exits 0 having done nothing. Sized for a few
minutes: --quick (default on) times 4,096 images at 224px and 20,480 at 32px,
one repeat each.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run(cmd: list[str], log: Path, timeout: int) -> dict:
    t0 = time.time()
    print("+", " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    log.write_text(out)
    print(out[-3000:], flush=True)
    return {"cmd": cmd, "rc": rc, "seconds": round(time.time() - t0, 1), "log": str(log.relative_to(ROOT))}


def gpu_rows(images: int, batch: int, out: Path) -> str:
    """Throughput with device="cuda" (output on the GPU, ops on the GPU)."""
    import numpy as np
    import torch

    import augpipe as ap
    from augpipe.tools.bench import data as benchdata

    root = benchdata.imagenet_like()
    rows = {}

    def timed(name, loader):
        seen, start, k = 0, None, 0
        while seen < images:
            for x, _ in loader:
                k += 1
                if k == 3:
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                elif k > 3:
                    seen += x.shape[0]
                if seen >= images:
                    break
        torch.cuda.synchronize()
        rows[name] = seen / (time.perf_counter() - start)
        print(f"{name}: {rows[name]:,.0f} img/s", flush=True)

    caps = np.random.default_rng(0).uniform(0, 9, 2000).astype(np.float32)
    for backend in ("torch", "dali"):
        if backend == "dali" and importlib.util.find_spec("nvidia.dali") is None:
            continue
        loader = ap.Loader(root, batch_size=batch, policy=ap.RandAugment(2), magnitude=9, backend=backend,
                           num_workers=min(8, os.cpu_count() or 2), device="cuda", seed=0)
        loader.set_caps(caps[:len(loader.dataset)])
        timed(f"augpipe-{backend} RRC+flip+RandAugment, cuda, caps", loader)
    if importlib.util.find_spec("nvidia.dali") is not None:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.auto_aug import rand_augment

        @pipeline_def(batch_size=batch, num_threads=min(8, os.cpu_count() or 2), device_id=0,
                      enable_conditionals=True, seed=0)
        def stock():
            jpegs, labels = fn.readers.file(file_root=str(root), random_shuffle=True, name="reader")
            images = fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)
            images = fn.random_resized_crop(images, size=(224, 224), antialias=True)
            images = fn.flip(images, horizontal=fn.random.coin_flip())
            images = rand_augment.rand_augment(images, n=2, m=9, shape=(224, 224), fill_value=0)
            return images, labels

        from nvidia.dali.plugin.pytorch import feed_ndarray

        pipe = stock()
        pipe.build()

        class Stock:
            def __iter__(self):
                for _ in range(pipe.epoch_size("reader") // batch):
                    t = pipe.run()[0].as_tensor()
                    x = torch.empty(t.shape(), dtype=torch.uint8, device="cuda")
                    feed_ndarray(t, x, cuda_stream=torch.cuda.current_stream())
                    yield x, None

        timed("DALI stock RRC+flip+rand_augment, mixed decode, GPU ops", Stock())
    table = "\n".join(["| pipeline (device=cuda, 224px) | images/s |", "|---|---:|"]
                      + [f"| {k} | {v:,.0f} |" for k, v in rows.items()])
    (out / "gpu-rows.md").write_text(table + "\n")
    return table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu"))
    p.add_argument("--images", type=int, default=None, help="images timed per bench row")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-bench", action="store_true")
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing to do.")
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"device": torch.cuda.get_device_name(0), "steps": []}
    print(f"gpu_check on {summary['device']}", flush=True)
    if not a.skip_tests:
        tests = [f"tests/{t}" for t in ("test_conformance.py", "test_loader.py", "test_dali.py", "test_ffcv.py")
                 if (ROOT / "tests" / t).exists()]
        summary["steps"].append(_run([PY, "-m", "pytest", "-q", "-rs", f"--junitxml={out / 'pytest.xml'}", *tests],
                                     out / "pytest.txt", timeout=240))
    if not a.skip_bench:
        have = [b for b, mod in (("ffcv", "ffcv"), ("dali", "nvidia.dali")) if importlib.util.find_spec(mod)]
        backend = "all" if len(have) == 2 else (have[0] if have else "torch")
        for data, images in (("32px", a.images or 20480), ("224px", a.images or 4096)):
            summary["steps"].append(_run(
                [PY, "-m", "augpipe.cli", "bench", "--backend", backend, "--data", data, "--images", str(images),
                 "--repeats", "1", "--workers", str(min(8, os.cpu_count() or 2)), "--out", str(out / f"bench-{data}")],
                out / f"bench-{data}.log", timeout=300))
        try:
            summary["gpu_rows"] = gpu_rows(a.images or 4096, 256, out)
        except Exception as err:  # report, do not hide the rest
            summary["gpu_rows_error"] = repr(err)
            print("gpu rows failed:", repr(err), flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [s for s in summary["steps"] if s["rc"] != 0]
    print(f"gpu_check: {len(summary['steps']) - len(failed)}/{len(summary['steps'])} steps ok; results in {out}")
    return 1 if failed or "gpu_rows_error" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
