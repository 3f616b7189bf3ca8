"""``lmgym reproduce NAME``: the seed papers' findings (../shared/PAPERS.md) as experiments with a
claim stated before the run, a declared measurement and test, and a verdict ("reproduced", "not
reproduced" or "inconclusive") computed from the numbers, never edited after them.

Each reproduction is a module with ``CLAIMS`` (the declared claims and tests, printed into the
report before any number) and ``run(out, quick, progress) -> dict``; its cells are ordinary
``lmgym bench`` cells under ``out/runs/`` (so an interrupted run resumes and finished cells are
skipped), its choices are made on the validation split and recorded in ``out/tuning.json``, and
it writes ``out/report.md``, plots and ``out/summary.json``. ``--quick`` runs the same code at a
tiny scale for tests; its verdicts mean nothing and the report says so.
"""

from __future__ import annotations

import importlib

REPRODUCTIONS = {
    "razin": "lmgym.reproduce.razin",  # vanishing gradients (Razin et al., ICLR 2024)
}


def load(name: str):
    if name not in REPRODUCTIONS:
        raise ValueError(f"unknown reproduction {name!r}: choose one of {sorted(REPRODUCTIONS)}")
    return importlib.import_module(REPRODUCTIONS[name])


def verdict(holds: bool | None) -> str:
    """A claim's verdict from its declared test: True, False, or None (the test could not decide)."""
    return {True: "reproduced", False: "not reproduced", None: "inconclusive"}[holds]
