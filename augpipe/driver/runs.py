"""What `augpipe train` and `augpipe prune` do, on a config dict.

A run directory holds run.json (config and command), checkpoints/, model.pt
(the final weights, with the model's arch and the run's config), report.json
and plot.png. The same command on the same directory resumes.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..models import MODEL_FILE, build_model, load_run_model, model_arch
from . import checkpoint, distributed
from .auxheads import AuxHeads
from .capacity import CapacitySchedule
from .data import eval_loader, make_data, make_loaders
from .losses import KD
from .plots import plot_prune, plot_train
from .prune import count_macs, count_params, get_method, prune
from .recipes import iterative_prune
from .train import evaluate, train


def _setup(cfg: dict, command: str):
    """Join torchrun's group, claim the run directory, seed, build the data."""
    distributed.init_from_env()
    split_seed = cfg["seed"] if cfg.get("split_seed") is None else cfg["split_seed"]
    data = make_data(cfg["data"], cfg["train_size"], cfg["val_size"], split_seed, cfg["channels"],
                     cfg.get("test_size"))
    out = Path(cfg["out"])
    if checkpoint.prepare_run_dir(out, cfg, command) and distributed.is_main():
        print(f"{out}/ holds this run: resuming from its last checkpoint")
    device = torch.device(cfg["device"]) if cfg.get("device") not in (None, "auto") else distributed.default_device()
    loaders = make_loaders(data, batch_size=cfg["batch_size"], magnitude=cfg.get("magnitude_start", 0.0),
                           seed=cfg["seed"], workers=cfg["workers"], policy=_policy(cfg), size=cfg["size"],
                           device=device, repeats=cfg.get("repeats") or 1,
                           **dict(zip(("mix", "erase"), mixing_from(cfg))))
    return out, data, device, loaders


def mixing_from(cfg: dict):
    """(Mixing or None, RandomErasing or None) from the train options."""
    from ..core.mixing import Mixing, RandomErasing

    mixup, cutmix = cfg.get("mixup") or 0.0, cfg.get("cutmix") or 0.0
    mixing = None
    if mixup or cutmix:
        mixing = Mixing(mixup, cutmix, 1.0 if cfg.get("mixup_prob") is None else cfg["mixup_prob"],
                        0.5 if cfg.get("mixup_switch_prob") is None else cfg["mixup_switch_prob"],
                        label_smoothing=cfg.get("smoothing") or 0.0, follow=cfg.get("mix_follow"))
    erasing = None
    if cfg.get("reprob"):
        erasing = RandomErasing(cfg["reprob"], value=cfg.get("remode") or "const", count=cfg.get("recount") or 1,
                                follow=cfg.get("erase_follow"))
    return mixing, erasing


def _recorder(cfg: dict, out: Path):
    """on_batch that keeps (epoch, index) of every training sample this rank saw."""
    if not cfg.get("record_indices"):
        return None, lambda: None
    seen: list[np.ndarray] = []

    def on_batch(batch):
        seen.append(np.stack([np.full(len(batch.index), batch.epoch), batch.index.cpu().numpy()], 1))

    def flush():
        if seen:
            np.save(out / f"indices-rank{distributed.rank()}.npy", np.concatenate(seen))
    return on_batch, flush


def _finish(out: Path, report: dict) -> None:
    if distributed.is_main():
        checkpoint.write_json(report, out / "report.json")
    distributed.barrier()


