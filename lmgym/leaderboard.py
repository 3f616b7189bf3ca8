"""The leaderboard: one JSON per submission, validated on the way in, rendered with tabulate.

Layout (``root`` defaults to ``leaderboard/``)::

    leaderboard/submissions/<env id with / as __>/<track>/<agent>-seed<k>-<digest>.json
    leaderboard/README.md          (written by ``render``: one table per env and track)
    leaderboard/<env>__<track>.png

A submission is a result record of ``lmgym bench`` (schema ``lmgym/schemas/result-v1.json``).
``submit`` checks the schema, that the env id is registered at that version, that the budget
fits the track, and that the same result is not there already; file names are built by lmgym
(never taken from the submission), and files are written to a temporary name and renamed, so
nothing already in the leaderboard is changed or lost by a bad submission. ``verify`` re-runs
a cell (cheap on the CPU tracks) and marks the entry verified when the greedy test mean reward
is reproduced within ``tolerance``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from lmgym.io import atomic_path, write_json_atomic

__all__ = ["TRACKS", "render", "submit", "verify"]

# track name -> the most generated samples a submission may have used
TRACKS = {"cpu-20k": 20_000, "100k": 100_000, "1m": 1_000_000}
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


def submit(file: str | os.PathLike, track: str, root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Validate a result file and add it to the leaderboard; returns the entry's path."""
    import gymnasium as gym
    import jsonschema

    import lmgym  # noqa: F401  (registers the ids)
    from lmgym.bench import validate_result

    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}: choose one of {sorted(TRACKS)}")
    result = _load(file)
    try:
        validate_result(result)
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"{file} does not match the result schema at {where}: {error.message}") from error
    env_id = result["env"]["id"]
    if env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}: not registered by this lmgym")
    if result["budget"]["samples"] > TRACKS[track] or result["budget"]["max_samples"] > TRACKS[track]:
        raise ValueError(f"budget {result['budget']['max_samples']} samples exceeds track {track!r} ({TRACKS[track]})")
    digest = _digest(result)
    folder = Path(root) / "submissions" / env_id.replace("/", "__") / track
    if folder.is_dir() and any(p.name.endswith(f"-{digest}.json") for p in folder.iterdir()):
        raise ValueError(f"this result is already on the leaderboard (digest {digest})")
    agent = _SAFE.sub("_", result["agent"]["name"]).strip("._") or "agent"
    path = folder / f"{agent}-seed{int(result['seed'])}-{digest}.json"
    write_json_atomic(path, {**result, "track": track}, overwrite=False)
    return path


def entries(root: str | os.PathLike = DEFAULT_ROOT) -> list[tuple[Path, dict]]:
    folder = Path(root) / "submissions"
    return [(p, json.loads(p.read_text())) for p in sorted(folder.rglob("*.json"))] if folder.is_dir() else []


def render(root: str | os.PathLike = DEFAULT_ROOT) -> Path:
    """Write ``README.md`` (a table per env and track, agents ranked by mean greedy reward over
    seeds with a 95% CI) and one bar plot per table; returns the README's path."""
    from tabulate import tabulate

    from lmgym.metrics import mean_and_ci

    root = Path(root)
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for _, entry in entries(root):
        key = (entry["env"]["id"], entry["track"])
        groups.setdefault(key, {}).setdefault(entry["agent"]["name"], []).append(entry)
    lines = ["# lmgym leaderboard", "",
             "Greedy mean test reward (accuracy on exact-answer tasks), mean ± 95% CI over seeds. "
             "Reproduce a row with the `lmgym bench` command in its entry's config; "
             "`lmgym leaderboard verify ENTRY` re-runs it.", ""]
    for (env_id, track), agents in sorted(groups.items()):
        rows = []
        for agent, runs in agents.items():
            mean, half = mean_and_ci([r["metrics"]["test/mean_reward"] for r in runs])
            k_keys = sorted(k for k in runs[0]["metrics"] if k.startswith("test/pass@") or k.startswith("test/maj@"))
            row = {"agent": agent, "mean reward": f"{mean:.3f} ± {half:.3f}" if len(runs) > 1 else f"{mean:.3f}",
                   "seeds": len(runs), "samples": max(r["budget"]["samples"] for r in runs)}
            for key in k_keys:
                row[key.removeprefix("test/")] = f"{sum(r['metrics'][key] for r in runs) / len(runs):.3f}"
            row["verified"] = f"{sum(bool(r.get('verified')) for r in runs)}/{len(runs)}"
            row["model"] = Path(runs[0]["model"]["name"]).name
            rows.append((mean, row))
        rows.sort(key=lambda item: -item[0])
        lines += [f"## {env_id} — track `{track}` (≤ {TRACKS[track]:,} samples)", "",
                  tabulate([r for _, r in rows], headers="keys", tablefmt="github"), "",
                  f"![{env_id} {track}]({env_id.replace('/', '__')}__{track}.png)", ""]
        _plot(root / f"{env_id.replace('/', '__')}__{track}.png", env_id, track, [(r["agent"], m) for m, r in rows])
    path = root / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def _plot(path: Path, env_id: str, track: str, bars: list[tuple[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(bars)))
    names, values = [b[0] for b in bars][::-1], [b[1] for b in bars][::-1]
    ax.barh(names, values, color="tab:blue")
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.3f}", va="center")
    ax.set_xlim(0, max(1.0, max(values) * 1.15))
    ax.set_xlabel("greedy test mean reward (mean over seeds)")
    ax.set_title(f"{env_id} — {track}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def verify(entry: str | os.PathLike, tolerance: float = 0.02, workdir: str | os.PathLike | None = None) -> dict:
    """Re-run an entry's cell from its recorded config and seed; mark it verified (in place,
    atomically) when the greedy test mean reward matches within ``tolerance``. Returns the
    verification record."""
    import dataclasses
    import datetime

    from lmgym.bench import BenchConfig, run_cell

    entry = Path(entry)
    result = _load(entry)
    agent_config = dict(result["agent"]["config"])
    model = agent_config.pop("model")
    for key in ("seed", "eval_problems", "eval_every"):
        agent_config.pop(key, None)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        config = BenchConfig(
            envs=[result["env"]["id"]], agents=[result["agent"]["name"]], seeds=[result["seed"]],
            samples=result["budget"]["max_samples"], tokens=result["budget"]["max_tokens"], model=model, out=folder,
            eval_problems=int(result["metrics"].get("test/problems", 500)), env_kwargs=result["env"]["kwargs"],
            eval_k=next((int(k.split("@")[1]) for k in result["metrics"] if k.startswith("test/pass@")), 4),
            agent_overrides={result["agent"]["name"]: agent_config},
        )
        rerun = run_cell(dataclasses.replace(config), result["env"]["id"], result["agent"]["name"], result["seed"], progress=False)
    claimed, reproduced = result["metrics"]["test/mean_reward"], rerun["metrics"]["test/mean_reward"]
    # "default" names whatever lmgym's pretraining builds today: a re-run on other weights
    # reproduces nothing, whatever its score
    same_model = rerun["model"]["weights_sha256"] == result["model"]["weights_sha256"]
    record = {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "claimed": claimed, "reproduced": reproduced, "tolerance": tolerance,
              "same_weights": same_model, "ok": same_model and abs(claimed - reproduced) <= tolerance}
    if record["ok"]:
        write_json_atomic(entry, {**result, "verified": record})
    return record
