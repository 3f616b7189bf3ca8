"""The leaderboard as a static web page: ``leaderboard/site/index.html`` plus ``assets/``.

No server, no build tool, no CDN: ``index.html`` embeds every entry's numbers as JSON, and
``assets/app.js`` (plain JavaScript, no library) builds the page from them: the suite
aggregate, one sortable table per env and track (mean test score with its 95% interval, drawn
as a bar, verified marks, compute columns), learning curves as inline SVG, and each run's full
config one click away. Open the file in any browser.

Nothing from a submission is ever parsed as markup: the data block is JSON with ``<``, ``>``
and ``&`` written as ``\\u003c``, ``\\u003e``, ``\\u0026`` (so no string can close the
``<script>`` element), and the page puts every value into the document with ``textContent``
(never ``innerHTML``). ``tests/test_site.py`` loads it in headless Chromium with a hostile agent
name and config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmgym.io import atomic_path

__all__ = ["render_site", "site_data"]

ASSETS = Path(__file__).with_name("assets") / "site"


def _number(text) -> float | None:
    """The leading number of a table cell (``"0.709 [0.684, 0.734]"`` -> 0.709), for sorting."""
    try:
        return float(str(text).split()[0].rstrip("%"))
    except (ValueError, IndexError):
        return None


def site_data(groups: dict[tuple[str, str], list[dict]], tracks: dict, suites: list[dict] | None = None) -> dict:
    """Everything the page shows, as plain JSON: per (env, track) the bench's summary rows
    (:func:`lmgym.bench.summary_rows`) with intervals as numbers, verified counts, every run's
    config, score and validation curve; and the suite aggregates."""
    from lmgym.bench import SUMMARY_NOTE, summary_rows
    from lmgym.stats import mean_interval

    tables = []
    for (env_id, track), runs in sorted(groups.items()):
        rows = []
        for row in summary_rows(runs, env_id):
            mine = [r for r in runs if r["agent"]["name"] == row["agent"]]
            interval = mean_interval([r["metrics"]["test/ground_truth"] for r in mine])
            cells = {key: str(value) for key, value in row.items()}
            cells["verified"] = f"{sum(bool(r.get('verified')) for r in mine)}/{len(mine)}"
            rows.append({
                "agent": row["agent"], "cells": cells, "sort": {key: _number(value) for key, value in cells.items()},
                "interval": [interval.point, interval.low, interval.high],
                "runs": [{"seed": r["seed"], "test": r["metrics"]["test/ground_truth"],
                          "verified": bool(r.get("verified")), "agent_class": r["agent"].get("class"),
                          "config": r["agent"]["config"], "budget": r["budget"], "model": r["model"],
                          "env_kwargs": r["env"].get("kwargs", {}), "git_commit": r.get("git_commit"),
                          "curve": [[p.get("samples", 0), p.get("val/ground_truth")] for p in r.get("curve", [])]}
                         for r in sorted(mine, key=lambda r: r["seed"])]})
        tables.append({"env": env_id, "track": track, "limits": tracks.get(track, {}),
                       "columns": list(rows[0]["cells"]) if rows else [], "rows": rows})
    return {"title": "lmgym leaderboard", "note": SUMMARY_NOTE, "tables": tables, "suites": suites or []}


def _embed(data: dict) -> str:
    text = json.dumps(data, sort_keys=True, default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_site(data: dict, out: str | Path) -> Path:
    """Write ``out/index.html`` and ``out/assets/`` (atomically, file by file); returns the page."""
    out = Path(out)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    for name in ("app.js", "style.css"):
        with atomic_path(out / "assets" / name) as tmp:
            shutil.copyfile(ASSETS / name, tmp)
    page = (ASSETS / "index.html").read_text().replace("__DATA__", _embed(data))
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out / "index.html"