def run_train(cfg: dict, command: str) -> dict:
    """`augpipe train`: returns the report (also written to out/report.json)."""
    start = time.perf_counter()
    cfg = {**cfg, "magnitude_start": cfg["magnitude"]}
    out, data, device, (loader, val, test) = _setup(cfg, command)
    torch.manual_seed(cfg["seed"])
    model = build_model(cfg["model"], cfg["width"], data.in_channels, data.num_classes)
    net = AuxHeads(model, weight=cfg["aux_heads"], example_input=torch.zeros(2, *_input_shape(loader))) \
        if cfg.get("aux_heads") else model
    trust = cfg.get("trust_checkpoint", False)
    teacher = load_run_model(cfg["teacher"], trust=trust)[0] if cfg.get("teacher") else None
    kd = KD(cfg["kd_temperature"], cfg["kd_weight"], cfg["ce_weight"]) if teacher is not None else None
    on_batch, flush = _recorder(cfg, out)
    gate, gating = _gating(cfg, loader, model)
    history = train(net, loader, cfg["epochs"], optimizer=cfg["optimizer"], lr=cfg["lr"], momentum=cfg["momentum"],
                    weight_decay=cfg["weight_decay"], lr_schedule=cfg["lr_schedule"], magnitude=cfg["magnitude"],
                    teacher=teacher, kd=kd, gate=gate, val_loader=val, checkpoint_dir=out / "checkpoints",
                    device=device, amp=cfg["amp"], progress=cfg["progress"], on_batch=on_batch,
                    eval_every=cfg.get("eval_every") or 1, clock=start,
                    label_smoothing=0.0 if loader.mix is not None else cfg.get("smoothing") or 0.0)
    flush()
    if gate is not None:
        _gated_per_epoch(gate, history, gating)
    if isinstance(net, AuxHeads):
        model = net.deploy()
    example = torch.zeros(1, *_input_shape(loader), device=device)
    report = {"command": command, "config": cfg, "model": model_arch(model), "params": count_params(model),
              "macs": count_macs(model, example)[0], "world_size": distributed.world_size(),
              "history": history.epochs, "cpu": cpu_model(), "environment": environment(), **gating}
    report.update(_evaluations(model, val, test, data, cfg, device))
    if history.epochs:
        tail = history.epochs[-min(3, len(history.epochs)):]
        report["images_per_s"] = float(np.mean([e["images_per_s"] for e in tail])) * distributed.world_size()
        report["data_wait"] = float(np.mean([e["data_wait"] for e in tail]))
    checkpoint.save_model(model, out / MODEL_FILE, config=cfg)
    report["wall_s"] = time.perf_counter() - start  # this process
    report["wall_s_total"] = history.wall_s_before + report["wall_s"]  # summed over every resumed process
    if distributed.is_main() and cfg.get("plot", True):
        acc = report.get("test", {}).get("accuracy")
        plot_train(history.epochs, out / "plot.png", f"{model_arch(model)}, M={cfg['magnitude']:g}"
                   + (f", test acc {acc:.4f}" if acc is not None else ""))
    _finish(out, report)
    return report


def _evaluations(model, val, test, data, cfg: dict, device) -> dict:
    """The final model's val and test results, and the memorisation diagnostic: accuracy on the training
    images without augmentation (train_clean) and its gap to val."""
    out = {name: evaluate(model, ld, device) for name, ld in (("val", val), ("test", test)) if ld is not None}
    out["train_clean"] = evaluate(model, eval_loader(data.train, workers=cfg["workers"], size=cfg["size"],
                                                      device=device), device)
    if "val" in out:
        out["train_val_gap"] = out["train_clean"]["accuracy"] - out["val"]["accuracy"]
    return out


def _policy(cfg: dict):
    """The training policy: cfg["policy"], limited per op by a `augpipe report` (--limits)."""
    if not cfg.get("limits"):
        return cfg["policy"]
    import json

    from ..core.policy import get_policy
    from ..gate import limits_from_report

    path = Path(cfg["limits"])
    if not path.is_file():
        raise FileNotFoundError(f"--limits {path} does not exist (expected report.json from augpipe report)")
    limits = limits_from_report(json.loads(path.read_text()), cfg.get("limits_min_accuracy"), cfg.get("limits_drop"))
    return get_policy(cfg["policy"]).with_limits(limits)


