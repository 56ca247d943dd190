"""One rank of tests/test_litdata.py's multi-node job (run by torchrun, gloo on localhost).

    python litdata_ranks.py DATASET OUT [--die-rank R --die-step S] [--resume STATE]

Each rank reads DATASET (a litdata URL or directory) through its node's own cache
(OUT/cache-node<GROUP_RANK>), writes the indices of each batch it hands out to
OUT/rank<r>-step<s>.json, and after every step, once all ranks reached it, rank 0
saves the loader's state to OUT/state.pt (what a trainer's checkpoint holds).
--die-rank R --die-step S: rank R exits abruptly at step S (a killed process).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import augpipe as ap


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("out", type=Path)
    p.add_argument("--die-rank", type=int, default=-1)
    p.add_argument("--die-step", type=int, default=-1)
    p.add_argument("--resume", type=Path, default=None)
    a = p.parse_args()
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    source = ap.LitdataSource(a.dataset, cache_dir=a.out / f"cache-node{os.environ.get('GROUP_RANK', '0')}")
    loader = ap.Loader(source, batch_size=2, size=16, seed=11, num_workers=0)  # rank, world size: from dist
    if a.resume is not None:
        loader.load_state_dict(torch.load(a.resume, weights_only=True))
    (a.out / f"rank{rank}-len.json").write_text(json.dumps({"len": len(loader), "start": loader._resume}))
    for batch in loader:
        if rank == a.die_rank and batch.step == a.die_step:
            os._exit(3)  # killed: no cleanup, no checkpoint
        (a.out / f"rank{rank}-step{batch.step}.json").write_text(json.dumps(batch.index.tolist()))
        dist.barrier()  # every rank finished this step: a consistent checkpoint
        if rank == 0:
            tmp = a.out / "state.pt.tmp"
            torch.save(loader.state_dict(), tmp)
            os.replace(tmp, a.out / "state.pt")
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
