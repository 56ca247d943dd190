"""The offline form of the gate: a teacher's score of every sample at every magnitude.

    table = ap.DifficultyTable.build(teacher, "fashion-mnist", policy=ap.RandAugment(2),
                                     magnitudes=range(0, 31, 3), views=2)
    table.save("fmnist-difficulty.npz")
    ap.DifficultyTable.load("fmnist-difficulty.npz").apply(loader, threshold=0.5)   # loader.caps set

Scores are the gate's (`augpipe.gate.metrics`: higher = easier). View v of
a sample is its plan for epoch v (`loader.render(indices, magnitude=m,
epoch=v)`): the same crop, flip, ops and signs at every magnitude, so a
row of the table shows one augmentation growing stronger.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .._files import atomic_write
from ..core.checks import check_int
from ..core.ops import check_magnitude
from ..core.policy import Policy, RandAugment, get_policy
from .metrics import REGISTRY, check_metric, score
from .teacher import Teacher

FORMAT = 1


class DifficultyTable:
    """Teacher scores per sample, magnitude and view.

    Attributes:
        scores: float32 (N, M, V): sample x magnitude x view.
        magnitudes: float32 (M,), ascending.
        metadata: teacher fingerprint, policy, seed, dataset fingerprint,
            metric, magnitudes, views, augpipe version, ... (JSON-able dict).
        keys: int64 (N,) per-sample content keys (`sample_keys`), for
            `apply(..., match="samples")`.
    """

    def __init__(self, scores, magnitudes, metadata: dict, keys=None):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.magnitudes = np.asarray(magnitudes, dtype=np.float32)
        if self.scores.ndim != 3 or self.scores.shape[1] != len(self.magnitudes):
            raise ValueError(f"scores must be (samples, {len(self.magnitudes)} magnitudes, views), "
                             f"got shape {self.scores.shape}")
        self.metadata = dict(metadata)
        self.keys = None if keys is None else np.asarray(keys, dtype=np.int64)

    def __len__(self) -> int:
        return self.scores.shape[0]

    @classmethod
    def build(cls, teacher, source, policy=None, magnitudes=range(0, 31, 3), views: int = 2, batch_size: int = 256,
              device=None, metric: str = "p_true", seed: int = 0, size=None, mean=None, std=None,
              amp: bool = False, progress: bool = True) -> "DifficultyTable":
        """Score every sample of `source` at every magnitude, `views` random views each.

        Args:
            teacher: nn.Module or callable (see `augpipe.TeacherGate`).
            source: anything `augpipe.Loader` takes.
            policy: the policy whose difficulty is measured (default RandAugment(2)).
            magnitudes: ascending magnitudes in [0, 30] (default 0, 3, ..., 30).
            views: random views per sample (epochs 0..views-1 of the plan), >= 1.
            batch_size: samples rendered and scored at a time.
            device: where samples are rendered and the teacher runs (default cpu).
            metric: the gate's metric (one of augpipe.gate.metrics.METRICS).
            seed: the plans' seed.
            size: output side (default: the Loader's default for the source).
            mean, std: the teacher's input normalisation (default: the loader's).
            amp: autocast the teacher.
            progress: a tqdm bar on stderr.
        """
        from tqdm import tqdm

        from .._version import __version__
        from ..loader import Loader

        check_metric(metric)
        mags = [check_magnitude(m) for m in magnitudes]
        if not mags or mags != sorted(set(mags)):
            raise ValueError(f"magnitudes must be non-empty, distinct and ascending, got {list(magnitudes)}")
        check_int("views", views, 1)
        pol = get_policy(RandAugment(2) if policy is None else policy)
        loader = Loader(source, batch_size=batch_size, policy=pol, magnitude=0.0, seed=seed, num_workers=0,
                        size=size, device=device or "cpu", train=True, shuffle=False)
        judge = Teacher(teacher, mean=mean, std=std, device=device, amp=amp).bind(loader)
        n = len(loader.dataset)
        scores = np.zeros((n, len(mags), views), np.float32)
        start = time.perf_counter()
        with tqdm(total=n * len(mags) * views, desc="scoring", unit="sample", file=sys.stderr,
                  disable=not progress) as bar:
            for v in range(views):
                for lo in range(0, n, batch_size):
                    idx = np.arange(lo, min(lo + batch_size, n), dtype=np.int64)
                    clean = None
                    if REGISTRY[metric].needs_clean:
                        clean = judge.logits(loader.render(idx, 0.0, epoch=v).images)
                    for j, m in enumerate(mags):
                        view = loader.render(idx, m, epoch=v)
                        s = score(metric, judge.logits(view.images), view.labels, clean)
                        scores[lo:lo + len(idx), j, v] = s.cpu().numpy()
                        bar.update(len(idx))
        seconds = time.perf_counter() - start
        meta = {"format": FORMAT, "teacher": judge.fingerprint(), "policy": repr(pol), "policy_spec": policy_spec(pol),
                "seed": seed, "dataset": loader.dataset.fingerprint(), "samples": n, "metric": metric,
                "magnitudes": mags, "views": views, "size": list(loader.crop.size), "crop": repr(loader.crop),
                "source": str(source) if isinstance(source, (str, os.PathLike)) else None,
                "augpipe": __version__, "seconds": seconds,
                "samples_x_magnitudes_per_s": n * len(mags) * views / max(seconds, 1e-9)}
        return cls(scores, mags, meta, keys=sample_keys(loader.dataset))

    # ---------------------------------------------------------- caps
    @property
    def mean_scores(self) -> np.ndarray:
        """float32 (N, M): scores averaged over the views."""
        return self.scores.mean(axis=2)

    def caps(self, threshold: float) -> np.ndarray:
        """float32 (N,): per sample the largest table magnitude m whose view-mean
        score is >= threshold at m and at every smaller magnitude of the table
        (0 where it fails already at the first)."""
        passing = np.cumprod(self.mean_scores >= float(threshold), axis=1).astype(bool)
        count = passing.sum(axis=1)
        return np.where(count > 0, self.magnitudes[np.maximum(count - 1, 0)], 0.0).astype(np.float32)

    def apply(self, loader, threshold: float, match: str = "dataset") -> np.ndarray:
        """Set `loader`'s caps to `caps(threshold)`; returns them (in the loader's sample order).

        Args:
            match: "dataset": the table must have been built on the loader's
                dataset (same fingerprint); "samples": the loader's samples
                are looked up by content key in the table (e.g. a training
                subset of the scored set).

        Raises:
            ValueError: another dataset (both fingerprints named), or with
                match="samples", loader samples the table does not hold.
        """
        caps = self.caps(threshold)
        mine = loader.dataset.fingerprint()
        if match == "samples" and mine != self.metadata.get("dataset"):
            if self.keys is None:
                raise ValueError("this table holds no per-sample keys; rebuild it to match by samples")
            wanted = sample_keys(loader.dataset)
            order = np.argsort(self.keys, kind="stable")
            at = np.clip(np.searchsorted(self.keys, wanted, sorter=order), 0, len(order) - 1)
            found = self.keys[order[at]] == wanted
            if not found.all():
                raise ValueError(f"{int((~found).sum())} of the loader's {len(wanted)} samples are not in this table "
                                 f"(built on dataset {self.metadata.get('dataset')}, loader's dataset {mine})")
            caps = caps[order[at]]
        elif match not in ("dataset", "samples"):
            raise ValueError(f"match must be 'dataset' or 'samples', got {match!r}")
        elif mine != self.metadata.get("dataset"):
            raise ValueError(f"this difficulty table was built on dataset {self.metadata.get('dataset')}, but the "
                             f"loader's dataset is {mine}; build the table on this loader's data")
        loader.set_caps(caps)
        return caps

    # ---------------------------------------------------------- files
    def save(self, path) -> Path:
        """Write an .npz (scores, magnitudes, keys, metadata as JSON) atomically."""
        arrays = {"scores": self.scores, "magnitudes": self.magnitudes, "metadata": np.array(json.dumps(self.metadata))}
        if self.keys is not None:
            arrays["keys"] = self.keys

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return atomic_write(path, write)

    @classmethod
    def load(cls, path) -> "DifficultyTable":
        """Read a table written by `save` (or `augpipe score`).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a difficulty table (the file is named).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"difficulty table {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["scores"], z["magnitudes"], json.loads(str(z["metadata"])),
                           z["keys"] if "keys" in z.files else None)
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a difficulty table written by augpipe ({err})") from err

    def __repr__(self) -> str:
        m = self.metadata
        return (f"DifficultyTable({len(self)} samples x {len(self.magnitudes)} magnitudes x {self.scores.shape[2]} "
                f"views, metric={m.get('metric')!r}, policy={m.get('policy')}, dataset={m.get('dataset')})")


