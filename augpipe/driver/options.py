"""The options of `augpipe train | prune | sweep`: parsers, validators, a run's
config dict and the command line that reproduces it. No command runs here
(cli.py runs them), so sweep.py can parse a cell's argv without importing cli."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..gate.metrics import METRICS
from ..models import MODELS
from .prune import METHODS
from .recipes import STEPS


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"sparsity must be in [0, 1), got {value:g}")
    return value


def _magnitude(text: str) -> float:
    from ..core.ops import check_magnitude

    try:
        return check_magnitude(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _prune_magnitude(text: str) -> str:
    return text if text == "capacity" else str(_magnitude(text))


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _model(text: str) -> str:
    if text not in MODELS:
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; choose one of {', '.join(MODELS)}")
    return text


def _method(text: str) -> str:
    if text not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {text!r}; choose one of {', '.join(METHODS)}")
    return text


def _data_args(p, inherit: bool, seed: bool = True) -> None:
    how = " (default: the source run's)" if inherit else ""
    p.add_argument("--data", default=None if inherit else "fashion-mnist",
                   help="fashion-mnist, an image folder (root/<class>/<image>, or root/train + root/test), or "
                        "litdata:DIR_OR_URL (with --val-size 0 it streams in litdata's order)" + how)
    p.add_argument("--train-size", type=int, default=None, help="seeded training subset (default: all)" + how)
    p.add_argument("--val-size", type=int, default=None if inherit else 5000,
                   help="validation samples held out of the training split" + (how or " (default 5000)"))
    p.add_argument("--test-size", type=int, default=None, help="seeded subset of the test split (default: all)" + how)
    p.add_argument("--channels", type=int, choices=(1, 3), default=None if inherit else 1,
                   help="Fashion-MNIST channels" + how)
    p.add_argument("--size", type=int, default=None, help="image side (default: native for arrays, 224 folders)")
    p.add_argument("--policy", default=None if inherit else "randaugment", help="augmentation policy" + how)
    p.add_argument("--batch-size", type=int, default=None if inherit else 128, help="per process" + how)
    p.add_argument("--split-seed", type=int, default=None,
                   help="seeds the train/val/test subsets alone (default: --seed); fix it to keep one split "
                        "while --seed varies the initialisation and the augmentation stream" + how)
    if seed:
        p.add_argument("--seed", type=int, default=None if inherit else 0,
                       help="seeds the model and the loader (and the split, unless --split-seed)" + how)


def _common(p) -> None:
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr-schedule", choices=("cosine", "constant", "step"), default="cosine")
    p.add_argument("--workers", type=int, default=2, help="loader workers (do not change the result)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: this rank's GPU if any, else cpu)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints (--teacher, --gate-teacher, --from) holding pickled Python objects: "
                        "unpickling runs code from the file, so only for files you trust")
    p.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate the validation split every N epochs and after the last (default 1); "
                        "does not change training")
    p.add_argument("--record-indices", action="store_true",
                   help="save (epoch, index) of every training sample to out/indices-rankR.npy")


def add_parsers(sub, commands: dict | None = None) -> None:
    """Register train, prune and sweep on the `augpipe` command's subparsers;
    `commands` maps each name to the function the parsed arguments go to."""
    commands = commands or {}
    t = sub.add_parser("train", help="train a model with a magnitude (checkpoints, resume, report, plot)",
                       description="Train; rerunning the same command resumes from the last checkpoint. "
                                   "Under torchrun it runs data-parallel (DDP).")
    t.add_argument("--model", type=_model, default="resnet20", help=f"one of {', '.join(MODELS)}")
    t.add_argument("--width", type=float, default=1.0, help="multiplier of the 16 base channels")
    _data_args(t, inherit=False)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--magnitude", type=_magnitude, default=9.0, help="RandAugment magnitude, 0..30")
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument("--aux-heads", type=float, default=0.0, metavar="WEIGHT",
                   help="train with auxiliary heads of this loss weight, removed before saving (paper B)")
    t.add_argument("--teacher", default=None, help="a finished train run (directory) to distil from")
    t.add_argument("--kd-temperature", type=float, default=4.0)
    t.add_argument("--kd-weight", type=float, default=0.9)
    t.add_argument("--ce-weight", type=float, default=0.1)
    t.add_argument("--amp", action="store_true", help="autocast (bfloat16 on CPU, float16 on CUDA)")
    t.add_argument("--no-plot", dest="plot", action="store_false", help="no plot.png (sweep cells)")
    _gate_args(t)
    _mixing_args(t)
    _common(t)
    t.add_argument("--out", required=True, help="run directory")
    t.set_defaults(func=commands.get("train"))
    _PARSERS["train"] = t

    p = sub.add_parser("prune", help="prune a trained run iteratively, fine-tuning with a capacity-aware magnitude")
    p.add_argument("--from", dest="from_", required=True, help="a finished train run directory (or its model.pt)")
    p.add_argument("--model", type=_model, default=None, help="check the source holds this model")
    p.add_argument("--width", type=float, default=None, help="check the source holds this width")
    p.add_argument("--target", type=_fraction, required=True, help="final sparsity in [0, 1)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--method", type=_method, default="l1-unstructured", help=f"one of {', '.join(METHODS)}")
    p.add_argument("--magnitude", type=_prune_magnitude, default="capacity",
                   help="fine-tuning magnitude: a number, or 'capacity': the --schedule file's CapacitySchedule, "
                        "or without one, linear in the remaining non-zero parameters from the source run's "
                        "magnitude (dense) down to 0 (nothing left)")
    p.add_argument("--schedule", default=None, help="a schedule.json from augpipe sweep")
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--steps", choices=STEPS, default="linear", help="sparsity per round: linear or geometric")
    p.add_argument("--permanent", action="store_true", help="fold the masks into the saved weights")
    _data_args(p, inherit=True)
    _common(p)
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=commands.get("prune"))
    _PARSERS["prune"] = p

    s = sub.add_parser("sweep", help="accuracy against magnitude per model width; fits a CapacitySchedule")
    s.add_argument("--model", type=_model, default="cnn")
    s.add_argument("--widths", type=_floats, default=[0.25, 0.5, 1, 2])
    s.add_argument("--magnitudes", type=_floats, default=[0, 2, 5, 9, 14, 20, 30])
    s.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per cell")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--lr", type=float, default=0.1)
    s.add_argument("--jobs", type=int, default=1, help="cells in parallel, one thread each (2 on 2 cores)")
    _data_args(s, inherit=False, seed=False)
    s.add_argument("--workers", type=int, default=0, help="loader workers per cell")
    s.add_argument("--eval-every", type=int, default=None, metavar="N",
                   help="evaluate validation every N epochs and after the last (default 1)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=commands.get("sweep"))
    _PARSERS["sweep"] = s


_PARSERS: dict[str, argparse.ArgumentParser] = {}

# `augpipe train`'s teacher-gating options (augpipe.gate). Unset ones are left
# out of the run's config, so runs without gating keep their identity (resume).
GATE_OPTIONS = ("gate", "gate_random", "gate_teacher", "gate_teacher_arch", "gate_metric", "gate_threshold", "gate_keep_ratio",
                "gate_fallback", "gate_feedback", "caps", "caps_threshold", "limits", "limits_min_accuracy",
                "limits_drop")


def _fallback(text: str):
    return text if text == "half" else _magnitude(text)


def _down_up(text: str) -> list[float]:
    values = _floats(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected DOWN,UP (two numbers), got {text!r}")
    return values


def _mixing_args(t) -> None:
    """timm's train.py names, so a timm recipe's `--mixup 0.8 --cutmix 1.0 --reprob 0.25` carries over.
    Every default is None (off), so runs started before these options existed still resume."""
    g = t.add_argument_group("mixing and erasing (augpipe.Mixing, augpipe.RandomErasing; timm's option names)")
    g.add_argument("--mixup", type=float, default=None, metavar="ALPHA", help="MixUp Beta(α, α) (timm: --mixup)")
    g.add_argument("--cutmix", type=float, default=None, metavar="ALPHA", help="CutMix Beta(α, α) (timm: --cutmix)")
    g.add_argument("--mixup-prob", type=float, default=None, help="probability a sample is mixed (default 1)")
    g.add_argument("--mixup-switch-prob", type=float, default=None,
                   help="with both, probability of CutMix over MixUp (default 0.5)")
    g.add_argument("--mix-follow", choices=("prob", "alpha"), default=None,
                   help="mixing strength follows the sample's magnitude / 30 (default: fixed, as timm)")
    g.add_argument("--smoothing", type=float, default=None, help="label smoothing (of the soft targets when mixing)")
    g.add_argument("--reprob", type=float, default=None, help="RandomErasing probability (timm: --reprob)")
    g.add_argument("--remode", choices=("const", "rand", "pixel"), default=None, help="erasing fill (default const)")
    g.add_argument("--recount", type=int, default=None, help="erased rectangles per sample (default 1)")
    g.add_argument("--erase-follow", choices=("prob",), default=None,
                   help="erasing probability follows the sample's magnitude / 30 (default: fixed)")
    g.add_argument("--repeats", type=int, default=None, metavar="K",
                   help="repeated augmentation (DeiT's --repeated-aug, timm's RepeatAugSampler): each epoch 1/K of "
                        "the samples, each on K ranks with K plans; torchrun's world size a multiple of K")


def _gate_args(t) -> None:
    g = t.add_argument_group("teacher gating (augpipe.gate)")
    g.add_argument("--gate", choices=("off", "fallback", "drop", "reweight"), default=None,
                   help="score every training batch with --gate-teacher; the hard samples fall back to a lower "
                        "magnitude, are dropped or re-weighted (default off)")
    g.add_argument("--gate-random", default=None, metavar="RATE|REPORT.json",
                   help="the control of a teacher gate: apply --gate's action to samples chosen at random, at a "
                        "rate in [0, 1] or at the per-epoch rates a gated run recorded (its report.json)")
    g.add_argument("--gate-teacher", default=None, metavar="RUN_OR_CHECKPOINT",
                   help="a finished train run (directory or model.pt), a pickled model, TorchScript, or a state_dict; "
                        "'self': the model being trained judges its own samples (e.g. --gate-metric entropy)")
    g.add_argument("--gate-teacher-arch", default=None, metavar="MODEL[:WIDTH]",
                   help="the model of a state_dict --gate-teacher, e.g. resnet20:2")
    g.add_argument("--gate-metric", choices=METRICS, default=None,
                   help="teacher score, higher = easier (default p_true)")
    g.add_argument("--gate-threshold", type=float, default=None, help="hard: score below this")
    g.add_argument("--gate-keep-ratio", type=float, default=None, help="hard: the lowest 1 - R of each batch")
    g.add_argument("--gate-fallback", type=_fallback, default=None,
                   help="magnitude for fallback, or 'half' (default 0)")
    g.add_argument("--gate-feedback", type=_down_up, default=None, metavar="DOWN,UP",
                   help="move per-sample caps: hard down by DOWN, easy up by UP")
    g.add_argument("--caps", default=None, metavar="TABLE.npz", help="per-sample caps from `augpipe score`'s table")
    g.add_argument("--caps-threshold", type=float, default=None, help="score threshold for --caps")
    g.add_argument("--limits", default=None, metavar="REPORT.json",
                   help="per-op limits from `augpipe report` (with --limits-min-accuracy or --limits-drop)")
    bound = g.add_mutually_exclusive_group()
    bound.add_argument("--limits-min-accuracy", type=float, default=None, help="limit each op where accuracy < A")
    bound.add_argument("--limits-drop", type=float, default=None, help="limit each op where accuracy drops > D")


def _command(kind: str, cfg: dict) -> str:
    """The command line as typed when run as `augpipe <kind> ...` (also via
    python -m / torchrun), else an equivalent one spelled out from `cfg`."""
    if sys.argv[1:2] == [kind]:
        return "augpipe " + shlex.join(sys.argv[1:])
    words = ["augpipe", kind]
    for action in _PARSERS[kind]._actions:
        value = cfg.get("from" if action.dest == "from_" else action.dest)
        if not action.option_strings or value is None or action.dest == "help":
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            words += [action.option_strings[0]] if value != action.default else []
        else:
            words += [action.option_strings[0], ",".join(f"{v:g}" for v in value) if isinstance(value, list)
                      else f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(words)


def _config(a, kind: str) -> dict:
    cfg = {k: v for k, v in vars(a).items() if k not in ("func", "command")}
    if "from_" in cfg:
        cfg["from"] = cfg.pop("from_")
    return {"kind": kind, **cfg}


