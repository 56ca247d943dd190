"""Writing files so that a reader never sees half of one: the one atomic-write
helper every layer uses (a temporary file in the same folder, fsync, then
os.replace), so a run killed at any instant leaves the old file or the new."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path, write) -> Path:
    """Call write(tmp_path), then move tmp_path onto `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