def sample_keys(source) -> np.ndarray:
    """int64 content key per sample (image bytes, or file bytes, and label)."""
    keys = np.empty(len(source), np.int64)
    flat = source.images.reshape(len(source), -1).numpy() if source.in_memory else None
    for i in range(len(source)):
        if flat is not None:
            data = flat[i].tobytes()
        elif source.files:
            data = Path(source.path(i)).read_bytes()
        else:
            data = source.load(i).numpy().tobytes()
        h = hashlib.blake2b(data, digest_size=8)
        h.update(int(source.labels[i]).to_bytes(8, "little", signed=True))
        keys[i] = int.from_bytes(h.digest(), "little", signed=True)
    return keys


def policy_spec(policy: Policy) -> dict:
    """A JSON-able description from which `policy_from_spec` rebuilds the policy."""
    spec = {"name": policy.name, "limits": dict(policy.limits)}
    if isinstance(policy, RandAugment):
        spec.update(num_ops=policy.num_ops, ops=list(policy.ops))
    return spec


def policy_from_spec(spec: dict) -> Policy:
    policy = RandAugment(spec["num_ops"], tuple(spec["ops"])) if spec["name"] == "randaugment" \
        else get_policy(spec["name"])
    return policy.with_limits(spec["limits"]) if spec.get("limits") else policy
