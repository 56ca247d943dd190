"""Start-up time: from `python -c` to the first batch, in fresh processes, as a new user meets it.

    .venv/bin/python benchmarks/startup.py [--repeats 3] [--rows all|"NAME;NAME"] [--cold]

Each row runs in a new interpreter (`python -c ...`) and prints three times:
import, construct (Loader / DataLoader), first batch of 256 (RandAugment(2, 9),
2 workers), then the rate of the next <= 49 batches (a first use of the torch
backend on in-memory images serves them from the kernels' twins while they
compile in a background process; --cold waits for that process after each run
and reports how long it kept compiling after the timed process ended). "warm": the numba and augpipe caches as the previous run left them
(the first repeat is discarded when --cold is not given, so every timed run
finds warm caches); "--cold": every repeat with empty caches (NUMBA_CACHE_DIR
and AUGPIPE_CACHE pointed at fresh folders), i.e. first use after install.
Medians of --repeats, written to benchmarks/results/startup[-cold].md/.json
with the command and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

PRELUDE = "import time; t0 = time.perf_counter()\n"
# after the first batch, the rate of the next <= 49 (a first use of augpipe's torch backend on in-memory
# images serves them from the kernels' twins while they compile in the background: slower)
CLOCK = ("t1 = time.perf_counter()\n{construct}\nt2 = time.perf_counter()\nit = iter(loader)\nb = next(it)\n"
         "t3 = time.perf_counter()\nn = 0\nfor b in it:\n    n += 1\n    if n == 49: break\n"
         "t4 = time.perf_counter()\nprint('TIMES', t1 - t0, t2 - t1, t3 - t2, n * 256 / (t4 - t3) if n else 0)\n")

TV_AUG = ("from torchvision.transforms import v2\n"
          "aug = v2.Compose([v2.RandomCrop(28, padding=3), v2.RandomHorizontalFlip(), v2.RandAugment(2, 9)])\n")
ROWS = {
    "torchvision, Fashion-MNIST": (
        "import torch, numpy as np\nfrom torch.utils.data import DataLoader, Dataset\n" + TV_AUG +
        "from augpipe.sources import FashionMNIST\n",
        "src = FashionMNIST('train')\n"
        "class D(Dataset):\n    def __len__(self): return len(src)\n"
        "    def __getitem__(self, i): return aug(src.images[i]), int(src.labels[i])\n"
        "loader = DataLoader(D(), batch_size=256, shuffle=True, num_workers=2)"),
    "augpipe torch, Fashion-MNIST": ("import augpipe as ap\n",
                                     "loader = ap.Loader('fashion-mnist', batch_size=256, magnitude=9, num_workers=2)"),
    "augpipe dali, Fashion-MNIST": ("import augpipe as ap\n", "loader = ap.Loader('fashion-mnist', batch_size=256, "
                                    "magnitude=9, num_workers=2, backend='dali')"),
    "augpipe ffcv, Fashion-MNIST": ("import augpipe as ap\n", "loader = ap.Loader('fashion-mnist', batch_size=256, "
                                    "magnitude=9, num_workers=2, backend='ffcv')"),
    "torchvision, 2,000 JPEGs at 224 px": (
        "import torch\nfrom torch.utils.data import DataLoader\nfrom torchvision.datasets import ImageFolder\n"
        "from torchvision.transforms import v2\n",
        "aug = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(224), v2.RandomHorizontalFlip(), "
        "v2.RandAugment(2, 9)])\n"
        "loader = DataLoader(ImageFolder(FOLDER, transform=aug), batch_size=256, shuffle=True, num_workers=2)"),
    "augpipe torch, the same folder": ("import augpipe as ap\n", "loader = ap.Loader(FOLDER, batch_size=256, "
                                       "magnitude=9, num_workers=2)"),
    "augpipe ffcv, the same folder": ("import augpipe as ap\n", "loader = ap.Loader(FOLDER, batch_size=256, "
                                      "magnitude=9, num_workers=2, backend='ffcv')"),
}


def one(name: str, folder: str, env: dict) -> list[float]:
    imports, construct = ROWS[name]
    code = f"FOLDER = {folder!r}\n" + PRELUDE + imports + CLOCK.format(construct=construct)
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("TIMES")]
    if done.returncode != 0 or not line:
        raise RuntimeError(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return [float(x) for x in line[-1].split()[1:]]


def _background_compile(cache: Path, limit: float = 600.0) -> float:
    """Seconds until a first use's background compile (augpipe/engine/firstuse.py) has finished; 0 if none."""
    import time

    start = time.perf_counter()
    while list((cache / "first-use").glob("*.pid")) and time.perf_counter() - start < limit:
        time.sleep(0.5)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows", default="all")
    p.add_argument("--cold", action="store_true", help="empty numba and augpipe caches for every run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = p.parse_args()
    names = list(ROWS) if a.rows == "all" else [n.strip() for n in a.rows.split(";")]
    from augpipe.tools.bench import data as benchdata
    from augpipe.tools.bench.run import machine

    folder = str(benchdata.imagenet_like(str(benchdata.DEFAULT_ROOT)))
    results = {}
    for name in names:
        runs = []
        for r in range(a.repeats + (0 if a.cold else 1)):
            env = dict(os.environ)
            if a.cold:
                tmp = tempfile.mkdtemp(prefix="augpipe-cold-")
                env.update(NUMBA_CACHE_DIR=f"{tmp}/numba", AUGPIPE_CACHE=f"{tmp}/augpipe")
            times = one(name, folder, env)
            if a.cold:  # a background compile left running would slow the next run: wait, and say how long
                times.append(_background_compile(Path(env["AUGPIPE_CACHE"])))
            if a.cold or r > 0:
                runs.append(times)
            print(f"  {name}: import {times[0]:.1f} s, construct {times[1]:.1f} s, first batch {times[2]:.1f} s, "
                  f"then {times[3]:,.0f} img/s" + (f", background compile {times[4]:.0f} s more" if a.cold else ""),
                  flush=True)
        med = [statistics.median(t[i] for t in runs) for i in range(len(runs[0]))]
        results[name] = {"runs": runs, "median": med, "total": statistics.median(sum(t[:3]) for t in runs)}
    command = "python benchmarks/startup.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    kind = "first use after install (empty numba and augpipe caches)" if a.cold else "warm caches"
    lines = [f"# Start-up to the first batch: {kind}", "", f"`{command}` — {machine()}; fresh process per run, "
             f"batch 256, RandAugment(2, 9), 2 workers; medians of {a.repeats}, seconds.", "",
             "| source, backend | total | import | construct | first batch | then img/s (≤ 49 batches) |"
             + (" background compile after exit, s |" if a.cold else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if a.cold else "")]
    for name, r in results.items():
        i, c, f, rate = r["median"][:4]
        lines.append(f"| {name} | **{r['total']:.1f}** | {i:.1f} | {c:.1f} | {f:.1f} | {rate:,.0f} |"
                     + (f" {r['median'][4]:.0f} |" if a.cold else ""))
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "startup-cold" if a.cold else "startup"
    (a.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (a.out / f"{stem}.json").write_text(json.dumps({"command": command, "machine": machine(), "rows": results},
                                                   indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
