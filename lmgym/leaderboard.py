"""The leaderboard: one JSON per submission, validated on the way in, rendered with tabulate.

Layout (``root`` defaults to ``leaderboard/``)::

    leaderboard/submissions/<env id with / as __>/<track>/<agent>-seed<k>-<digest>.json
    leaderboard/README.md          (written by ``render``: one table per env and track)
    leaderboard/<env>__<track>.png

A submission is a result record of ``lmgym bench`` (schema ``lmgym/schemas/result-v2.json``).
``submit`` checks the schema, that the env id is registered at that version, that the budget
(samples, and trained tokens where the track caps them) fits the track, and that the same
result is not there already; file names are built by lmgym (never taken from the submission),
and files are written to a temporary name and renamed, so nothing already in the leaderboard
is changed or lost by a bad submission. ``render`` builds the tables with the bench's own
statistics (:func:`lmgym.bench.summary_rows`: test ground truth of the validation-chosen
checkpoint, mean with a 95% t interval over seeds, ranks only where intervals separate and only
with >= 3 seeds, compute columns). ``verify`` re-runs a cell (cheap on the CPU tracks) and marks
the entry verified when the test ground truth is reproduced within ``tolerance`` on the same
weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from lmgym.io import atomic_path, write_json_atomic

__all__ = ["TRACKS", "check", "entry_path", "render", "submit", "validate_entry", "verify"]

# track name -> the most a submission may have spent: generated samples, and trained (completion)
# tokens where the track caps training compute (None: uncapped)
TRACKS = {
    "cpu-20k": {"samples": 20_000, "trained_tokens": 150_000},
    "100k": {"samples": 100_000, "trained_tokens": None},
    "1m": {"samples": 1_000_000, "trained_tokens": None},
    # `lmgym bench --suite cpu`: each env's own budget (lmgym.suite.SUITES["cpu"]); only its envs
    "cpu-suite": {"suite": "cpu"},
}


def track_limits(track: str, env_id: str) -> dict:
    """``{"samples": ..., "trained_tokens": ...}`` that a result on ``env_id`` may spend on
    ``track``; a suite track has one budget per env and takes only its envs."""
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: choose one of {sorted(TRACKS)}")
    limits = TRACKS[track]
    if "suite" not in limits:
        return limits
    from lmgym.suite import SUITES

    for suite_env in SUITES[limits["suite"]]:
        if suite_env.env == env_id:
            return {"samples": suite_env.samples, "trained_tokens": suite_env.trained_tokens,
                    "env_kwargs": suite_env.env_kwargs, "model": suite_env.model}
    raise ValueError(f"track {track!r} is suite {limits['suite']!r}, which has no env {env_id!r}")
DEFAULT_ROOT = Path("leaderboard")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _digest(result: dict) -> str:
    """Identity of a result: what was run and what it scored (not when or where)."""
    key = {k: result[k] for k in ("env", "agent", "seed", "budget", "model", "metrics")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _load(path: str | os.PathLike) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (one result record)")
    return data


def validate_entry(result: dict, track: str, where: str = "the result") -> None:
    """Everything :func:`submit` and :func:`check` require of a result on ``track``: the result
    schema, an env id registered at that version, the track's budget (samples, trained tokens)
    and, on a suite track, the env's kwargs and shipped model. Raises ``ValueError``."""
    import gymnasium as gym
    import jsonschema

    import lmgym  # noqa: F401  (registers the ids)
    from lmgym.bench import validate_result

    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: choose one of {sorted(TRACKS)}")
    try:
        validate_result(result)
    except jsonschema.ValidationError as error:
        at = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"{where} does not match the result schema at {at}: {error.message}") from error
    env_id = result["env"]["id"]
    if env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}: not registered by this lmgym")
    limits = track_limits(track, env_id)
    if "env_kwargs" in limits and result["env"]["kwargs"] != limits["env_kwargs"]:
        raise ValueError(f"track {track!r} runs {env_id} with kwargs {limits['env_kwargs']}, not {result['env']['kwargs']}")
    if "model" in limits:  # a suite track: every agent starts from the env's shipped model
        from lmgym.pretrain import SHIPPED

        expected = SHIPPED[limits["model"]][1]
        if result["model"]["weights_sha256"] != expected:
            raise ValueError(f"track {track!r} starts {env_id} from the shipped model {limits['model']!r} "
                             f"(SHA-256 {expected[:12]}…), not weights {str(result['model']['weights_sha256'])[:12]}…")
    if result["budget"]["samples"] > limits["samples"] or result["budget"]["max_samples"] > limits["samples"]:
        raise ValueError(f"budget {result['budget']['max_samples']} samples exceeds track {track!r} ({limits['samples']})")
    cap = limits["trained_tokens"]
    if cap is not None and (result["budget"].get("max_trained_tokens") or float("inf")) > cap:
        raise ValueError(f"track {track!r} caps trained tokens at {cap}: run with --trained-tokens {cap}")


