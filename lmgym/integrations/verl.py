"""Any lmgym id in verl: its parquet dataset format and its custom reward function interface.

``lmgym export-verl --env ID --out DIR`` (or :func:`write_parquet`) writes ``DIR/<split>.parquet``
with verl's five fields per row (docs/preparation/prepare_data.rst):

- ``data_source``: the lmgym env id;
- ``prompt``: the task's chat messages (``[{"role": "user", "content": ...}]``; verl's
  ``RLHFDataset`` applies the model's chat template);
- ``ability``: the task family (``math``, ``code``, ``summarization``, ``bandit``);
- ``reward_model``: ``{"style": "rule", "ground_truth": KEY}``; KEY is a JSON string naming
  the env, its kwargs, the split and the index: the reference (an answer, unit tests) stays
  inside lmgym, so the data files hold none and the reward is lmgym's own verifier;
- ``extra_info``: ``{"split", "index"}``.

Then point verl's trainer at this file's scorers (``custom_reward_function.path`` is this
module's file; verl loads it by path, and it imports lmgym absolutely)::

    data.train_files=DIR/train.parquet data.val_files=DIR/validation.parquet
    custom_reward_function.path=<lmgym>/integrations/verl.py
    custom_reward_function.name=compute_score_batch reward_model.reward_manager=batch

:func:`compute_score` has the per-item signature verl's ``naive`` reward manager calls
(``data_source, solution_str, ground_truth, extra_info``); :func:`compute_score_batch` the
batched one of its ``batch`` manager (``data_sources, solution_strs, ground_truths,
extra_infos``), scoring each env's completions in one call (the sandbox's workers in parallel).
Both return dicts with ``score`` (what the env pays) and, for verl's logged extras,
``ground_truth`` and ``rejected`` (1 when the env's completion check refused the text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmgym.integrations import scorer

__all__ = ["compute_score", "compute_score_batch", "problem_key", "write_parquet"]


def problem_key(env_id: str, split: str, index: int, env_kwargs: dict | None = None) -> str:
    """The ``ground_truth`` of a row: which problem it is, not what its answer is."""
    return json.dumps({"lmgym": env_id, "kwargs": env_kwargs or {}, "split": split, "index": int(index)}, sort_keys=True)


def _parse_key(ground_truth: Any, data_source: Any = None) -> dict:
    try:
        key = json.loads(ground_truth)
        if not (isinstance(key, dict) and {"lmgym", "kwargs", "split", "index"} <= set(key)):
            raise ValueError("missing fields")
    except (TypeError, ValueError) as error:
        raise ValueError(f"ground_truth {str(ground_truth)[:80]!r} is not an lmgym problem key (written by "
                         f"lmgym.integrations.verl.write_parquet): {error}") from error
    if data_source is not None and data_source != key["lmgym"]:
        raise ValueError(f"data_source {data_source!r} does not match the key's env {key['lmgym']!r}")
    return key


def write_parquet(env_id: str, out: str | Path, *, splits: Sequence[str] = ("train", "validation", "test"),
                  num_problems: int | dict[str, int] | None = None, seed: int = 0, **env_kwargs: Any) -> dict[str, Path]:
    """Write ``out/<split>.parquet`` for each split (atomically); returns the paths.

    ``num_problems``: problems per split (an int for every split, or per split); a split without
    a number is written whole, which a procedural split (``train`` of Arithmetic, TinyCode,
    KeyFacts) refuses. Problems are drawn as :func:`lmgym.integrations.trl.dataset` draws them.
    """
    from lmgym.integrations.trl import _MAX_WHOLE_SPLIT, dataset
    from lmgym.io import atomic_path

    env = scorer(env_id, **env_kwargs)
    paths = {}
    for split in splits:
        n = num_problems.get(split) if isinstance(num_problems, dict) else num_problems
        if n is not None and n > env.num_problems(split) <= _MAX_WHOLE_SPLIT:
            n = None  # a finite split smaller than asked: all of it, once
        rows = dataset(env_id, split, num_problems=n, seed=seed, conversational=True, **env_kwargs)
        rows = rows.map(lambda row: {
            "data_source": env_id, "ability": env.family,
            "reward_model": {"style": "rule", "ground_truth": problem_key(env_id, split, row["lmgym_index"], env_kwargs)},
            "extra_info": {"split": split, "index": row["lmgym_index"]},
        }, remove_columns=["lmgym_env", "lmgym_split", "lmgym_index"])
        path = Path(out) / f"{split}.parquet"
        with atomic_path(path) as tmp:
            rows.to_parquet(str(tmp))
        paths[split] = path
    return paths


def _score(keys: list[dict], solution_strs: Sequence[str]) -> list[dict]:
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(json.dumps([key["lmgym"], key["kwargs"]], sort_keys=True), []).append(i)
    out: list[dict | None] = [None] * len(keys)
    for members in groups.values():
        first = keys[members[0]]
        results = scorer(first["lmgym"], **first["kwargs"]).score(
            [keys[i]["split"] for i in members], [keys[i]["index"] for i in members], [solution_strs[i] for i in members])
        for i, (reward, info) in zip(members, results):
            out[i] = {"score": float(reward), "ground_truth": float(info["ground_truth"]),
                      "rejected": float("error" in info)}
    return out


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None,
                  **_: Any) -> dict:
    """verl's per-item reward (``reward_model.reward_manager=naive``, the default)."""
    return _score([_parse_key(ground_truth, data_source)], [solution_str])[0]


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[str],
                        extra_infos: Sequence[dict] | None = None, **_: Any) -> list[dict]:
    """verl's batched reward (``reward_model.reward_manager=batch``): one scoring call per env."""
    if not len(data_sources) == len(solution_strs) == len(ground_truths):
        raise ValueError(f"{len(solution_strs)} solutions for {len(ground_truths)} ground truths and "
                         f"{len(data_sources)} data sources")
    return _score([_parse_key(g, d) for g, d in zip(ground_truths, data_sources)], list(solution_strs))
