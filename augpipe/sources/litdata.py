"""litdata datasets as augpipe sources: `ap.Loader("litdata:DIR")`.

A dataset written by `augpipe convert SRC OUT --format litdata`
(augpipe/sources/to_litdata.py) is a litdata "optimized" directory, read by
litdata's own `StreamingDataset`:

    OUT/index.json, OUT/chunk-*.bin   litdata's: one item per sample, {"image": its encoded bytes as
                                      they were (JPEG/PNG file bytes; raw CHW pixels for arrays),
                                      "label", "index" (= its position, checked on every read),
                                      "height", "width", "key" (its name in the original data)}
    OUT/augpipe-*.npy                 labels, sizes, kinds, byte counts of every sample: the planner
                                      runs before anything is decoded, with no header scan
    OUT/augpipe.json                  written last (a dataset without it is unfinished): classes,
                                      channels, encoding, count, fingerprint

Order comes from litdata, not from augpipe: this rank's samples for an epoch
are those litdata's `StreamingDataset` (shuffle, seed, drop_last) yields on
this rank in one process (litdata's own shuffler computes them: `order`;
tests/test_litdata.py checks it against iterating litdata). The planner keys
every decision by the stored global index, so a sample's crop, ops and
magnitude do not depend on rank, world size or worker count. A resume on
another world size takes the rest of the epoch in litdata's elastic order
(`remainder`): the global lockstep stream the interrupted job was consuming,
minus what it consumed, striped over the new ranks.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .base import DecodeError, Source

FORMAT, VERSION = "augpipe-litdata", 1
META = "augpipe.json"
TABLES = ("labels", "sizes", "kinds", "nbytes")  # augpipe-<name>.npy
ENCODINGS = ("file", "raw")  # encoded image files as they were / raw CHW uint8 pixels
PREFIX = "litdata:"
FETCH_WAIT_S = 600  # how long a rank waits for another rank of its node to fetch a side file


def table_path(root: Path, name: str) -> Path:
    return root / f"augpipe-{name}.npy"


def default_cache(url: str) -> Path:
    base = Path(os.environ.get("AUGPIPE_CACHE", Path.home() / ".cache" / "augpipe"))
    return base / "litdata" / hashlib.sha1(url.encode()).hexdigest()[:16]


def _locked(path: str) -> bool:
    """Whether another process holds the file lock at `path` (litdata's downloads take one per file)."""
    from filelock import FileLock, Timeout

    if not os.path.exists(path):
        return False
    try:
        with FileLock(path, timeout=0):
            return False
    except Timeout:
        return True


def _allow_http(storage_options: dict) -> None:
    """litdata fetches chunks with obstore, which refuses plain-http endpoints unless told (its
    client options carry no allow_http): an S3-compatible server over http (MinIO, moto, a cluster's
    own gateway) then fails on the first chunk. Allow http only when the endpoint is http."""
    endpoint = (storage_options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL") or "")
    if endpoint.startswith("http://"):
        from litdata.streaming import downloader

        downloader._OBSTORE_CLIENT_OPTIONS.setdefault("allow_http", "true")


def _litdata():
    """litdata, without its PyPI version check (a network call at every open, from every rank)."""
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
    try:
        import litdata
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(f"litdata sources need litdata ({err}): pip install 'augpipe[stream]'") from err
    return litdata


class LitdataSource(Source):
    """The samples of a litdata dataset written by `augpipe convert --format litdata`.

    Capabilities (see `Source`): `encoded` (`read_into(i, buf)` copies sample
    i's encoded bytes; `headers()` gives sizes, kinds and byte counts from the
    stored tables), `streaming` (`order(...)`: litdata decides the order).

    Args:
        location: the dataset directory, or its URL in object storage ("s3://bucket/prefix", and the
            other schemes litdata reads); a "litdata:" prefix is allowed.
        cache_dir: where litdata keeps the chunks it downloads and augpipe its side tables (remote
            datasets; default $AUGPIPE_CACHE/litdata/<hash of the URL>). One per node.
        storage_options: passed to litdata's client (e.g. {"endpoint_url": ...}); boto3's own
            environment variables (AWS_ENDPOINT_URL, credentials) work as well.

    Raises:
        FileNotFoundError: no such directory, or no litdata index in it.
        ValueError: a directory that is not a finished augpipe litdata dataset
            (an interrupted conversion, another tool's dataset, a newer format).
        OSError: a remote dataset whose augpipe files cannot be fetched (named).
    """

    streaming = True

    @property
    def encoded(self) -> bool:
        """Image files' bytes (the folder fast path decodes them); False for raw pixels."""
        return self.encoding == "file"

    def __init__(self, location: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 storage_options: dict | None = None):
        location = str(location)
        location = location[len(PREFIX):] if location.startswith(PREFIX) else location
        self.location, self.remote = location.rstrip("/"), "://" in location
        self.storage_options = dict(storage_options or {})
        if self.remote:
            self.cache_dir = Path(cache_dir) if cache_dir else default_cache(self.location)
            self.root = self.cache_dir / "augpipe"  # the side tables, fetched once
            self._fetch_side_files()
        else:
            self.root, self.cache_dir = Path(location), Path(cache_dir) if cache_dir else None
            if not self.root.is_dir():
                raise FileNotFoundError(f"litdata dataset {self.root} does not exist (or is not a directory)")
            if not (self.root / "index.json").is_file():
                raise FileNotFoundError(f"{self.root} holds no litdata index.json: not a litdata dataset "
                                        f"(write one with `augpipe convert SRC {self.root} --format litdata`)")
        meta_file = self.root / META
        if not meta_file.is_file():
            raise ValueError(f"{self.location} has no {META}: an unfinished conversion, or a litdata dataset not "
                             f"written by `augpipe convert --format litdata`; convert it again")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{meta_file} is format {meta.get('format')!r} version {meta.get('version')!r}; "
                             f"this augpipe reads {FORMAT!r} version {VERSION}")
        self.meta = meta
        self.classes = list(meta["classes"])
        self.encoding = meta["encoding"]
        self._channels = int(meta["channels"])
        self.skipped = [tuple(s) for s in meta.get("skipped", [])]
        self._open_tables()
        n = int(meta["count"])
        if any(len(t) != n for t in (self.labels, self._sizes, self._kinds, self._nbytes)):
            raise ValueError(f"{self.location}: its tables do not all hold {n} samples; convert it again")
        self._dataset = None
        self._lock = threading.Lock()

    def _fetch_side_files(self) -> None:
        """augpipe.json and the tables, through litdata's downloader (its client, retries and options)."""
        _litdata()
        from litdata.streaming.downloader import get_downloader

        _allow_http(self.storage_options)
        self.root.mkdir(parents=True, exist_ok=True)
        downloader = get_downloader(self.location, str(self.cache_dir), [], self.storage_options)
        for name in (META, "index.json", *(table_path(Path(""), t).name for t in TABLES)):
            local = self.root / name
            if local.is_file():
                continue
            deadline = time.monotonic() + FETCH_WAIT_S
            while not local.is_file():
                try:  # returns at once without the file while another process of the node holds its lock
                    downloader.download_file(f"{self.location}/{name}", str(local))
                except Exception as err:  # boto3 / obstore errors: name what could not be fetched
                    raise OSError(f"cannot fetch {self.location}/{name} ({type(err).__name__}: {err}); "
                                  + ("an unfinished conversion or not an augpipe litdata dataset?" if name == META
                                     else "the dataset is incomplete")) from err
                if not local.is_file():
                    if not _locked(f"{local}.lock") and not local.is_file():  # nobody fetches it: nothing there
                        raise OSError(f"cannot fetch {self.location}/{name}: no such object"
                                      + ("; an unfinished conversion or not an augpipe litdata dataset?"
                                         if name == META else "; the dataset is incomplete"))
                    if time.monotonic() > deadline:
                        raise OSError(f"cannot fetch {self.location}/{name}: another process has held its "
                                      f"download lock in {self.root} for {FETCH_WAIT_S} s")
                    time.sleep(0.05)

    def _open_tables(self) -> None:
        # memory-mapped: nothing is read until used, and forked workers share the pages
        tables = {name: np.load(table_path(self.root, name), mmap_mode="r") for name in TABLES}
        self.labels, self._sizes = tables["labels"], tables["sizes"]
        self._kinds, self._nbytes = tables["kinds"], tables["nbytes"]

    def __getstate__(self):  # to worker processes: reopen, don't pickle the tables or litdata's reader
        return {"location": self.location, "cache_dir": self.cache_dir, "storage_options": self.storage_options}

    def __setstate__(self, state):
        self.__init__(**state)

    # ------------------------------------------------------------ Source
    @property
    def channels(self) -> int:
        return self._channels

    @property
    def fixed_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of datasets converted from arrays or uniform .betons; None for image files."""
        shape = self.meta.get("fixed_shape")
        return tuple(shape) if shape else None

    def sizes(self) -> np.ndarray:
        return np.asarray(self._sizes, dtype=np.int64)

    def headers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sizes (N, 2), kinds (N,) KIND_*, bytes (N,)) as stored at conversion: no scan."""
        return self.sizes(), np.asarray(self._kinds), np.asarray(self._nbytes, dtype=np.int64)

    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    def dataset(self):
        """litdata's StreamingDataset over the directory (opened once per process)."""
        if self._dataset is None:
            self._dataset = self._streaming(shuffle=False)
        return self._dataset

    def _streaming(self, **kwargs):
        _allow_http(self.storage_options)
        cache = str(self.cache_dir / "chunks") if self.cache_dir is not None else None

        def make():
            return _litdata().StreamingDataset(self.location, cache_dir=cache,
                                               storage_options=self.storage_options or None, **kwargs)

        if not self.remote:
            return make()
        # litdata fetches index.json into the shared cache under a file lock it waits 1 s for, then goes
        # on without the file ("doesn't contain any index.json") when another process of the node holds
        # it longer (seen with 3 ranks on 2 busy cores): open one process at a time per cache.
        from filelock import FileLock

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache_dir / "augpipe-open.lock"), timeout=FETCH_WAIT_S):
            return make()

    def item(self, index: int) -> dict:
        index = self._check_index(index)
        with self._lock:  # litdata's reader is not documented as thread-safe; the copy out is cheap
            try:
                item = self.dataset()[index]
            except Exception as err:  # a chunk that failed to download (after litdata's retries) or is corrupt
                raise OSError(f"{self.describe(index)}: litdata could not read it from chunk "
                              f"{self.chunk_of(index)} ({type(err).__name__}: {err})") from err
            item = dict(item, image=bytes(item["image"]), key=bytes(item["key"]).decode())
        if int(item["index"]) != index:
            raise ValueError(f"{self.describe(index)}: litdata returned the sample stored as index "
                             f"{item['index']}; the dataset's chunks and index.json do not match")
        return item

    def chunk_of(self, index: int) -> str:
        """The chunk file holding sample `index` (its URL for a remote dataset)."""
        if getattr(self, "_chunk_ends", None) is None:
            chunks = json.loads((self.root / "index.json").read_text())["chunks"]
            self._chunk_names = [c["filename"] for c in chunks]
            self._chunk_ends = np.cumsum([c["chunk_size"] for c in chunks])
        name = self._chunk_names[int(np.searchsorted(self._chunk_ends, index, side="right"))]
        return f"{self.location}/{name}"

    def read_into(self, index: int, out: memoryview) -> None:
        """Copies sample `index`'s encoded bytes into `out` (exactly `headers()[2][index]` bytes)."""
        data = self.item(index)["image"]
        if len(data) != len(out):
            raise ValueError(f"{self.describe(index)}: {len(data)} bytes stored, its table says {len(out)}")
        out[:] = data

    def load(self, index: int) -> torch.Tensor:
        item = self.item(index)
        data = np.frombuffer(item["image"], dtype=np.uint8)
        h, w = int(item["height"]), int(item["width"])
        if self.encoding == "raw":
            return torch.from_numpy(data.copy()).view(self._channels, h, w)
        from torchvision.io import ImageReadMode, decode_image

        mode = ImageReadMode.RGB if self._channels == 3 else ImageReadMode.GRAY
        try:
            return decode_image(torch.from_numpy(data.copy()), mode=mode)
        except RuntimeError as err:
            raise DecodeError(self.describe(index), str(err)) from err

    def describe(self, index: int) -> str:
        return f"{PREFIX}{self.location}[{index}]"

    def path(self, index: int) -> str:
        return self.describe(index)

    # ------------------------------------------------------------- order
    def order(self, epoch: int, seed: int, shuffle: bool, rank: int, world_size: int, batch_size: int,
              drop_last: bool) -> np.ndarray:
        """This rank's sample indices for augpipe epoch `epoch` (litdata's epoch + 1): what litdata's
        StreamingDataset(shuffle, seed, drop_last) yields on rank `rank` of `world_size`, one process."""
        from litdata.utilities.env import _DistributedEnv, _WorkerEnv

        _litdata()
        ds = self._ordering_dataset(seed, shuffle, drop_last)
        env = _DistributedEnv(world_size, rank, 1)
        ds.distributed_env = env
        ds.set_epoch(epoch + 1)
        cache = ds._create_cache(worker_env=_WorkerEnv(1, 0))
        shuffler = ds._create_shuffler(cache)
        n_chunks = len(cache.get_chunk_intervals())
        chunks, intervals = shuffler.get_chunks_and_intervals_per_workers(env, 1, batch_size, epoch + 1)
        parts = [np.asarray(shuffler(np.arange(iv[1], iv[2]), n_chunks, epoch + 1, int(c)), dtype=np.int64)
                 for c, iv in zip(chunks[rank], intervals[rank])]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _ordering_dataset(self, seed: int, shuffle: bool, drop_last: bool):
        key = (seed, shuffle, drop_last)
        cached = getattr(self, "_orderer", None)
        if cached is None or cached[0] != key:
            ds = self._streaming(shuffle=shuffle, seed=seed, drop_last=drop_last)
            self._orderer = cached = (key, ds)
        return cached[1]


def lockstep(orders: list[np.ndarray], batch_size: int) -> np.ndarray:
    """The global order in which ranks running in lockstep consume their full batches (batch k of
    every rank, rank by rank, then batch k+1): litdata's `lockstep_stream_from_worker_seqs` with one
    worker per rank, for equal-length orders, partial last batches dropped."""
    nb = min(len(o) for o in orders) // batch_size
    return np.stack([o[:nb * batch_size] for o in orders]).reshape(len(orders), nb, batch_size) \
        .transpose(1, 0, 2).reshape(-1)


def restripe(stream: np.ndarray, rank: int, world_size: int, batch_size: int) -> np.ndarray:
    """Rank `rank`'s share when `stream` is dealt out batch by batch (batch k to rank k % world_size),
    whole rounds only, so every rank gets as many full batches (litdata's `restripe_items`,
    drop_last, one worker per rank)."""
    rounds = len(stream) // (world_size * batch_size)
    return stream[:rounds * world_size * batch_size].reshape(rounds, world_size, batch_size)[:, rank].reshape(-1)