def entry_path(result: dict, track: str) -> Path:
    """Where an entry lives, relative to the leaderboard root: built by lmgym from the result
    (env, track, agent, seed and the digest of what was run and scored), never taken from it."""
    agent = _SAFE.sub("_", result["agent"]["name"]).strip("._") or "agent"
    return (Path("submissions") / result["env"]["id"].replace("/", "__") / track
            / f"{agent}-seed{int(result['seed'])}-{_digest(result)}.json")


def submit(file: str | os.PathLike, track: str, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Validate a result file and add it to the leaderboard; returns the entry's path."""
    result = _load(file)
    validate_entry(result, track, str(file))
    path = Path(root) / entry_path(result, track)
    digest = _digest(result)
    if path.parent.is_dir() and any(p.name.endswith(f"-{digest}.json") for p in path.parent.iterdir()):
        raise ValueError(f"this result is already on the leaderboard (digest {digest})")
    write_json_atomic(path, {**result, "track": track}, overwrite=False)
    return path


def entries(root: str | os.PathLike = DEFAULT_ROOT) -> list[tuple[Path, dict]]:
    folder = Path(root) / "submissions"
    return [(p, json.loads(p.read_text())) for p in sorted(folder.rglob("*.json"))] if folder.is_dir() else []


def render(root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Write ``README.md`` (a table per env and track, from :func:`lmgym.bench.summary_rows`,
    with each agent's verified count) and one plot per table (test score with its interval);
    returns the README's path."""
    from tabulate import tabulate

    from lmgym.bench import SUMMARY_NOTE, summary_rows

    root = Path(root)
    groups: dict[tuple[str, str], list[dict]] = {}
    for _, entry in entries(root):
        groups.setdefault((entry["env"]["id"], entry["track"]), []).append(entry)
    suites = suite_sections(groups)
    lines = ["# lmgym leaderboard", "", SUMMARY_NOTE, "",
             "Reproduce a row with the `lmgym bench` command in its entries' config; "
             "`lmgym leaderboard verify ENTRY` re-runs one and marks it verified.", ""]
    for suite in suites:
        lines += [f"## Suite `{suite['name']}`", "", suite["markdown"], ""]
    for (env_id, track), runs in sorted(groups.items()):
        rows = summary_rows(runs, env_id)
        for row in rows:
            mine = [r for r in runs if r["agent"]["name"] == row["agent"]]
            row["verified"] = f"{sum(bool(r.get('verified')) for r in mine)}/{len(mine)}"
        limits = track_limits(track, env_id)
        cap = f", ≤ {limits['trained_tokens']:,} trained tokens" if limits["trained_tokens"] else ""
        shown = [{key: _markdown_cell(value) for key, value in row.items()} for row in rows]
        lines += [f"## {env_id} — track `{track}` (≤ {limits['samples']:,} samples{cap})", "",
                  tabulate(shown, headers="keys", tablefmt="github"), "",
                  f"![{env_id} {track}]({env_id.replace('/', '__')}__{track}.png)", ""]
        _plot(root / f"{env_id.replace('/', '__')}__{track}.png", env_id, track, runs, [row["agent"] for row in rows])
    lines += ["The same tables as a web page (sortable, with curves and every run's config): "
              "[site/index.html](site/index.html)", ""]
    from lmgym.site import render_site, site_data

    render_site(site_data(groups, {t: track_limits(t, e) for e, t in groups}, suites), root / "site")
    path = root / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def _markdown_cell(value) -> str:
    """A table cell that cannot carry markup into the rendered README (a hostile agent name)."""
    import html

    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def suite_sections(groups: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """The suite aggregate of each suite track whose envs all have entries (base included)."""
    from lmgym.suite import SUITES, SUITE_NOTE, aggregate, missing_envs, present_envs

    out = []
    for track, limits in TRACKS.items():
        if "suite" not in limits:
            continue
        name = limits["suite"]
        results = {e.slug: groups.get((e.env, track), []) for e in SUITES[name]}
        present = present_envs(name, results)
        if not present:
            continue
        rows = aggregate(name, results)
        missing = missing_envs(name, results)
        note = SUITE_NOTE + (f" PARTIAL: no entries yet for {', '.join(missing)}; the aggregate covers the other envs only."
                             if missing else "")
        slugs = {e.slug: e.env.removeprefix("lmgym/") for e in SUITES[name] if e.slug in present}
        cells = [{"agent": r["agent"], "runs": str(r["runs"]),
                  "IQM (95% CI)": r["IQM (95% CI)"].format(), "mean (95% CI)": r["mean (95% CI)"].format(),
                  **{slugs[s]: f"{r[s]:+.3f}" for s in slugs}} for r in rows]
        from tabulate import tabulate

        from lmgym.site import _number

        out.append({"name": name, "track": track, "note": note, "missing": missing, "columns": list(cells[0]) if cells else [],
                    "rows": [{"agent": c["agent"], "cells": c, "sort": {k: _number(v) for k, v in c.items()}} for c in cells],
                    "markdown": tabulate([{k: _markdown_cell(v) for k, v in c.items()} for c in cells], headers="keys",
                                         tablefmt="github") + "\n\n" + note})
    return out


def _plot(path: Path, env_id: str, track: str, runs: list[dict], agents: list[str]) -> None:
    """Horizontal bars, in table order: each agent's mean test ground truth with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmgym.stats import mean_interval

    scores = {agent: [r["metrics"]["test/ground_truth"] for r in runs if r["agent"]["name"] == agent] for agent in agents}
    intervals = [mean_interval(scores[agent]) for agent in agents][::-1]
    names = [f"{agent} ({len(scores[agent])})" for agent in agents][::-1]
    means = [iv.point for iv in intervals]
    errors = [[iv.point - iv.low for iv in intervals], [iv.high - iv.point for iv in intervals]]
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(agents)))
    ax.barh(names, means, xerr=errors, color="tab:blue", alpha=0.8, capsize=3)
    for y, value in enumerate(means):
        ax.text(value, y + 0.25, f" {value:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(means) * 1.15))
    ax.set_xlabel("test ground truth, greedy (mean over seeds, 95% t interval); (seeds)")
    ax.set_title(f"{env_id} — {track}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def verify(entry: str | os.PathLike, tolerance: float = 0.02, workdir: str | os.PathLike | None = None) -> dict:
    """Re-run an entry's cell from its recorded config and seed; mark it verified (in place,
    atomically) when it ran on the same weights and its test ground truth matches within
    ``tolerance``. Returns the verification record."""
    import dataclasses
    import datetime

    from lmgym.bench import BenchConfig, run_cell

    from lmgym.bench import validate_result

    entry = Path(entry)
    result = _load(entry)
    try:
        validate_result(result)
    except Exception as error:  # e.g. a result-v1 record: made under another protocol
        raise ValueError(f"{entry} is not a result-v2 record, so it cannot be re-run: {error}") from error
    agent_config = dict(result["agent"]["config"])
    model = agent_config.pop("model")
    evaluation = {key: agent_config.pop(key) for key in ("eval_problems", "eval_k", "test_problems")}
    for key in ("seed", "eval_every"):
        agent_config.pop(key, None)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        config = BenchConfig(
            envs=[result["env"]["id"]], agents=[result["agent"]["name"]], seeds=[result["seed"]],
            samples=result["budget"]["max_samples"], tokens=result["budget"]["max_tokens"],
            trained_tokens=result["budget"]["max_trained_tokens"], model=model, out=folder,
            env_kwargs=result["env"]["kwargs"], agent_overrides={result["agent"]["name"]: agent_config}, **evaluation,
        )
        rerun = run_cell(dataclasses.replace(config), result["env"]["id"], result["agent"]["name"], result["seed"], progress=False)
    claimed, reproduced = result["metrics"]["test/ground_truth"], rerun["metrics"]["test/ground_truth"]
    # a re-run on other weights reproduces nothing, whatever its score
    same_model = rerun["model"]["weights_sha256"] == result["model"]["weights_sha256"]
    record = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "claimed": claimed, "reproduced": reproduced, "tolerance": tolerance,
              "same_weights": same_model, "ok": same_model and abs(claimed - reproduced) <= tolerance}
    if record["ok"]:
        write_json_atomic(entry, {**result, "verified": record})
    return record


# --- checking a proposed change (a pull request) ------------------------------------------

MAX_ENTRY_BYTES = 512 * 1024  # a result record is ~10-60 kB; anything far bigger is not one
MAX_NEW_ENTRIES = 400
CHEAP_TRACKS = ("cpu-20k", "cpu-suite")  # cells that re-run in minutes on 2 CPU cores


def _git(repo: str | os.PathLike, *args: str) -> bytes:
    import subprocess

    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if done.returncode != 0:
        raise ValueError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _changes(repo, base: str, head: str) -> list[tuple[str, str, str, str]]:
    """``(status, new mode, new blob, path)`` of every path ``head`` changes since its merge
    base with ``base`` (renames and copies as deletions plus additions)."""
    merge_base = _git(repo, "merge-base", base, head).decode().strip()
    raw = _git(repo, "diff", "--raw", "--no-renames", "--no-abbrev", "-z", merge_base, head)
    fields, changes = raw.split(b"\0"), []
    for i in range(0, len(fields) - 1, 2):
        meta, path = fields[i].decode(), fields[i + 1].decode(errors="replace")
        _, new_mode, _, new_blob, status = meta.lstrip(":").split(" ")
        changes.append((status[0], new_mode, new_blob, path))
    return changes


def check(base: str, head: str, repo: str | os.PathLike = ".", root: str = "leaderboard", rerun: bool = True,
          max_rerun: int = 4, tolerance: float = 0.02, workdir: str | os.PathLike | None = None) -> dict:
    """Validate exactly what ``head`` adds to the leaderboard since it left ``base`` (a pull
    request's change), reading every file from git's objects, never from a working tree.

    Refused: any change that is not a new file under ``<root>/submissions/`` (edits, deletions,
    renames of existing entries, files elsewhere, links, executables), a file over
    ``MAX_ENTRY_BYTES``, more than ``MAX_NEW_ENTRIES`` files, and any new file that is not what
    :func:`submit` would have written: valid JSON, the result schema, a registered env id, the
    track's budget and model, the path lmgym builds from its content (so the digest in the name
    is the content's), a result not already on ``base``, and no ``verified`` record (only a
    re-run writes one). Then up to ``max_rerun`` new entries on the CPU tracks whose agent is
    built in are re-run (:func:`verify`) and must reproduce their claimed test score within
    ``tolerance``. Returns ``{"ok", "problems", "entries"}``; ``ok`` only if nothing was refused.
    """
    from agents import AGENTS
    from lmgym.pretrain import SHIPPED

    problems: list[str] = []
    prefix = f"{root.strip('/')}/submissions/"
    changes = _changes(repo, base, head)
    existing = {Path(p).stem.rsplit("-", 1)[-1] for p in _git(repo, "ls-tree", "-r", "--name-only", base, "--",
                                                                prefix).decode().splitlines()}  # digests
    added = []
    for status, mode, blob, path in changes:
        if not path.startswith(prefix):
            problems.append(f"{path}: outside {prefix} (a submission adds result files there and nothing else)")
        elif status != "A":
            problems.append(f"{path}: {'deletes' if status == 'D' else 'changes'} an existing entry (entries are "
                            "never edited or removed by a submission)")
        elif mode != "100644":
            problems.append(f"{path}: mode {mode} (a link, executable or submodule), not a plain file")
        else:
            added.append((blob, path))
    if len(added) > MAX_NEW_ENTRIES:
        problems.append(f"{len(added)} new files: at most {MAX_NEW_ENTRIES} per submission")
        added = []
    report = []
    for blob, path in added:
        entry = {"path": path, "ok": False, "rerun": None, "blob": blob}
        report.append(entry)
        size = int(_git(repo, "cat-file", "-s", blob))
        try:
            if size > MAX_ENTRY_BYTES:
                raise ValueError(f"{size:,} bytes: over the {MAX_ENTRY_BYTES:,}-byte limit of a result record")
            try:
                result = json.loads(_git(repo, "cat-file", "blob", blob).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"not a JSON file: {error}") from error
            if not isinstance(result, dict):
                raise ValueError("must hold a JSON object (one result record)")
            if "verified" in result:
                raise ValueError("carries a 'verified' record: only a re-run writes one")
            parts = Path(path).relative_to(root.strip("/")).parts
            if len(parts) != 4:
                raise ValueError("not at submissions/<env>/<track>/<entry>.json")
            track = parts[2]
            if result.get("track") != track:
                raise ValueError(f"its track {result.get('track')!r} is not its folder's {track!r}")
            validate_entry(result, track, path)
            expected = (Path(root.strip("/")) / entry_path(result, track)).as_posix()
            if path != expected:
                raise ValueError(f"lmgym names this entry {expected} (env, track, agent, seed, digest of its content)")
            digest = _digest(result)
            if digest in existing:
                raise ValueError(f"this result is already on the leaderboard (digest {digest})")
            existing.add(digest)
            entry["ok"] = True
            # re-run only built-in agents from a shipped model (nothing a submission names is loaded)
            entry["cheap"] = (track in CHEAP_TRACKS and result["agent"]["name"] in AGENTS
                              and result["agent"]["config"].get("model") in SHIPPED)
        except ValueError as error:
            entry["problem"] = str(error)
            problems.append(f"{path}: {error}")
    if rerun:
        for entry in [e for e in report if e["ok"] and e["cheap"]][:max_rerun]:
            with tempfile.TemporaryDirectory(dir=workdir) as folder:
                copy = Path(folder) / Path(entry["path"]).name
                copy.write_bytes(_git(repo, "cat-file", "blob", entry["blob"]))
                try:
                    record = verify(copy, tolerance=tolerance, workdir=folder)
                except Exception as error:  # a cell that cannot even run does not reproduce
                    record = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            entry["rerun"] = record
            if not record["ok"]:
                entry["ok"] = False
                why = record.get("error") or (f"claimed test score {record['claimed']:.4f}, re-run "
                                              f"{record['reproduced']:.4f} (tolerance {tolerance})"
                                              + ("" if record["same_weights"] else ", other weights"))
                problems.append(f"{entry['path']}: does not reproduce: {why}")
    return {"ok": not problems, "problems": problems, "entries": report}