def _gating(cfg: dict, loader, model=None):
    """(TeacherGate or None, report entries) for --caps, --limits and --gate."""
    info = {}
    if cfg.get("limits"):
        info["limits"] = dict(loader.policy.limits)
    if cfg.get("caps"):
        from ..gate import DifficultyTable

        if cfg.get("caps_threshold") is None:
            raise ValueError("--caps needs --caps-threshold T (the score a sample must keep up to its cap)")
        caps = DifficultyTable.load(cfg["caps"]).apply(loader, cfg["caps_threshold"], match="samples")
        info["caps"] = {"table": cfg["caps"], "threshold": cfg["caps_threshold"], "mean": float(caps.mean()),
                        "min": float(caps.min())}
    if cfg.get("gate_random") is not None:
        return _random_gate(cfg, info)
    options = [k for k in ("gate_teacher", "gate_teacher_arch", "gate_metric", "gate_threshold", "gate_keep_ratio",
                           "gate_fallback", "gate_feedback") if cfg.get(k) is not None]
    if not cfg.get("gate"):
        if options:
            raise ValueError(f"--{options[0].replace('_', '-')} needs --gate fallback|drop|reweight")
        return None, info
    if not cfg.get("gate_teacher"):
        raise ValueError("--gate needs --gate-teacher RUN_OR_CHECKPOINT")
    from ..gate import CapFeedback, TeacherGate
    from ..gate.cli import teacher_from_args

    if cfg["gate_teacher"] == "self":  # the student judges itself (EntAugment-style), as it trains
        teacher = model
    else:
        teacher = teacher_from_args(cfg["gate_teacher"], cfg.get("gate_teacher_arch"), loader.dataset,
                                    cfg.get("trust_checkpoint", False))
    feedback = CapFeedback(*cfg["gate_feedback"]) if cfg.get("gate_feedback") else None
    fallback = cfg.get("gate_fallback")
    gate = TeacherGate(teacher, metric=cfg.get("gate_metric") or "p_true", threshold=cfg.get("gate_threshold"),
                       keep_ratio=cfg.get("gate_keep_ratio"), action=cfg["gate"],
                       fallback=0.0 if fallback is None else fallback, feedback=feedback, device=loader.device)
    info["gate"] = {"gate": repr(gate), "teacher": "self" if cfg["gate_teacher"] == "self"
                    else gate.teacher.fingerprint()}
    return gate, info


def _random_gate(cfg: dict, info: dict):
    """--gate ACTION --gate-random RATE|REPORT.json: the random-choice control of a teacher gate."""
    import json

    from ..gate import RandomGate
    from ..gate.control import rates_from_history

    if not cfg.get("gate"):
        raise ValueError("--gate-random needs --gate fallback|drop|reweight (the action applied to the chosen samples)")
    if cfg.get("gate_teacher"):
        raise ValueError("--gate-random chooses samples at random: it takes no --gate-teacher")
    spec = cfg["gate_random"]
    try:
        rate = float(spec)
    except ValueError:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"--gate-random {spec}: neither a rate in [0, 1] nor a report.json") from None
        rate = rates_from_history(json.loads(path.read_text())["history"])
    fallback = cfg.get("gate_fallback")
    gate = RandomGate(rate, action=cfg["gate"], fallback=0.0 if fallback is None else fallback, seed=cfg["seed"])
    info["gate"] = {"gate": repr(gate), "rates_from": spec}
    return gate, info


def _gated_per_epoch(gate, history, gating: dict) -> None:
    """Samples gated per epoch (all ranks) into the history and the report."""
    totals: dict[int, list[int]] = {}
    for per_epoch in distributed.all_gather_object(gate.per_epoch):
        for epoch, (seen, gated) in per_epoch.items():
            row = totals.setdefault(epoch, [0, 0])
            row[0], row[1] = row[0] + seen, row[1] + gated
    for record in history.epochs:
        record["scored"], record["gated"] = totals.get(record["epoch"], [0, 0])
    gating["gate"].update(samples=sum(r[0] for r in totals.values()), gated=sum(r[1] for r in totals.values()))


