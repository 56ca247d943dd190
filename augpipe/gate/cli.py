"""`augpipe score | report` and `augpipe show --caps`: argument parsing over the gate.

    augpipe score fashion-mnist --teacher runs/big --out fmnist-difficulty.npz --magnitudes 0,5,9,14,20,30
    augpipe report fashion-mnist:test --teacher runs/big --out report/ --samples 1000 --drop 0.05
    augpipe show --caps fmnist-difficulty.npz --caps-threshold 0.5 --out hardest.png
"""
from __future__ import annotations

import argparse

from .metrics import METRICS


def _magnitudes(text: str) -> list[float]:
    from ..core.ops import check_magnitude

    try:
        return [check_magnitude(float(v)) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _teacher_args(p) -> None:
    p.add_argument("source", help="fashion-mnist[:test], an image folder, or a .beton")
    p.add_argument("--teacher", required=True,
                   help="an `augpipe train` run directory or its model.pt, a pickled model, a TorchScript file, "
                        "or a state_dict (with --teacher-arch)")
    p.add_argument("--teacher-arch", default=None, metavar="MODEL[:WIDTH]",
                   help="constructor for a state_dict checkpoint: one of the driver's models, e.g. cnn:1.5, resnet20")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a teacher file holding pickled Python objects (a whole nn.Module): unpickling "
                        "runs code from the file, so only for files you trust")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1, help="Fashion-MNIST channels (default 1)")
    p.add_argument("--size", type=int, default=None, help="image side (default: native for arrays, 224 for folders)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    p.add_argument("--amp", action="store_true", help="autocast the teacher")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def add_parsers(sub, show=None) -> None:
    """Register `score` and `report` on the `augpipe` command's subparsers, and
    the --caps options on its `show` parser."""
    s = sub.add_parser("score", help="difficulty table: a teacher's score of every sample at every magnitude")
    _teacher_args(s)
    s.add_argument("--out", required=True, help="the table (.npz)")
    s.add_argument("--policy", default="randaugment", help="randaugment | trivialaugment | autoaugment")
    s.add_argument("--num-ops", type=int, default=2, help="RandAugment ops per sample")
    s.add_argument("--magnitudes", type=_magnitudes, default=list(range(0, 31, 3)), help="comma-separated, 0..30")
    s.add_argument("--views", type=int, default=2, help="random views per sample and magnitude")
    s.add_argument("--metric", choices=METRICS, default="p_true")
    s.set_defaults(func=cmd_score)

    r = sub.add_parser("report", help="per-op difficulty: teacher accuracy under each op at each magnitude")
    _teacher_args(r)
    r.add_argument("--out", required=True, help="directory for report.json, heatmap.png (and limits.json)")
    r.add_argument("--samples", type=int, default=1000, help="seeded subset of the source")
    r.add_argument("--magnitudes", type=_magnitudes, default=list(range(31)), help="comma-separated (default 0..30)")
    bound = r.add_mutually_exclusive_group()
    bound.add_argument("--min-accuracy", type=float, default=None, help="write limits.json: accuracy >= this")
    bound.add_argument("--drop", type=float, default=None, help="write limits.json: accuracy drop <= this")
    r.set_defaults(func=cmd_report)
    if show is not None:
        _show_args(show)


def _show_args(s) -> None:
    """`augpipe show --caps TABLE.npz [--caps-threshold T] [--caps-rows N]`."""
    s.add_argument("--caps", default=None, metavar="TABLE.npz",
                   help="draw the samples with the lowest caps of this difficulty table next to their views")
    s.add_argument("--caps-threshold", type=float, default=0.5, help="score threshold of the caps (with --caps)")
    s.add_argument("--caps-rows", type=int, default=8, help="samples drawn (with --caps)")


def open_source(text, channels: int = 1):
    """A CLI source: Fashion-MNIST with `channels`, or anything augpipe opens."""
    from ..sources import FashionMNIST
    from ..sources import open_source as core_open

    if isinstance(text, str) and (text == "fashion-mnist" or text.startswith("fashion-mnist:")):
        return FashionMNIST(text.partition(":")[2] or "train", channels=channels)
    return core_open(text)


def teacher_from_args(path: str, arch: str | None, source, trust: bool = False):
    """The teacher module named on the command line."""
    from .teacher import load_teacher

    constructor = None
    if arch is not None:
        from ..models import build_model

        name, _, width = arch.partition(":")
        try:
            width = float(width) if width else 1.0
        except ValueError:
            raise ValueError(f"--teacher-arch takes MODEL[:WIDTH], e.g. cnn:1.5, got {arch!r}") from None
        channels, classes = source.channels, len(source.classes)
        constructor = lambda: build_model(name, width, channels, classes)  # noqa: E731
    return load_teacher(path, constructor, trust=trust)


def _main(fn, a) -> None:
    import sys

    try:
        fn(a)
    except (ValueError, FileNotFoundError, TypeError) as err:
        sys.exit(f"augpipe {a.command}: error: {err}")


def cmd_score(a) -> None:
    _main(_score, a)


def cmd_report(a) -> None:
    _main(_report, a)


def _score(a) -> None:
    from ..core.policy import RandAugment, get_policy
    from .table import DifficultyTable

    source = open_source(a.source, a.channels)
    teacher = teacher_from_args(a.teacher, a.teacher_arch, source, a.trust_checkpoint)
    policy = RandAugment(a.num_ops) if a.policy.lower() == "randaugment" else get_policy(a.policy)
    table = DifficultyTable.build(teacher, source, policy=policy, magnitudes=a.magnitudes, views=a.views,
                                  batch_size=a.batch_size, device=a.device, metric=a.metric, seed=a.seed, size=a.size,
                                  amp=a.amp, progress=a.progress)
    table.metadata.update(source=a.source, channels=a.channels)
    table.save(a.out)
    m = table.metadata
    print(f"wrote {a.out}: {len(table)} samples x {len(table.magnitudes)} magnitudes x {a.views} views in "
          f"{m['seconds']:.1f} s ({m['samples_x_magnitudes_per_s']:,.0f} samples x magnitudes / s)")
    means = table.mean_scores.mean(0)
    print("mean " + a.metric + ": " + ", ".join(f"M={g:g}: {s:.3f}" for g, s in zip(table.magnitudes, means)))


def _report(a) -> None:
    from .report import limits_from_report, op_report, write_report

    source = open_source(a.source, a.channels)
    teacher = teacher_from_args(a.teacher, a.teacher_arch, source, a.trust_checkpoint)
    report = op_report(teacher, source, samples=a.samples, magnitudes=a.magnitudes, batch_size=a.batch_size,
                       seed=a.seed, device=a.device, size=a.size, amp=a.amp, progress=a.progress)
    report.update(source=a.source, channels=a.channels)
    limits = None
    if a.min_accuracy is not None or a.drop is not None:
        limits = limits_from_report(report, min_accuracy=a.min_accuracy, drop=a.drop)
    paths = write_report(report, a.out, limits)
    print(f"teacher accuracy without ops: {report['baseline_accuracy']:.4f} on {report['samples']} samples")
    top = report["magnitudes"][-1]
    for name, row in report["ops"].items():
        extra = f"  limit {limits[name]:g}" if limits else ""
        print(f"  {name:<13} accuracy at M={top:g}: {row['accuracy'][-1]:.4f}{extra}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def show(a) -> None:
    """`augpipe show --caps`: called by augpipe/cli.py's show command."""
    from .show import show_caps
    from .table import DifficultyTable

    try:
        table = DifficultyTable.load(a.caps)
        meta = table.metadata
        text = a.source if a.source is not None else meta.get("source")
        source = open_source(text, meta.get("channels", 1)) if text is not None else None
        path = show_caps(table, source, a.out, threshold=a.caps_threshold, rows=a.caps_rows)
    except (ValueError, FileNotFoundError) as err:
        import sys

        sys.exit(f"augpipe show: error: {err}")
    print(f"wrote {path}")
