"""The leaderboard's static web page in a real headless Chromium (Debian's ``chromium``; the
tests skip, saying so, where no browser is installed; CI installs it): it loads with no console
error, its tables hold the entries' numbers, sorting works, each run's config opens, and a
hostile agent name or config string stays text. A screenshot is saved to
``$LMGYM_TEST_ARTIFACTS`` (default ``test-artifacts/``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lmgym import leaderboard

from tests.site_helpers import Browser, find_browser

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ROOT / "leaderboard" / "submissions" / "lmgym__Arithmetic-v0" / "cpu-20k"
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">|**bold**'
HOSTILE_CONFIG = '</script><script>window.__pwned=2</script><b id="injected">x</b>'

BROWSER = find_browser()
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chromium/Chrome installed (Debian: apt-get install "
                                   "chromium); the page test needs a real browser")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A leaderboard with the committed Arithmetic entries plus three hostile ones."""
    root = tmp_path_factory.mktemp("board")
    for path in sorted(ENTRIES.glob("*.json")):
        target = root / "submissions" / "lmgym__Arithmetic-v0" / "cpu-20k" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for seed, path in enumerate(sorted(ENTRIES.glob("grpo-seed*.json"))):
        result = json.loads(path.read_text())
        result.pop("track"), result.pop("verified", None)
        result["agent"]["name"] = HOSTILE_NAME
        result["agent"]["config"]["notes"] = HOSTILE_CONFIG
        result["metrics"]["test/ground_truth"] = 0.123 + seed / 1000
        source = root / f"hostile{seed}.json"
        source.write_text(json.dumps(result))
        leaderboard.submit(source, "cpu-20k", root)
    leaderboard.render(root)
    return root


def test_markdown_escapes_hostile_names(board):
    text = (board / "README.md").read_text()
    assert "<img" not in text and "&lt;img src=x" in text
    assert "\\|**bold**" in text  # a pipe cannot open a new column
    page = (board / "site" / "index.html").read_text()
    assert "</script><script>" not in page and "<img" not in page.split('<script id="data"')[1]


@needs_browser
def test_page_in_headless_chromium(board):
    artifacts = Path(os.environ.get("LMGYM_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    browser = Browser(BROWSER)
    try:
        browser.open((board / "site" / "index.html").as_uri())
        assert browser.evaluate("document.body.dataset.ready") == "true"
        assert browser.errors() == []
        # no markup from a submission ran or was inserted
        assert browser.evaluate("window.__pwned === undefined")
        assert browser.evaluate("document.querySelectorAll('#injected, main img').length") == 0
        agents = browser.evaluate("Array.from(document.querySelectorAll('table.board tbody tr')).map(r => r.dataset.agent)")
        assert HOSTILE_NAME in agents and "base" in agents and len(agents) == 11

        # the tables hold the entries' numbers (the bench's own summary rows)
        from lmgym.bench import summary_rows

        runs = [entry for _, entry in leaderboard.entries(board)]
        expected = {row["agent"]: row for row in summary_rows(runs, "lmgym/Arithmetic-v0")}
        shown = browser.evaluate("""Array.from(document.querySelectorAll('table.board tbody tr')).map(r =>
            [r.dataset.agent, Array.from(r.cells).map(c => c.querySelector('.value') ? c.querySelector('.value').textContent : c.textContent)])""")
        headers = browser.evaluate("Array.from(document.querySelectorAll('table.board thead th')).map(th => th.textContent)")
        for agent, cells in shown:
            row = dict(zip(headers, cells))
            for key in ("test ground truth (95% CI)", "IQM (95% bootstrap CI)", "samples", "opt. steps", "trained tok."):
                assert row[key] == str(expected[agent][key]), (agent, key)
        assert dict(shown)[HOSTILE_NAME][headers.index("test ground truth (95% CI)")].startswith("0.124 [")
        assert "\u2713" in dict(shown)["grpo"][headers.index("verified")]  # the committed verified entry

        # sorting: a click on the score header sorts descending, a second click ascending
        column = headers.index("test ground truth (95% CI)")
        scores = "Array.from(document.querySelectorAll('table.board tbody tr')).map(r => Number(r.dataset.sort_%d))" % column
        browser.evaluate(f"document.querySelectorAll('table.board thead th')[{column}].click()")
        descending = browser.evaluate(scores)
        assert descending == sorted(descending, reverse=True) and descending[-1] == pytest.approx(0.124)
        browser.evaluate(f"document.querySelectorAll('table.board thead th')[{column}].click()")
        ascending = browser.evaluate(scores)
        assert ascending == sorted(ascending) and ascending[0] == pytest.approx(0.124)

        # curves: one line per agent with a curve
        assert browser.evaluate("document.querySelectorAll('svg.curves polyline').length") == 11

        # each run's config one click away, shown as text
        browser.evaluate("""Array.from(document.querySelectorAll('table.board tbody tr'))
            .find(r => r.dataset.agent.startsWith('<img')).querySelector('button.config').click()""")
        assert browser.evaluate("document.getElementById('config-panel').hidden") is False
        body = json.loads(browser.evaluate("document.getElementById('config-body').textContent"))
        assert len(body) == 3 and body[0]["config"]["notes"] == HOSTILE_CONFIG and "lr" in body[0]["config"]
        assert browser.evaluate("document.querySelectorAll('#injected').length") == 0
        browser.screenshot(str(artifacts / "leaderboard-page.png"))
        browser.evaluate("document.getElementById('config-close').click()")
        assert browser.evaluate("document.getElementById('config-panel').hidden") is True
        assert browser.errors() == []
    finally:
        browser.close()
    assert (artifacts / "leaderboard-page.png").stat().st_size > 10_000


@needs_browser
def test_the_committed_leaderboard_page(tmp_path):
    """leaderboard/site as committed (rendered from the shipped entries): every env and track has
    its table, the suite aggregate is there with one row per agent, and nothing errs."""
    root = tmp_path / "board"
    shutil.copytree(ROOT / "leaderboard", root)
    leaderboard.render(root)  # what `lmgym leaderboard render` writes from the committed entries
    assert (root / "site" / "index.html").read_text() == (ROOT / "leaderboard" / "site" / "index.html").read_text()
    groups = {(e["env"]["id"], e["track"]) for _, e in leaderboard.entries(root)}
    browser = Browser(BROWSER)
    try:
        browser.open((root / "site" / "index.html").as_uri())
        assert browser.evaluate("document.body.dataset.ready") == "true" and browser.errors() == []
        shown = browser.evaluate("Array.from(document.querySelectorAll('table.board[data-env]')).map(t => [t.dataset.env, t.dataset.track])")
        assert {tuple(pair) for pair in shown} == groups
        if any(track == "cpu-suite" for _, track in groups):
            agents = browser.evaluate("Array.from(document.querySelectorAll('table.suite-table tbody tr')).map(r => r.dataset.agent)")
            assert set(agents) >= {"base", "sft", "ppo", "exit", "rcrl", "grpo", "rloo", "copg", "dpo", "joint"}
        artifacts = Path(os.environ.get("LMGYM_TEST_ARTIFACTS", ROOT / "test-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        browser.screenshot(str(artifacts / "leaderboard-committed.png"))
    finally:
        browser.close()
