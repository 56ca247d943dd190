"""`augpipe.Loader`: a drop-in replacement for a torch DataLoader.

The Loader owns everything that is not a backend's business: argument
checks, the knob and caps, epoch and resume state, sample order and sharding,
the teacher gate. It hands a backend a `BackendContext` (augpipe/contract.py)
and gets batches back.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator

import numpy as np
import torch

from . import backends
from .core.batch import Batch
from .core.checks import check_int, check_seed, check_size
from .core.knob import Knob
from .core.mixing import Mixing, RandomErasing, make_mix_plan
from .core.ops import check_magnitude
from .core.policy import (
    CROP_FULL,
    CROP_PAD,
    CenterCrop,
    Crop,
    FullImage,
    Identity,
    Policy,
    RandAugment,
    RandomCrop,
    RandomResizedCrop,
    get_policy,
)
from .engine.contract import BackendContext
from .kernels.rng import view_seed
from .sources import Source, open_source

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


STATE_KEYS = ("epoch", "step", "seed", "magnitude", "caps", "world_size", "rank", "num_samples", "batch_size")


class Loader:
    """Augmenting loader: iterate `(images, labels)` batches like a DataLoader.

    Args:
        source: an image folder (class sub-folders), a `(images, labels)`
            numpy/torch pair, "fashion-mnist" / "fashion-mnist:test", a .beton
            file, or a `augpipe.sources.Source`.
        batch_size: samples per batch, >= 1.
        policy: a Policy or its name ("randaugment", "trivialaugment",
            "autoaugment", "identity"). Default RandAugment(num_ops=2).
        magnitude: global magnitude in [0, 30], live (see `magnitude`).
        backend: "auto" ("ffcv" for a .beton, else "torch"), "torch", "dali"
            (DALI decodes and crops, augpipe's kernels apply the ops; see
            augpipe/backends/dali.py) or "ffcv" (planner and kernels inside
            FFCV's compiled pipeline; see augpipe/backends/ffcv.py).
        size: output side (int or (h, w)); default: native for arrays, 224
            for folders.
        train: training transforms (random crop + flip + policy) or
            evaluation (center crop, no policy).
        crop: override the base transform (`augpipe.RandomResizedCrop`, ...).
        shuffle, drop_last: default True when training, False otherwise.
        seed: the run's seed; every random decision derives from it.
        device: where batches are delivered ("cpu", "cuda", "cuda:1").
            On CUDA the policy's ops run on the GPU.
        output: "uint8" (NCHW, 0..255) or "float" (normalised float32).
        mean, std: normalisation for output="float" (default ImageNet's for
            3 channels, 0.5 for 1 channel).
        num_workers: worker processes (0: build batches in the caller).
        on_error: "raise" on a bad image, or "skip" it (counted in
            `loader.errors`; the batch comes out shorter).
        rank, world_size: shard of this process; default from
            torch.distributed (global rank) when initialised.
        prefetch_factor: batches queued per worker (the knob's lag, below).
        backend_options: options only one backend understands (see its
            module docstring), e.g. {"os_cache": True} for FFCV.
        gate: a teacher gate (`augpipe.TeacherGate`) applied to every batch
            (also settable later: `loader.gate = gate`).
        mix: MixUp/CutMix across each batch (`ap.CutMix(1.0) | ap.MixUp(0.8)`,
            `ap.Mixing(...)` with timm's arguments); batches then carry soft
            targets (`batch.targets`) and what was mixed (`lam`, `mix_index`,
            `mix_box`). Training loaders only.
        erase: `ap.RandomErasing(p=0.25, ...)` on each sample, before mixing.
            Both are planned per sample like the ops (augpipe/core/mixing.py)
            and applied after the backend, so every backend gives the same
            batches; see docs/mixing.md.
        views: k >= 1 differently planned views of each sample in every batch
            (self-distillation, SSL, a clean view beside a strong one): a
            batch then holds k * batch_size rows, view-major (`batch.view`
            says which view a row is; `batch.images.chunk(k)` splits them).
            View 0 is planned exactly as a one-view loader's; view v uses the
            seed `augpipe.kernels.rng.view_seed(seed, v)` for its crop, flip,
            ops, mixing and erasing. Each view runs its own backend pipeline
            (k times the workers); see docs/mixing.md.
        repeats: repeated augmentation (timm's RepeatAugSampler, DeiT): each
            epoch covers 1/k of the dataset, each of those samples on k ranks
            with k different plans, the epoch length kept. Needs a world size
            that is a multiple of k (rank r holds copy r % k, planned from
            view_seed(seed, copy)); for k copies in one process use views=k.
        cap_store: how per-sample caps are kept: "float" (4 bytes per sample,
            exact), "byte" (1 byte per sample, each cap rounded down to a
            multiple of 1/8: 1 GB per process at 10^9 samples) or "auto"
            (bytes above 2^24 samples). The FFCV backend needs "float".

    The knob: each batch's magnitude is taken when the batch is dispatched to
    a worker, thread or pipeline: `loader.magnitude = 5.0` reaches every batch
    dispatched after it, i.e. it shows up `loader.lag` batches after the
    current one (num_workers * prefetch_factor for the torch backend, 0 with
    num_workers=0). `set_magnitude(schedule)` evaluates `schedule(epoch,
    step)` at that same moment, per batch, on every backend.
    """

    def __init__(self, source, batch_size: int = 256, policy=None, magnitude: float = 9.0, backend: str = "auto",
                 size=None, train: bool = True, crop: Crop | None = None, shuffle: bool | None = None,
                 drop_last: bool | None = None, seed: int = 0, device="cpu", output: str = "uint8",
                 mean=None, std=None, num_workers: int = 2, on_error: str = "raise",
                 rank: int | None = None, world_size: int | None = None, prefetch_factor: int = 2,
                 backend_options: dict | None = None, gate=None, mix: Mixing | None = None,
                 erase: RandomErasing | None = None, cap_store: str = "auto", views: int = 1,
                 repeats: int = 1):
        batch_size = check_int("batch_size", batch_size, 1)
        self.views = check_int("views", views, 1)
        self.repeats = check_int("repeats", repeats, 1)
        if backend not in backends.names():
            raise ValueError(f"unknown backend {backend!r}; choose one of {backends.names()}")
        if output not in ("uint8", "float"):
            raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        num_workers = check_int("num_workers", num_workers, 0)
        check_seed(seed)
        if size is not None:
            check_size(size)
        from .engine.mixing import check_for_output

        check_for_output(mix, erase, output)
        if (mix is not None or erase is not None) and not train:
            raise ValueError("mix= and erase= are training augmentations: this loader has train=False")
        self.mix, self.erase = mix, erase
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
        self.policy: Policy = get_policy(RandAugment(num_ops=2) if policy is None else policy)
        self.dataset: Source = open_source(source, on_error=on_error)
        if len(self.dataset) == 0:
            raise ValueError(f"source {source!r} holds no samples")
        self.train = bool(train)
        self.crop = crop if crop is not None else self._default_crop(size)
        if self.dataset.in_memory:
            native = self.dataset.fixed_shape[1:]
            if self.crop.mode in (CROP_PAD, CROP_FULL) and native != self.crop.size:
                self.dataset = self.dataset.resized(self.crop.size)  # one-time, e.g. 28 -> 32 px
        self.batch_size = batch_size
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.seed = int(seed)
        self.output = output
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.on_error = on_error
        self.rank, self.world_size = _shard_of(rank, world_size)
        if self.world_size % self.repeats:
            raise ValueError(f"repeats={self.repeats} puts each sample's copies on {self.repeats} different ranks: it "
                             f"needs a world size that is a multiple of it, got world_size={self.world_size} (for "
                             f"copies within one process, use views={self.repeats})")
        if self.repeats > 1 and self.dataset.streaming:
            raise ValueError("repeats > 1 needs the Loader's own sample order; a streaming source's order is "
                             "litdata's (use views=k for planned copies)")
        # this rank's copy (repeats) and views, each planned from its own seed; copy 0, view 0 is the seed itself
        copy = self.rank % self.repeats
        self.view_seeds = [view_seed(int(seed), copy * self.views + v) for v in range(self.views)]
        if backend == "auto":
            backend = "ffcv" if self.dataset.beton is not None else "torch"
        if cap_store == "auto" and backend == "ffcv":
            cap_store = "float"  # FFCV's compiled stage reads float32 caps
        self.knob = Knob(magnitude, len(self.dataset), cap_store)
        self.errors: list[tuple[str, str]] = list(getattr(self.dataset, "skipped", []))
        self.num_classes = len(self.dataset.classes)
        channels = self.dataset.channels
        self.mean = per_channel(mean, IMAGENET_MEAN if channels == 3 else (0.5,) * channels, channels, "mean")
        self.std = per_channel(std, IMAGENET_STD if channels == 3 else (0.5,) * channels, channels, "std")
        self.epoch = 0
        self._step = 0  # batches handed out in the current epoch (for state_dict)
        self._resume = 0  # where the next iter() starts: 0, or a load_state_dict step
        self._elastic = None  # an epoch resumed on another world size (streaming sources): see load_state_dict
        self._orders: dict = {}  # streaming sources: the last epochs' orders (litdata computes them)
        self.backend_options = dict(backend_options or {})
        if (self.views > 1 or self.repeats > 1) and self.backend_options.get("order") is not None:
            raise ValueError("views > 1 and repeats > 1 need the Loader's sample order: drop backend_options "
                             f"order={self.backend_options['order']!r} (FFCV's own order is seeded per pipeline)")
        self.backend = backend
        self.context = BackendContext(
            source=self.dataset, policy=(self.policy if self.train else Identity()).lower(), crop=self.crop,
            knob=self.knob, seed=self.view_seeds[0], batch_size=self.batch_size, num_batches=len(self), order=self.indices,
            channels=channels, device=self.device, output=self.output, mean=self.mean, std=self.std,
            num_workers=self.num_workers, prefetch_factor=self.prefetch_factor, on_error=self.on_error,
            errors=self.errors, options=self.backend_options, rank=self.rank, world_size=self.world_size,
            drop_last=self.drop_last, defer_normalize=mix is not None or erase is not None)
        # further views: the same samples, order, knob and caps, planned from their own seeds
        self._contexts = [self.context] + [dataclasses.replace(self.context, seed=s) for s in self.view_seeds[1:]]
        if mix is not None or erase is not None or self.views > 1:
            for v, c in enumerate(self._contexts):
                c.stage = functools.partial(self._stage, v)
        self._backends = [backends.make_backend(self.backend, c) for c in self._contexts]
        self._gate = None
        self.gate = gate

    @property
    def _backend(self):
        """View 0's backend (the only one with views=1)."""
        return self._backends[0]

    # ------------------------------------------------------------ the knob
    @property
    def magnitude(self) -> float:
        """The global magnitude (shared with every worker)."""
        return self.knob.value

    @magnitude.setter
    def magnitude(self, value: float) -> None:
        self.knob.schedule = None
        self.knob.value = value

    def set_magnitude(self, magnitude: float | Callable[[int, int], float]) -> None:
        """Set a constant magnitude, or a schedule `f(epoch, step) -> magnitude`
        evaluated for each batch (step counts batches within the epoch)."""
        if callable(magnitude):
            self.knob.schedule = magnitude
        else:
            self.magnitude = magnitude

    @property
    def lag(self) -> int:
        """Batches between a knob or cap change and the first batch it reaches."""
        return max(b.lag for b in self._backends)

    @property
    def caps(self):
        """Per-sample magnitude caps (shared, len(dataset)): a float32 array, or with
        cap_store="byte" a view reading and writing them as float32 (augpipe.core.knob.ByteCaps)."""
        return self.knob.caps

    def set_caps(self, caps, indices=None) -> None:
        """Write per-sample caps: one per dataset sample, or those at `indices`.

        Raises:
            ValueError: a cap outside [0, 30] or NaN, or a length that is not
                len(dataset) (or len(indices)).
        """
        self.knob.set_caps(caps, indices)

    # ------------------------------------------------------------ the gate
    @property
    def gate(self):
        """The teacher gate applied to every batch (None: no gating)."""
        return self._gate

    @gate.setter
    def gate(self, gate) -> None:
        if gate is not None:
            if not callable(gate):
                raise TypeError(f"gate must be callable as gate(batch, loader) -> Batch, got {type(gate).__name__}")
            if hasattr(gate, "bind"):
                gate.bind(self)  # checks (e.g. the teacher's classes) fail here, not mid-epoch
        self._gate = gate

    def render(self, indices, magnitude=None, epoch: int | None = None, mix: bool = True, view=None) -> Batch:
        """Re-augment samples with exactly their planned crop, flip and op
        choices, at other magnitudes.

        Args:
            indices: dataset indices (as in `batch.index`).
            magnitude: a float for all, one per sample, or None for what the
                plan used (the live knob bounded by the caps).
            epoch: the epoch whose plans to use (default: the current one;
                pass `batch.epoch` to re-render a batch).
            mix: apply the loader's mixing and erasing (partners by position
                in `indices`, as in a batch: pass a whole `batch.index` to
                reproduce a mixed batch exactly); False renders them unmixed
                and unerased.
            view: which view's plans (views > 1): an int for all, one per
                index (`batch.view`), or None for view 0. Rows of one view
                are rendered together, in their order (mixing partners by
                position within the view).

        Returns:
            A Batch on the loader's device and in its output format, with
            `step` = -1 (it is not part of the epoch's sequence).
        """
        from .engine.contract import render

        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise ValueError(f"indices must be a 1-D array of dataset indices, got shape {idx.shape} {idx.dtype}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.dataset)):
            raise ValueError(f"indices must be in [0, {len(self.dataset)}), got range [{idx.min()}, {idx.max()}]")
        views = self._views_of(view, idx.shape[0])
        if views.size and views.min() != views.max():  # several views: each rendered with its own plans
            parts = [(rows, self.render(idx[rows], _rows(magnitude, rows, len(idx)), epoch, mix, int(v)))
                     for v in np.unique(views) for rows in [np.flatnonzero(views == v)]]
            batch = Batch.concat([b for _, b in parts])
            order = np.argsort(np.concatenate([rows for rows, _ in parts]), kind="stable")
            return batch.subset(torch.from_numpy(order))
        v = int(views[0]) if views.size else 0
        epoch = self.epoch if epoch is None else int(epoch)
        if magnitude is None:
            knobs, caps = self.knob.value, True
        else:
            m = magnitude.detach().cpu().numpy() if isinstance(magnitude, torch.Tensor) else magnitude
            m = np.asarray(m, dtype=np.float64)
            if m.ndim > 1 or (m.ndim == 1 and m.shape[0] != idx.shape[0]):
                raise ValueError(f"magnitude must be a float or one per index ({idx.shape[0]}), got shape {m.shape}")
            knobs = np.array([check_magnitude(v) for v in m.reshape(-1)]).reshape(m.shape)
            caps = False
        custom = getattr(self._backends[v], "render", None)
        batch = custom(idx, knobs, epoch, caps) if custom is not None else \
            render(self._contexts[v], idx, knobs, epoch, caps)
        return self._with_view(self._mix_and_erase(batch, mix, v), v)

    def _views_of(self, view, n: int) -> np.ndarray:
        """int64 (n,) view per row from render's `view` argument, checked."""
        if view is None:
            return np.zeros(n, np.int64)
        v = np.asarray(view.cpu() if isinstance(view, torch.Tensor) else view)
        if not np.issubdtype(v.dtype, np.integer) or v.ndim > 1 or (v.ndim == 1 and v.shape[0] != n):
            raise ValueError(f"view must be an int or one int per index ({n}), got {view!r}")
        v = np.broadcast_to(v.astype(np.int64), (n,))
        if n and (v.min() < 0 or v.max() >= self.views):
            raise ValueError(f"view must be in [0, {self.views}) (this loader has views={self.views}), "
                             f"got {int(v.min())}..{int(v.max())}")
        return v

    def _stage(self, view: int, batch: Batch) -> Batch:
        """The batch-level stage of a view's batches (BackendContext.stage): mixing, erasing, the view's rows."""
        return self._with_view(self._mix_and_erase(batch, True, view), view)

    def _with_view(self, batch: Batch, v: int) -> Batch:
        if self.views == 1:
            return batch
        return dataclasses.replace(batch, view=torch.full((batch.size,), v, dtype=torch.int64,
                                                          device=batch.labels.device))

    def _mix_and_erase(self, batch: Batch, mix: bool = True, view: int = 0) -> Batch:
        """The batch-level stage: erasing, then mixing, as planned for these samples (augpipe/core/mixing.py),
        with the normalisation of output="float" (deferred by the backend) fused in. mix=False: only that.
        Each view plans its own from its seed."""
        if self.mix is None and self.erase is None:
            return batch
        from .engine import mixing
        from .engine.compiled import notice
        from .kernels.mixing import normalize_mix

        notice(normalize_mix, "the mixing and erasing kernels", 10)
        idx = batch.index.cpu().numpy()
        mixer, eraser = (self.mix, self.erase) if mix else (None, None)
        seed = self.view_seeds[view]
        plan = make_mix_plan(seed, batch.epoch, idx, batch.magnitude.cpu().numpy(),
                             tuple(batch.images.shape[-2:]), mixer, eraser)
        images = mixing.execute(batch.images, plan, eraser, seed, batch.epoch, idx,
                                self.context if self.output == "float" else None)
        device, fields = images.device, {"images": images}
        if eraser is not None:
            fields["erased"] = torch.from_numpy(plan.rects).to(device)
        if mixer is not None:
            mixed = plan.kind != 0
            partner = torch.from_numpy(np.where(mixed, plan.partner, np.arange(len(idx)))).to(device)
            lam = torch.from_numpy(plan.lam).to(device)
            fields.update(lam=lam, mix_index=batch.index[partner], mix_box=torch.from_numpy(plan.box).to(device),
                          targets=mixing.soft_targets(batch.labels, batch.labels[partner], lam, self.num_classes,
                                                      mixer.label_smoothing))
        return dataclasses.replace(batch, **fields)

    # ------------------------------------------------------ order and state
    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` (order and plans derive from it) from its first batch."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch, self._step, self._resume, self._elastic = int(epoch), 0, 0, None

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's sample order for an epoch (equal length on every rank:
        padded with the first samples of the order, or truncated with drop_last).
        A streaming source's order is its engine's (litdata's; see augpipe/sources/litdata.py)."""
        epoch = self.epoch if epoch is None else epoch
        if self.dataset.streaming:
            return self._streaming_order(epoch)
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if self.repeats > 1:  # k ranks share a group's samples; groups split the order; the length is kept
            groups = self.world_size // self.repeats
            per_rank = n // self.world_size if self.drop_last else -(-n // self.world_size)
            return order[self.rank // self.repeats::groups][:per_rank].astype(np.int64)
        if self.world_size > 1:
            per_rank = n // self.world_size if self.drop_last else -(-n // self.world_size)
            total = per_rank * self.world_size
            order = np.concatenate([order, order[: total - n]]) if total > n else order[:total]
            order = order[self.rank:total:self.world_size]
        return order.astype(np.int64)

    def _streaming_order(self, epoch: int) -> np.ndarray:
        e = self._elastic if self._elastic is not None and self._elastic["epoch"] == epoch else None
        key = (epoch, None if e is None else (e["world_size"], e["consumed"]))
        if key not in self._orders:
            from .sources.litdata import lockstep, restripe

            def order(rank, world_size):
                return self.dataset.order(epoch, self.seed, self.shuffle, rank, world_size, self.batch_size,
                                          self.drop_last)

            if e is None:
                mine = order(self.rank, self.world_size)
            else:  # the rest of the stream the interrupted job consumed in lockstep, dealt to these ranks
                stream = lockstep([order(r, e["world_size"]) for r in range(e["world_size"])], self.batch_size)
                rest = restripe(stream[e["consumed"]:], self.rank, self.world_size, self.batch_size)
                mine = np.concatenate([np.full(e["offset"] * self.batch_size, -1, np.int64), rest])
            self._orders = {k: v for k, v in self._orders.items() if k[0] == epoch - 1}  # keep two epochs
            self._orders[key] = np.ascontiguousarray(mine, dtype=np.int64)
        return self._orders[key]

    def __len__(self) -> int:
        if self.dataset.streaming:
            n = len(self._streaming_order(self.epoch))
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        n = len(self.dataset)
        if self.world_size > 1:
            n = n // self.world_size if self.drop_last else -(-n // self.world_size)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        """One epoch. Like a DataLoader, an abandoned iteration is not resumed
        by the next iter(): only `load_state_dict` starts mid-epoch."""
        epoch, self._step, self._resume = self.epoch, self._resume, 0
        for c in self._contexts:
            c.num_batches = len(self)  # a streaming epoch resumed elastically has its own length
        streams = [b.iterate(epoch, self._step) for b in self._backends]
        for parts in zip(*streams):
            self._step += 1
            parts = [b if c.stage is None or getattr(be, "applies_stage", False) else c.stage(b)
                     for b, c, be in zip(parts, self._contexts, self._backends)]
            batch = parts[0] if self.views == 1 else Batch.concat(parts)
            if self._gate is not None:
                batch = self._gate(batch, self)
            if self.epoch == epoch and self._step >= len(self):
                # complete once its last batch is out (trainers that know len() never ask for
                # one more): the next iter() is the next epoch, as FFCV does
                self.epoch, self._step, self._elastic = epoch + 1, 0, None
            yield batch

    def close(self) -> None:
        """Stop worker processes now (otherwise they stop when the loader is
        garbage collected). The loader stays usable; workers restart on demand."""
        for b in self._backends:
            b.close()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def state_dict(self) -> dict:
        """Everything needed to resume: the rest of the epoch comes out identical
        (caps included, and the gate's own state if it has any). Tensors and
        plain Python values only, so checkpoints holding it (Lightning's among
        them) load under torch.load(weights_only=True)."""
        state = {"epoch": self.epoch, "step": self._step, "seed": self.seed, "magnitude": float(self.magnitude),
                 "caps": torch.from_numpy(self.knob.raw_caps.copy()), "world_size": self.world_size, "rank": self.rank,
                 "num_samples": len(self.dataset), "batch_size": self.batch_size, "views": self.views,
                 "repeats": self.repeats}
        # where the epoch stands globally, so that a streaming source resumes on another world size
        e = self._elastic if self._elastic is not None and self._elastic["epoch"] == self.epoch else None
        stride = self.batch_size * self.world_size
        state["sample_in_epoch"] = (self._step * stride if e is None
                                    else e["consumed"] + (self._step - e["offset"]) * stride)
        state["epoch_world_size"] = self.world_size if e is None else e["world_size"]
        if self.dataset.streaming:
            state["fingerprint"] = self.dataset.fingerprint()
        if self._gate is not None and hasattr(self._gate, "state_dict"):
            state["gate"] = self._gate.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Resume from `state_dict()`: the next iteration continues mid-epoch.

        `state` may also be the list of every rank's state (what a trainer
        gathers): each rank then takes its own, with the caps of all ranks
        merged (per sample the lowest: a rank writes caps only for the
        samples it saw), so caps survive a resume on another world size.

        A streaming (litdata) source with drop_last also resumes on another
        world size: the rest of the epoch is the global stream the saved job
        was consuming, minus what it consumed, dealt to the new ranks in whole
        rounds (each remaining sample once, with the augmentation it would
        have had: plans are keyed by the global index). Its step numbers go on
        from consumed // (batch_size * world_size).

        Raises:
            ValueError: `state` is not a Loader state dict (missing keys named),
                or was saved by a loader over other data, batch size, world
                size (other than a streaming source's) or seed.
        """
        if isinstance(state, (list, tuple)) and state and all(isinstance(s, dict) for s in state):
            state = merge_states(state, self.rank, self.world_size)
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict takes the dict from Loader.state_dict() (or every rank's, as a list), "
                            f"got {type(state).__name__}")
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"not a Loader state dict: missing {', '.join(missing)} (Loader.state_dict() holds "
                             f"{', '.join(STATE_KEYS)}, and 'gate' with a gate attached)")
        for key in ("num_samples", "batch_size"):
            mine = len(self.dataset) if key == "num_samples" else getattr(self, key)
            if state[key] != mine:
                raise ValueError(f"state was saved with {key}={state[key]}, this loader has {mine}")
        for key in ("views", "repeats"):
            if state.get(key, 1) != getattr(self, key):
                raise ValueError(f"state was saved with {key}={state.get(key, 1)}, this loader has "
                                 f"{key}={getattr(self, key)}")
        if state["seed"] != self.seed:
            raise ValueError(f"state was saved with seed={state['seed']}, this loader has seed={self.seed}")
        if self.dataset.streaming and state.get("fingerprint", self.dataset.fingerprint()) != self.dataset.fingerprint():
            raise ValueError(f"state was saved by a loader over another dataset (fingerprint {state['fingerprint']}, "
                             f"this one's {self.dataset.fingerprint()})")
        epoch_ws = int(state.get("epoch_world_size", state["world_size"]))
        consumed = int(state.get("sample_in_epoch", 0))
        elastic = (state["world_size"] != self.world_size or epoch_ws != self.world_size) and consumed > 0
        if state["world_size"] != self.world_size and not (self.dataset.streaming and self.drop_last):
            raise ValueError(f"state was saved with world_size={state['world_size']}, this loader has "
                             f"{self.world_size}: only streaming sources (litdata:...) with drop_last resume on "
                             "another world size")
        self.epoch = int(state["epoch"])
        if elastic:
            offset = consumed // (self.batch_size * self.world_size)
            self._elastic = {"epoch": self.epoch, "world_size": epoch_ws, "consumed": consumed, "offset": offset}
            self._step = offset
        else:
            self._elastic, self._step = None, int(state["step"])
        self._resume = self._step
        self.knob.value = state["magnitude"]
        caps = state["caps"]
        self.knob.load_raw_caps(caps.numpy() if isinstance(caps, torch.Tensor) else caps)
        if "gate" in state and self._gate is not None and hasattr(self._gate, "load_state_dict"):
            self._gate.load_state_dict(state["gate"])

    # ------------------------------------------------------------- helpers
    def _default_crop(self, size) -> Crop:
        shape = self.dataset.fixed_shape
        if size is None:
            size = shape[1:] if shape is not None else 224
        if shape is not None:  # arrays (and uniform-size .betons): CIFAR-style pad-and-crop
            out = (size, size) if isinstance(size, int) else tuple(size)
            return RandomCrop(out, padding=max(out) // 8) if self.train else FullImage(out)
        return RandomResizedCrop(size) if self.train else CenterCrop(size)

    def __repr__(self) -> str:
        return (f"Loader({type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, policy={self.policy!r}, magnitude={self.magnitude:g}, "
                f"backend={self.backend!r}, size={self.crop.size}, train={self.train})")


def _rows(magnitude, rows: np.ndarray, n: int):
    """render's magnitude argument for a subset of its n rows (a per-sample one is indexed; a malformed one
    is passed on whole, for render's own check to name)."""
    if magnitude is None or np.ndim(magnitude) == 0:
        return magnitude
    m = magnitude.detach().cpu().numpy() if isinstance(magnitude, torch.Tensor) else np.asarray(magnitude)
    return m[rows] if m.ndim == 1 and m.shape[0] == n else magnitude


def merge_states(states: list[dict], rank: int, world_size: int) -> dict:
    """One rank's state from every rank's: its own (or rank 0's when the world size changed; the
    position is the same on every rank), with per-sample caps the minimum over all ranks."""
    from .core.knob import BYTE_STEPS

    own = states[rank] if len(states) == world_size else states[0]
    merged = dict(own)
    if all("caps" in s for s in states):
        def as_float(caps):
            caps = caps.numpy() if isinstance(caps, torch.Tensor) else np.asarray(caps)
            return caps.astype(np.float32) / BYTE_STEPS if caps.dtype == np.uint8 else caps.astype(np.float32)

        merged["caps"] = torch.from_numpy(np.minimum.reduce([as_float(s["caps"]) for s in states]))
    return merged


def per_channel(values, default, channels: int, name: str) -> tuple[float, ...]:
    """Per-channel normalisation values: a scalar or one per channel (None: `default`)."""
    if values is None:
        return tuple(default)
    values = tuple(float(v) for v in (values if hasattr(values, "__len__") else [values]))
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{name} needs {channels} value(s) (one per channel), got {len(values)}")
    if name.endswith("std") and min(values) <= 0:
        raise ValueError(f"std must be positive, got {values}")
    return values


def _shard_of(rank, world_size) -> tuple[int, int]:
    """(rank, world size): explicit values, else the global torch.distributed group."""
    if rank is None and world_size is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    world_size = 1 if world_size is None else world_size
    rank = 0 if rank is None else rank
    if not (isinstance(world_size, int) and isinstance(rank, int) and world_size >= 1 and 0 <= rank < world_size):
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
    return rank, world_size
