"""The online gate: a teacher scores every augmented batch, the engine responds per sample.

    gate = ap.TeacherGate(teacher, metric="p_true", keep_ratio=0.75, action="fallback",
                          feedback=ap.CapFeedback(down=2, up=0.5))
    loader = ap.Loader(source, policy=ap.RandAugment(2), magnitude=14, gate=gate)
    for batch in loader:
        loss = (batch.weight * per_sample_loss).sum() / len(batch.weight)

Where it runs: `Loader.__iter__` calls the gate on each finished batch, in
order, in the caller's thread, while the loader's workers prefetch the next
batches; with num_workers >= 1 a gated epoch costs about max(loader, teacher)
instead of their sum. Results never depend on worker counts or timing.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..core.checks import check_finite
from ..core.ops import MAX_MAGNITUDE, check_magnitude
from ..engine.mixing import soft_targets
from .metrics import LOWEST, REGISTRY, check_metric, score
from .teacher import Teacher

ACTIONS = ("fallback", "drop", "reweight")


@dataclass(frozen=True)
class CapFeedback:
    """How scored samples move their per-sample caps (`loader.caps`).

    After a batch is scored, for each sample i with used magnitude m_i:
        hard: cap_i <- max(floor, min(cap_i, m_i) - down)
        easy: cap_i <- min(30, cap_i + up)
    so a sample the teacher finds too hard is planned weaker from its next
    visit on, and one it finds easy slowly regains strength.

    Args:
        down: step down for hard samples, >= 0. Default 2.
        up: step up for easy samples, >= 0. Default 0.5.
        floor: lowest cap, in [0, 30]. Default 0.
    """

    down: float = 2.0
    up: float = 0.5
    floor: float = 0.0

    def __post_init__(self):
        for name in ("down", "up"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_MAGNITUDE:
                raise ValueError(f"CapFeedback {name} must be a number in [0, 30], got {value!r}")
        check_magnitude(self.floor, name="CapFeedback floor")

    def update(self, caps: np.ndarray, used: np.ndarray, hard: np.ndarray) -> np.ndarray:
        """New float32 caps of a batch's samples (old caps, used magnitudes, hard mask)."""
        lowered = np.maximum(self.floor, np.minimum(caps, used) - self.down)
        raised = np.minimum(MAX_MAGNITUDE, caps + self.up)
        return np.where(hard, lowered, raised).astype(np.float32)


def check_fallback(fallback):
    """A fallback magnitude: a number in [0, 30], or "half" (of the magnitude used)."""
    if fallback == "half":
        return fallback
    if isinstance(fallback, str):
        raise ValueError(f"fallback must be a magnitude in [0, 30] or 'half', got {fallback!r}")
    return check_magnitude(fallback, name="fallback")