def run_prune(cfg: dict, command: str) -> dict:
    """`augpipe prune`: iterative pruning of a trained run's model."""
    start = time.perf_counter()
    model, source_cfg, source = load_run_model(cfg["from"], cfg.get("model"), cfg.get("width"),
                                               trust=cfg.get("trust_checkpoint", False))
    cfg["model"], cfg["width"] = cfg.get("model") or source_cfg["model"], cfg.get("width") or source_cfg["width"]
    for key in ("data", "train_size", "val_size", "test_size", "split_seed", "seed", "batch_size", "channels", "size",
                "policy"):
        if cfg.get(key) is None:
            cfg[key] = source_cfg.get(key)
    magnitude_arg = cfg["magnitude"]
    dense_magnitude = float(source_cfg.get("magnitude_start", source_cfg["magnitude"]))  # a pruned source: its dense M
    cfg["magnitude_start"] = dense_magnitude if magnitude_arg == "capacity" else float(magnitude_arg)
    out, data, device, (loader, val, test) = _setup(cfg, command)
    model.to(device)
    if magnitude_arg == "capacity":
        schedule = CapacitySchedule.load(cfg["schedule"]) if cfg.get("schedule") else \
            CapacitySchedule.linear(dense_magnitude, 0.0, dense_params=count_params(model, nonzero=True))
    else:
        schedule = float(magnitude_arg)
    on_batch, flush = _recorder(cfg, out)
    rounds = iterative_prune(model, loader, target_sparsity=cfg["target"], rounds=cfg["rounds"],
                             finetune_epochs=cfg["finetune_epochs"], method=cfg["method"], magnitude=schedule,
                             val_loader=val if val is not None else test, checkpoint_dir=out / "checkpoints",
                             steps=cfg["steps"], progress=cfg["progress"], lr=cfg["lr"], optimizer=cfg["optimizer"],
                             lr_schedule=cfg["lr_schedule"],
                             device=device, on_batch=on_batch, clock=start)
    finished = time.perf_counter()
    flush()
    if cfg.get("permanent") and not get_method(cfg["method"]).structured:
        prune(model, rounds[-1]["sparsity"], permanent=True)
    report = {"command": command, "config": cfg, "from": source, "model": model_arch(model),
              "params": count_params(model, nonzero=True),
              "schedule": schedule.to_dict() if isinstance(schedule, CapacitySchedule) else schedule,
              "eval_set": "val" if val is not None else "test", "rounds": rounds,
              "world_size": distributed.world_size(), "cpu": cpu_model(), "environment": environment()}
    report.update(_evaluations(model, val, test, data, cfg, device))
    checkpoint.save_model(model, out / MODEL_FILE, config=cfg)
    end = time.perf_counter()
    report["wall_s"] = end - start  # this process
    report["wall_s_total"] = rounds[-1].get("wall_s_total", 0.0) + end - finished  # summed over every resumed process
    if distributed.is_main():
        plot_prune(rounds, out / "plot.png", f"{model_arch(model)}, {cfg['method']}, magnitude {magnitude_arg}")
    _finish(out, report)
    return report


def cpu_model() -> str:
    """The CPU's model name (training kernels round differently across CPU types)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# the instruction sets whose presence changes which kernels torch, oneDNN and numba pick (and so the rounding)
_ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
              "amx_tile", "amx_bf16")


def environment() -> dict:
    """What a bit-identical rerun needs beside the command: the CPU beyond its model name (a VM may report
    only "AMD EPYC" for several generations), the ISA torch dispatches to, and the numeric libraries'
    versions (numpy and numba are not pinned)."""
    import platform

    import numba

    fields, flags = {}, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("vendor_id", "cpu family", "model", "stepping") and key not in fields:
                fields[key] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": cpu_model(), "cpu_id": " ".join(f"{k} {v}" for k, v in fields.items()),
            "cpu_flags": [f for f in _ISA_FLAGS if f in flags],
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "numba": numba.__version__}


def _input_shape(loader) -> tuple:
    return tuple(next(iter(loader))[0].shape[1:])
