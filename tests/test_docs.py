"""The README's tour runs as written (with a teacher and caps of our own)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_tour_runs():
    text = (ROOT / "README.md").read_text()
    tour = re.search(r"## A tour\n\n```python\n(.*?)```", text, re.S).group(1)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    scope = {"teacher": teacher, "caps": np.full(60000, 20.0, np.float32)}
    exec(compile(tour, "README.md (tour)", "exec"), scope)
    loader, batch = scope["loader"], scope["batch"]
    assert loader.gate is not None and scope["weaker"].magnitude.max() == 0
    assert scope["state"]["epoch"] == 3 and len(batch) == 2
    assert scope["dali"].backend == "dali"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