class TeacherGate:
    """Score each augmented sample with a teacher; fall back, drop or re-weight the hard ones.

    Scores (`augpipe.gate.metrics`): HIGHER = EASIER for every metric, so
    "hard = score < threshold" always holds. "p_true": the teacher's
    probability of the label; "margin": p_true minus the largest other
    probability; "entropy": certainty 1 - H(p)/log C; "kl": exp(-KL(teacher on
    the clean view (rendered at magnitude 0: crop, flip and magnitude-free ops
    such as Equalize remain) || teacher on the augmented view)), one extra
    forward per batch.

    Hard samples: score < `threshold`, or with `keep_ratio` the
    floor((1 - keep_ratio) * N) lowest scores of each batch (ties broken by
    position, so the choice is deterministic).

    Actions:
        "fallback": the hard samples are re-rendered by `loader.render` with
            their own crop, flip and ops at magnitude min(fallback, used)
            (`fallback` a float in [0, 30]) or used / 2 ("half"), and swapped
            in place: batch size unchanged; their `magnitude` and `mags` are
            the new ones, `difficulty` keeps the score of the view that was
            replaced (the weaker view is not re-scored).
        "drop": the hard samples are removed (the batch is shorter, every
            field consistent; a batch may come out empty).
        "reweight": all samples kept; `weight` = 1 for easy samples and
            clip((s - s_min) / (t - s_min), 0, 1) for hard ones, with s the
            score, s_min the metric's lowest score (0; -1 for "margin") and t
            the threshold (with keep_ratio: the lowest kept score of the batch),
            i.e. score / threshold for p_true, entropy and kl.

    Every batch it returns carries `difficulty` (float32 scores), `gated`
    (bool, the hard samples; all False after "drop") and `weight` (float32,
    ones unless re-weighting), on the loader's device. The input batch is not
    modified.

    Feedback (`feedback=CapFeedback(...)`): after scoring, hard samples' caps
    are lowered and easy ones' raised (see CapFeedback), written to the
    loader's shared caps, so the planner uses them from the next visit of
    each sample (a sample appears once per epoch: its next epoch). A cap change
    reaches plans `loader.lag` batches later; the torch and FFCV backends
    start each epoch afresh, but DALI's pipeline runs on across epoch ends, so
    there a sample among an epoch's last `lag` batches that comes back within
    the next epoch's first `lag` batches is planned with its previous cap
    (deterministic all the same). Caps are part of `loader.state_dict()`.

    Distributed (torch.distributed initialised, loader.world_size > 1): each
    rank gates its own shard. A sample is planned on whichever rank's shard
    holds it in an epoch, and shards change every epoch, so every rank keeps
    every cap: each batch's (indices, new caps) are all-gathered and every
    rank applies all of them in rank order (identical caps everywhere; the
    loader yields equal batch counts per rank, so the per-batch collective
    cannot deadlock unless a rank abandons its epoch early).

    Args:
        teacher: an nn.Module or callable, float batch -> logits (N, classes);
            a tuple's first element or a dict's `output_key` entry is used.
        metric: "p_true" (default), "margin", "entropy" or "kl".
        threshold, keep_ratio: exactly one: a score threshold, or the share
            of each batch to keep, in (0, 1].
        action: "fallback" (default), "drop" or "reweight".
        fallback: magnitude for "fallback": a float in [0, 30] (default 0.0)
            or "half".
        feedback: a CapFeedback, or None (caps untouched).
        mean, std: the teacher's input normalisation (default: the loader's).
        device: where the teacher runs (default: its parameters' device).
        amp: autocast the teacher's forward.
        output_key: key of the logits in a dict output (default "logits").

    A gate serves one loader at a time: attaching it (`loader.gate = gate`)
    adopts that loader's image format and checks the teacher's classes.
    """

    def __init__(self, teacher, metric: str = "p_true", threshold: float | None = None,
                 keep_ratio: float | None = None, action: str = "fallback", fallback=0.0,
                 feedback: CapFeedback | None = None, mean=None, std=None, device=None, amp: bool = False,
                 output_key: str = "logits"):
        self.metric = check_metric(metric)
        if (threshold is None) == (keep_ratio is None):
            raise ValueError("give exactly one of threshold= (a score below which a sample is hard) and "
                             f"keep_ratio= (the share of each batch to keep); got threshold={threshold!r}, "
                             f"keep_ratio={keep_ratio!r}")
        if threshold is not None:
            check_finite("threshold", threshold)
        if keep_ratio is not None and (isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float))
                                       or not 0 < keep_ratio <= 1):
            raise ValueError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.keep_ratio = None if keep_ratio is None else float(keep_ratio)
        self._init_actions(action, fallback, feedback)
        self.teacher = Teacher(teacher, mean=mean, std=std, device=device, amp=amp, output_key=output_key)

    def _init_actions(self, action: str, fallback, feedback) -> None:
        """What every gate has, whatever scores it (RandomGate calls this too): the action, its checks, counts."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
        fallback = check_fallback(fallback)
        if feedback is not None and not isinstance(feedback, CapFeedback):
            raise TypeError(f"feedback must be a CapFeedback or None, got {type(feedback).__name__}")
        self.action, self.fallback, self.feedback = action, fallback, feedback
        self.batches = self.samples = self.gated = 0
        self.per_epoch: dict[int, list[int]] = {}  # epoch -> [samples scored, samples gated] on this rank

    # ---------------------------------------------------------- attaching
    def bind(self, loader) -> None:
        """Called by `loader.gate = gate`: checks that fail now, not mid-epoch.

        Raises:
            ValueError: the teacher's classes differ from the dataset's, or
                feedback on a sharded loader without torch.distributed.
        """
        self.teacher.bind(loader)
        if self.feedback is not None and loader.world_size > 1:
            dist = torch.distributed
            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() != loader.world_size:
                raise ValueError(f"feedback on a loader sharded over {loader.world_size} ranks needs torch.distributed "
                                 "initialised with that world size, to keep every rank's caps identical")

    # ---------------------------------------------------------- gating
    def __call__(self, batch, loader):
        """Gate one batch of `loader` (see the class docstring)."""
        n = batch.size
        scores = self.score(batch, loader) if n else np.zeros(0, np.float32)
        hard, t = self._hard(scores)
        if self.feedback is not None:
            self._feed_back(loader, batch, hard)
        weight = np.ones(n, np.float32)
        if self.action == "reweight" and hard.any():
            low = LOWEST[self.metric]
            weight[hard] = np.clip((scores[hard] - low) / max(t - low, 1e-12), 0.0, 1.0)
        device = batch.labels.device
        out = dataclasses.replace(batch, difficulty=torch.from_numpy(scores).to(device),
                                  gated=torch.from_numpy(hard).to(device), weight=torch.from_numpy(weight).to(device))
        if self.action == "fallback" and hard.any():
            out = self._fall_back(out, loader, hard)
        elif self.action == "drop":
            out = out.subset(torch.from_numpy(~hard))
            out.gated = torch.zeros(out.size, dtype=torch.bool, device=device)
        gated = int(hard.sum())
        self.batches, self.samples, self.gated = self.batches + 1, self.samples + n, self.gated + gated
        row = self.per_epoch.setdefault(int(batch.epoch), [0, 0])
        row[0], row[1] = row[0] + n, row[1] + gated
        return out

    def score(self, batch, loader) -> np.ndarray:
        """float32 (N,) teacher scores of a batch (higher = easier)."""
        logits = self.teacher.logits(batch.images)
        clean = None
        if REGISTRY[self.metric].needs_clean:
            clean = self.teacher.logits(loader.render(batch.index, 0.0, epoch=batch.epoch, mix=False,
                                                      view=batch.view).images)
        s = score(self.metric, logits, batch.labels, clean)
        if batch.lam is not None and bool((batch.lam < 1).any()):
            # a mixed sample is judged against its soft target: λ·score(own label) + (1-λ)·score(partner's),
            # for p_true the teacher's probability mass on the two labels weighted by λ
            partner = torch.as_tensor(loader.dataset.labels[batch.mix_index.cpu().numpy()], device=s.device)
            lam = batch.lam.to(s.device, s.dtype)
            s = lam * s + (1 - lam) * score(self.metric, logits, partner, clean)
        s = s.cpu().numpy().astype(np.float32)
        if not np.isfinite(s).all():
            bad = batch.index.cpu().numpy()[~np.isfinite(s)][:5].tolist()
            raise FloatingPointError(f"the teacher's {self.metric} is not finite for samples {bad} (NaN or inf "
                                     "logits); check the teacher and its input normalisation (mean/std)")
        return s

    def _hard(self, scores: np.ndarray) -> tuple[np.ndarray, float]:
        """(hard mask, threshold used)."""
        if self.threshold is not None:
            return scores < self.threshold, self.threshold
        n = len(scores)
        k = math.floor((1.0 - self.keep_ratio) * n + 1e-9)
        order = np.argsort(scores, kind="stable")
        hard = np.zeros(n, dtype=bool)
        hard[order[:k]] = True
        return hard, float(scores[order[k]]) if k < n else 0.0

    def _fall_back(self, batch, loader, hard: np.ndarray):
        rows = np.flatnonzero(hard)
        used = batch.magnitude.cpu().numpy()[rows].astype(np.float64)
        weaker = used / 2 if self.fallback == "half" else np.minimum(used, self.fallback)
        # the fallback view is unmixed and unerased: those are the batch-level strength a hard sample sheds too
        view = loader.render(batch.index.cpu().numpy()[rows], magnitude=weaker, epoch=batch.epoch, mix=False,
                             view=None if batch.view is None else batch.view.cpu().numpy()[rows])
        at = torch.from_numpy(rows)

        def swap(field, new):
            out = field.clone()
            out[at.to(out.device)] = new.to(out.device, out.dtype)
            return out

        fields = {"images": swap(batch.images, view.images), "magnitude": swap(batch.magnitude, view.magnitude),
                  "mags": swap(batch.mags, view.mags)}
        if batch.lam is not None:
            own = batch.labels[at.to(batch.labels.device)]
            fields.update(lam=swap(batch.lam, torch.ones(len(rows))), mix_index=swap(batch.mix_index, view.index),
                          mix_box=swap(batch.mix_box, torch.zeros(len(rows), 4)),
                          targets=swap(batch.targets, soft_targets(own, own, torch.ones(len(rows)),
                                                                   batch.targets.shape[1], loader.mix.label_smoothing)))
        if batch.erased is not None:
            fields["erased"] = swap(batch.erased, torch.zeros((len(rows),) + tuple(batch.erased.shape[1:])))
        return dataclasses.replace(batch, **fields)

    def _feed_back(self, loader, batch, hard: np.ndarray) -> None:
        idx = batch.index.cpu().numpy().astype(np.int64)
        new = self.feedback.update(loader.caps[idx], batch.magnitude.cpu().numpy(), hard)
        if loader.world_size > 1:
            idx, new = _all_gather_updates(idx, new)
        loader.set_caps(new, indices=idx)

    # ---------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Counters (caps live in the loader's state)."""
        return {"batches": self.batches, "samples": self.samples, "gated": self.gated,
                "per_epoch": [[e, s, g] for e, (s, g) in sorted(self.per_epoch.items())]}

    def load_state_dict(self, state: dict) -> None:
        self.batches, self.samples, self.gated = int(state["batches"]), int(state["samples"]), int(state["gated"])
        self.per_epoch = {int(e): [int(s), int(g)] for e, s, g in state["per_epoch"]}

    def __repr__(self) -> str:
        which = f"threshold={self.threshold:g}" if self.threshold is not None else f"keep_ratio={self.keep_ratio:g}"
        return (f"TeacherGate({type(self.teacher.model).__name__}, metric={self.metric!r}, {which}, "
                f"action={self.action!r}, fallback={self.fallback!r}, feedback={self.feedback})")


def _all_gather_updates(idx: np.ndarray, caps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (indices, caps), concatenated in rank order, on every rank."""
    dist = torch.distributed
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    size = torch.tensor([len(idx)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    mine = torch.full((2, longest), -1.0, dtype=torch.float64)  # float64 holds indices < 2**53 exactly
    mine[0, :len(idx)] = torch.from_numpy(idx.astype(np.float64))
    mine[1, :len(idx)] = torch.from_numpy(caps.astype(np.float64))
    mine = mine.to(device)
    parts = [torch.empty_like(mine) for _ in sizes]
    dist.all_gather(parts, mine)
    rows = torch.cat([p[:, :int(s.item())].cpu() for p, s in zip(parts, sizes)], dim=1).numpy()
    return rows[0].astype(np.int64), rows[1].astype(np.float32)
