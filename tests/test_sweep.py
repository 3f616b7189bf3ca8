"""lmgym sweep: Optuna trials on the validation split, every trial recorded, resumable; and the
built-in agents' defaults are the best parameters of the committed sweeps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from agents import load_agent, registered_agents
from lmgym.sweep import SweepConfig, sweep_agent
from tests.conftest import EASY_ARITHMETIC

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps" / "lmgym__Arithmetic-v0"


def test_a_sweep_records_every_trial_and_resumes(warm_model_dir, tmp_path):
    config = SweepConfig(agents=["grpo"], trials=2, samples=16, eval_problems=5, eval_every=8, model=str(warm_model_dir),
                         out=str(tmp_path), env_kwargs=EASY_ARITHMETIC)
    record = sweep_agent(config, "grpo", progress=False)
    assert len(record["trials"]) == 2 and record["best"]["validation"] == max(t["validation"] for t in record["trials"])
    for trial in record["trials"]:
        assert set(trial["params"]) == {"lr", "beta", "epochs"} and trial["compute"]["optimizer_steps"] >= 1
        assert all(set(row) == {"samples", "val/mean_reward", "val/ground_truth"} for row in trial["curve"])
    path = tmp_path / "lmgym__Arithmetic-v0" / "grpo.json"
    assert json.loads(path.read_text()) == record
    again = sweep_agent(dataclasses.replace(config, trials=3), "grpo", progress=False)  # resumes: one more trial
    assert [t["params"] for t in again["trials"][:2]] == [t["params"] for t in record["trials"]]
    assert len(again["trials"]) == 3


def test_an_agent_without_a_search_space_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="declares no search_space"):
        sweep_agent(SweepConfig(agents=["base"], out=str(tmp_path)), "base")


@pytest.mark.parametrize("name", sorted(set(registered_agents()) - {"base"}))
def test_built_in_defaults_are_the_best_of_their_committed_sweep(name):
    agent_class = load_agent(name)
    record = json.loads((SWEEPS / f"{name}.json").read_text())
    assert len(record["trials"]) == record["trials_planned"] == 8  # the same effort for every agent
    assert set(record["search_space"]) == set(agent_class.search_space) and len(agent_class.search_space) == 3
    defaults = agent_class.Config()
    for field, value in record["best"]["params"].items():
        assert getattr(defaults, field) == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), field
