"""Finding A at paper scale on a GPU machine, sized to fit its lease (PLAN.md: kept apart from the CPU runs).

    .venv/bin/python benchmarks/paper/gpu_sweep.py [--budget-s 480] [--seeds 1] [--out benchmarks/paper/results-gpu]

CIFAR-style ResNet-20 at widths 0.25, 0.5, 1 and 2 on the full Fashion-MNIST training set at 32 px (55,000
training and 5,000 validation images, split seed 0; the 10,000 test images report), arms Identity and
RandAugment M = 0, 5, 10, 15: the A sweep of PLAN.md's experiment 1 at the scale the paper trains, with as
many epochs as the lease allows.

1. Probe: one epoch of every width (a real `augpipe train` cell), which gives each width's epoch time and
   its per-run overhead (data set-up, evaluation of the validation, test and clean training images).
2. Epochs: the largest E (capped by --max-epochs) for which every planned cell (widths x arms x seeds)
   fits the budget left, from the probe's figures.
3. Cells in order of what decides A first (per seed: M=0 and M=10 of the largest and smallest widths, then
   the rest), each an `augpipe train` command run in this process (CUDA starts once); a cell that no
   longer fits the budget is not started, and the table says so.

After every run `gpu-a.md` and `gpu-a.json` are rewritten (temporary file, then rename): the probe, each
cell's command, epochs, validation / test / clean-train accuracy, train-val gap, wall time, device. Without
CUDA it says so and exits 0 having run nothing (`--device cpu` runs the same plan on the CPU, for tests).

On a lent GPU machine (its python3 holds PyTorch, numba and scipy; nothing can be fetched there; this
Fashion-MNIST path loads no C extension of augpipe, checked on the CPU; its torch, 2.11 when last listed,
is not the pinned 2.14.1, untested): here, `echo /.gpu/ >> .git/info/exclude;
mkdir -p .gpu && cp -r /usr/share/datasets/fashion-mnist .gpu/` (30 MB), then the device tool's `run` with
carry [".gpu"], timeout_s 560 and the command
`mkdir -p /usr/share/datasets && cp -r .gpu/fashion-mnist /usr/share/datasets/ && PYTHONUNBUFFERED=1
PYTHONPATH=. python3 benchmarks/paper/gpu_sweep.py --budget-s 480 --out $OUT/gpu-a`; commit what comes back
under benchmarks/paper/results-gpu/.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

T0 = time.perf_counter()  # the budget counts this process's imports too
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WIDTHS = (0.25, 0.5, 1.0, 2.0)
ARMS = {"identity": ["--policy", "identity", "--magnitude", "0"],
        **{f"m{m}": ["--policy", "randaugment", "--magnitude", str(m)] for m in (0, 5, 10, 15)}}
FIRST = ("m0", "m10")  # A1's contrast, run before the other arms


def _command(a, width: float, arm: str, seed: int, epochs: int, out: Path) -> list[str]:
    return ["train", "--model", "resnet20", "--width", f"{width:g}", "--data", "fashion-mnist", "--size", str(a.size),
            "--train-size", str(a.train_size), "--val-size", str(a.val_size), "--split-seed", "0",
            *(["--test-size", str(a.test_size)] if a.test_size else []), "--epochs", str(epochs), *ARMS[arm],
            "--seed", str(seed), "--batch-size", str(a.batch_size), "--lr", "0.1", "--workers", str(a.workers),
            "--eval-every", str(epochs), "--device", a.device, *(["--amp"] if a.amp else []),
            "--no-progress", "--no-plot", "--out", str(out)]


def _train(argv: list[str]) -> dict:
    """One `augpipe train` in this process; its report."""
    from augpipe.cli import main

    with contextlib.redirect_stdout(sys.stderr):
        main(argv)
    return json.loads((Path(argv[argv.index("--out") + 1]) / "report.json").read_text())


def _order(widths, seeds) -> list[tuple[float, str, int]]:
    ends = [widths[-1], widths[0]] if len(widths) > 1 else list(widths)
    middle = [w for w in widths if w not in ends]
    cells = []
    for s in seeds:
        cells += [(w, arm, s) for w in ends for arm in FIRST]
        cells += [(w, arm, s) for w in middle for arm in FIRST]
        cells += [(w, arm, s) for w in (*ends, *middle) for arm in ARMS if arm not in FIRST]
    return cells


def _row(width, arm, seed, report: dict) -> dict:
    acc = {k: report[k]["accuracy"] for k in ("val", "test", "train_clean") if k in report}
    return {"width": width, "arm": arm, "seed": seed, "epochs": len(report["history"]), "params": report["params"],
            **acc, "gap": report.get("train_val_gap"), "wall_s": report["wall_s_total"],
            "images_per_s": report.get("images_per_s"), "command": report["command"]}


def _write(out: Path, state: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Finding A at paper scale on a GPU (PLAN.md experiment 1, kept apart from the CPU runs)", "",
             f"`{state['command']}` — {state['device']}; {state['data']}. Partial by design: as many epochs as the "
             "budget allows, so this is not the paper's 78k-step schedule; read it beside the CPU sweep "
             "(results2/a.md), not as its replacement.", "",
             "## Probe (1 epoch per width)", "", "| width | params | epoch s | overhead s | images/s |",
             "|---:|---:|---:|---:|---:|"]
    for w, p in state["probe"].items():
        lines.append(f"| {w} | {p['params']:,} | {p['epoch_s']:.1f} | {p['overhead_s']:.1f} | "
                     f"{p['images_per_s']:,.0f} |")
    lines += ["", f"Planned: {state['epochs']} epochs per cell, {len(state['plan'])} cells, budget "
              f"{state['budget_s']:.0f} s.", "",
              "| width | arm | seed | epochs | val | test | clean | gap, points | wall s |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in state["runs"]:
        gap = "" if r["gap"] is None else f"{100 * r['gap']:+.2f}"
        lines.append(f"| {r['width']:g} | {r['arm']} | {r['seed']} | {r['epochs']} | {r.get('val', math.nan):.4f} | "
                     f"{r.get('test', math.nan):.4f} | {r.get('train_clean', math.nan):.4f} | {gap} | "
                     f"{r['wall_s']:.0f} |")
    if state["skipped"]:
        lines += ["", "Not started (the budget left would not hold them): "
                  + ", ".join(f"w{w:g}-{a}-s{s}" for w, a, s in state["skipped"])]
    lines += ["", "Commands (each reruns its cell; `--out` is where it ran):", ""]
    lines += [f"- `{r['command']}`" for r in state["runs"]]
    for name, text in (("gpu-a.md", "\n".join(lines) + "\n"), ("gpu-a.json", json.dumps(state, indent=1) + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=float, default=480.0, help="wall time for probe and cells (default 480)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per cell, 0..N-1 (default 1)")
    p.add_argument("--max-epochs", type=int, default=160)
    p.add_argument("--widths", default=",".join(f"{w:g}" for w in WIDTHS))
    p.add_argument("--train-size", type=int, default=55000)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=None, help="default: the whole test split")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--device", default="cuda", help="cuda (default); cpu runs the same plan without a GPU")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="float32 instead of float16 autocast")
    p.add_argument("--out", type=Path, default=HERE / "results-gpu")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "paper-gpu")
    a = p.parse_args()
    try:
        widths = tuple(sorted(float(w) for w in a.widths.split(",")))
    except ValueError:
        p.error(f"--widths: comma-separated numbers, got {a.widths!r}")
    if a.budget_s <= 0 or a.seeds < 1 or a.max_epochs < 1:
        p.error("--budget-s must be > 0, --seeds and --max-epochs >= 1")
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_sweep: no CUDA device here: nothing run (the GPU sweep waits for a GPU machine)")
        return 0
    if a.device == "cpu":
        a.amp = False  # bfloat16 on CPU would be another experiment
    start = T0
    device = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU ({_cpu()})"
    state = {"command": "python benchmarks/paper/gpu_sweep.py " + shlex.join(sys.argv[1:]), "device": device,
             "data": f"Fashion-MNIST at {a.size} px, {a.train_size:,} train / {a.val_size:,} val (split seed 0), "
                     f"batch {a.batch_size}, lr 0.1 cosine, {'float16 autocast' if a.amp else 'float32'}",
             "budget_s": a.budget_s, "probe": {}, "epochs": None, "plan": [], "runs": [], "skipped": []}
    for w in widths:
        r = _train(_command(a, w, "m10", 0, 1, a.runs / "probe" / f"w{w:g}"))
        epoch_s = a.train_size / r["history"][0]["images_per_s"]
        state["probe"][f"{w:g}"] = {"params": r["params"], "epoch_s": epoch_s, "images_per_s": r["images_per_s"],
                                    "overhead_s": max(0.0, r["wall_s_total"] - epoch_s)}
        _write(a.out, state)
    plan = _order(widths, range(a.seeds))
    left = a.budget_s - (time.perf_counter() - start)
    fixed = sum(state["probe"][f"{w:g}"]["overhead_s"] for w, _, _ in plan)
    per_epoch = sum(state["probe"][f"{w:g}"]["epoch_s"] for w, _, _ in plan)
    epochs = max(1, min(a.max_epochs, math.floor((left - fixed) / per_epoch)))
    state |= {"epochs": epochs, "plan": [list(c) for c in plan]}
    _write(a.out, state)
    for i, (w, arm, s) in enumerate(plan):
        probe = state["probe"][f"{w:g}"]
        if time.perf_counter() - start + probe["overhead_s"] + epochs * probe["epoch_s"] > a.budget_s:
            state["skipped"] = [list(c) for c in plan[i:]]
            break
        r = _train(_command(a, w, arm, s, epochs, a.runs / f"w{w:g}-{arm}-s{s}-e{epochs}"))
        state["runs"].append(_row(w, arm, s, r))
        _write(a.out, state)
    _write(a.out, state)
    print((a.out / "gpu-a.md").read_text())
    return 0


def _cpu() -> str:
    from augpipe.driver.runs import cpu_model

    return cpu_model()


if __name__ == "__main__":
    sys.exit(main())
