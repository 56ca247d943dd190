"""A digest of the first training batches a recorded run's loader produces: where a rerun differs
(recheck.py), this says whether the augmented batches differ or only the training arithmetic.

    .venv/bin/python benchmarks/paper/loader_digest.py RUN_DIR [--batches 16]

Builds the training Loader exactly as `augpipe train` does for the run's recorded config (data, split,
policy, magnitude, seed, batch size, workers, size) and prints the SHA-1 of its first batches' images,
labels and indices. Run it under two checkouts (or machines) and compare the lines: the same digest
means the same batches. One thread, as the runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def digest(config: dict, batches: int) -> str:
    from augpipe.driver.data import make_data, make_loaders

    split_seed = config["seed"] if config.get("split_seed") is None else config["split_seed"]
    data = make_data(config["data"], config["train_size"], config["val_size"], split_seed, config["channels"],
                     config.get("test_size"))
    train, _, _ = make_loaders(data, batch_size=config["batch_size"], magnitude=config.get("magnitude_start", 0.0),
                               seed=config["seed"], workers=config["workers"], policy=config["policy"],
                               size=config.get("size"))
    h = hashlib.sha1()
    for i, b in enumerate(train):
        if i == batches:
            break
        for t in (b.images, b.labels, b.index):
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run directory (or committed record) holding report.json")
    p.add_argument("--batches", type=int, default=16)
    a = p.parse_args()
    report = a.run / "report.json"
    if not report.is_file():
        raise SystemExit(f"{a.run}: no report.json")
    config = json.loads(report.read_text())["config"]
    extras = [k for k in ("gate", "caps", "limits", "mixup", "cutmix", "reprob", "repeats") if config.get(k)]
    if config.get("kind") != "train" or extras:
        raise SystemExit(f"{a.run}: only plain `augpipe train` runs are digested (this one has "
                         f"{', '.join(extras) or 'kind ' + repr(config.get('kind'))})")
    print(f"{digest(config, a.batches)}  {a.run} (first {a.batches} batches)")


if __name__ == "__main__":
    main()
