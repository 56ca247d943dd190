"""The README's table of the paper's verdicts quotes the committed results (benchmarks/paper/results2/*.json)
digit for digit: a rerun of the summaries that changes a figure or a verdict fails here until the README
follows."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "paper" / "results2"
sys.path.insert(0, str(ROOT / "benchmarks" / "paper"))

import stats  # noqa: E402

NAMES = ("A1", "A3", "B1", "B2", "C1", "C2")


def _table() -> dict[str, list[str]]:
    """Rows of the verdict table in the README's section on the paper, by observation; cells with the
    typographic minus read as ASCII."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The paper's observations", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if m := re.match(r"\| \*\*(A1|A3|B1|B2|C1|C2)\*\* \|(.*)\|\s*$", line):
            rows[m[1]] = [c.strip().replace("−", "-") for c in m[2].split("|")]
    return rows


def _quoted(test: dict, p_holm: float, verdict: str) -> list[str]:
    lo, hi = test["ci"]
    return [f"{test['diff']:+.2f}", f"[{lo:+.2f}, {hi:+.2f}]", f"{test['p']:.3g}", f"{p_holm:.3g}", verdict]


def test_the_readme_quotes_every_primary_as_the_results_give_it():
    rows = _table()
    assert set(rows) == set(NAMES), f"the README's verdict table has rows {sorted(rows)}, expected {NAMES}"
    b = json.loads((RESULTS / "b.json").read_text())
    for k in ("A1", "A3", "B1", "B2"):
        cells = rows[k][1:]  # after the contrast's description
        if k in b["verdicts"]:
            assert cells == _quoted(b["family"][k], b["holm"][k], b["verdicts"][k]), k
        else:  # its runs are not all in: the README may not give it a figure yet
            assert not b["complete"] and cells[-1] == "no verdict yet (runs under way)", (k, cells)

    c = json.loads((RESULTS / "c.json").read_text())
    c1 = next(v for name, v in c["contrasts"].items() if name.startswith("C1"))
    c2 = c["c2"]["per_seed"]
    holm = stats.holm([c1["p"]] + [r["p_one_sided"] for r in c2])  # C's family, as c_teacher.py adjusts it
    verdict = stats.verdict(c1, holm[0])
    assert rows["C1"][1:] == _quoted(c1, holm[0], verdict)
    rhos = [r["rho"] for r in c2]
    lo, hi = min(r["ci"][0] for r in c2), max(r["ci"][1] for r in c2)
    assert all(r["ci"][1] < 0 for r in c2) and max(holm[1:]) < 1e-80
    assert rows["C2"][1:] == [f"ρ {min(rhos):+.2f} to {max(rhos):+.2f}", f"[{lo:+.3f}, {hi:+.3f}]",
                              "< 1e-80", "< 1e-80", "reproduced in an analogous setting"]
