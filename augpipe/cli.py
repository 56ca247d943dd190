"""The `augpipe` command: show, bench, demo (train, prune, sweep: augpipe/driver/cli.py; score, report:
augpipe/gate/cli.py)."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def _magnitudes(text: str) -> list[float]:
    from .core.ops import check_magnitude

    try:
        return [check_magnitude(float(v)) for v in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_show(a) -> None:
    if a.caps is not None:  # a difficulty table's hardest samples (augpipe.gate)
        from .gate.cli import show as show_caps

        return show_caps(a)
    if a.mix or a.erase is not None:
        from .core.mixing import CutMix, MixUp, RandomErasing
        from .tools.show import show_mixed

        mix = {None: None, "mixup": MixUp(0.8, follow=a.follow), "cutmix": CutMix(1.0, follow=a.follow),
               "both": CutMix(1.0, follow=a.follow) | MixUp(0.8, follow=a.follow)}[a.mix]
        erase = RandomErasing(a.erase, follow=a.follow) if a.erase is not None else None
        path = show_mixed(a.source or "fashion-mnist:test", a.policy, mix, erase, a.magnitudes, a.out, a.size, a.seed)
        return print(f"wrote {path}")
    from .tools.show import show

    path = show(a.source or "fashion-mnist:test", a.policy, a.magnitudes, a.out, a.size, a.seed)
    print(f"wrote {path}")


def cmd_bench(a) -> None:
    from .tools.bench import run as bench

    command = "augpipe " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    images = a.images or (61440 if a.data == "32px" else 4096)
    print(bench.run(images, a.workers, a.batch_size, a.magnitude, a.channels, a.repeats, a.out,
                    backend=a.backend, data=a.data, data_root=a.data_root, command=command, mix=a.mix))


def cmd_demo(a) -> None:
    """The main job on Fashion-MNIST: load, augment at several magnitudes,
    draw the grid, benchmark."""
    from .loader import Loader
    from .tools.bench import run as bench
    from .tools.show import show

    out = Path(a.out)
    print("== 1. Load Fashion-MNIST (Debian's dataset-fashion-mnist) and augment at several magnitudes")
    plain = Loader("fashion-mnist", batch_size=512, policy="identity", num_workers=0, seed=0)
    base = next(iter(plain))[0].float()
    print(f"   {len(plain.dataset):,} training images, {len(plain):,} batches of 512, "
          f"batch shape {tuple(base.shape)}, policy RandAugment(num_ops=2)")
    print(f"   {'magnitude':>9} | {'mean |change| vs crop+flip only':>31} | {'samples changed':>15} | {'batch ms':>8}")
    loader = Loader("fashion-mnist", batch_size=512, magnitude=0, num_workers=0, seed=0)
    for m in (0, 5, 9, 14, 30):
        loader.magnitude = m
        loader.set_epoch(0)
        t = time.perf_counter()
        images = next(iter(loader))[0].float()
        ms = 1000 * (time.perf_counter() - t)
        diff = (images - base).abs()
        changed = float((diff.flatten(1).amax(1) > 0).float().mean())
        print(f"   {m:>9} | {float(diff.mean()):>31.2f} | {changed:>15.0%} | {ms:>8.1f}")
    print("== 2. Grid of every op across magnitudes")
    path = show("fashion-mnist:test", "randaugment", out=str(out / "randaugment-grid.png"))
    print(f"   wrote {path}")
    print("== 3. Throughput against torchvision (same data, same workers, same run)")
    command = "augpipe demo (bench --images 20480 --repeats 1)"
    print(bench.run(images=20480, repeats=1, out=str(out / "bench"), command=command))
    print("== 4. A short real training: a small CNN at a moderate magnitude against a constant strong one")
    from .driver.demo import train_demo

    train_demo(out=out / "train")
    print(f"== done: outputs in {out}/")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="augpipe", description="Capacity-aware image augmentation at loader speed.")
    sub = p.add_subparsers(dest="command", required=True)
    from .sources.convert import (
        add_parser as add_convert_parser,  # FFCV itself is imported only when run
    )

    add_convert_parser(sub)

    s = sub.add_parser("show", help="write a PNG grid of a policy's ops across magnitudes")
    s.add_argument("--source", default=None, help="image folder, or fashion-mnist[:test] (default fashion-mnist:test; "
                                                   "with --caps: the table's source)")
    s.add_argument("--policy", default="randaugment", help="randaugment | trivialaugment | autoaugment")
    s.add_argument("--magnitudes", type=_magnitudes, default=[0, 5, 9, 14, 20, 25, 30], help="comma-separated, 0..30")
    s.add_argument("--size", type=int, default=64, help="image side in the grid (px)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--mix", choices=("mixup", "cutmix", "both"), default=None,
                   help="draw one batch mixed (MixUp 0.8 / CutMix 1.0 / either) across the magnitudes")
    s.add_argument("--erase", type=float, default=None, metavar="P", help="and RandomErasing with probability P")
    s.add_argument("--follow", choices=("prob",), default=None,
                   help="mixing/erasing probability follows M/30 (default: fixed)")
    s.add_argument("--out", default="augpipe-out/grid.png")
    s.set_defaults(func=cmd_show)

    b = sub.add_parser("bench", help="throughput table against torchvision's RandAugment (and FFCV, DALI)")
    b.add_argument("--images", type=int, default=None,
                   help="images timed per run, after warm-up (default: 61,440 at 32px, 4,096 at 224px)")
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--batch-size", type=int, default=256)
    b.add_argument("--magnitude", type=float, default=9.0)
    b.add_argument("--channels", type=int, choices=(1, 3), default=3)
    b.add_argument("--repeats", type=int, default=3, help="runs per row; the median is reported")
    b.add_argument("--backend", choices=("torch", "ffcv", "dali", "litdata", "all"), default="torch",
                   help="add this backend's rows to torchvision's and augpipe-torch's (litdata: the litdata "
                        "source, and torchvision through litdata's StreamingDataLoader)")
    b.add_argument("--data", choices=("32px", "224px"), default="32px",
                   help="32px: Fashion-MNIST 28->32 in memory; 224px: ImageNet-like JPEG folder")
    b.add_argument("--data-root", default=None, help="where the 224px JPEG set is built (default ~/.cache/augpipe)")
    b.add_argument("--mix", action="store_true",
                   help="rows with and without CutMix/MixUp + RandomErasing (float output), against torchvision v2's")
    b.add_argument("--out", default=None, help="write PATH.json and PATH.md")
    b.set_defaults(func=cmd_bench)

    from .driver.cli import (
        add_parsers as add_driver_parsers,  # torch-pruning etc. are imported only when run
    )

    add_driver_parsers(sub)
    from .gate.cli import add_parsers as add_gate_parsers

    add_gate_parsers(sub, show=s)  # score, report, and show's --caps options

    d = sub.add_parser("demo", help="the main job on Fashion-MNIST")
    d.add_argument("--out", default="augpipe-out")
    d.set_defaults(func=cmd_demo)
    from .tools.warmup import add_parser as add_warmup_parser

    add_warmup_parser(sub)

    a = p.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
