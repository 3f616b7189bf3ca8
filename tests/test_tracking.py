"""Experiment tracking (lmgym.tracking): report_to="tensorboard" logs every training metric,
every validation evaluation and the final test, read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest

from agents import load_agent
from lmgym.rollout import Budget
from lmgym.tracking import Tracker, parse_report_to
from tests.agents.conftest import ENV, small_config

pytest.importorskip("tensorboard")


def read_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_an_agent_logs_training_evaluation_and_test_to_tensorboard(tiny_model_dir, tmp_path):
    agent_class = load_agent("grpo")
    config = small_config(agent_class, tiny_model_dir, report_to="tensorboard", eval_every=8)
    agent = agent_class(config)
    result = agent.learn(ENV, Budget(max_samples=16), run_dir=tmp_path / "run", progress=False)
    scalars = read_scalars(tmp_path / "run" / "tensorboard")
    # every iteration's training metrics, at the samples generated so far
    train = [row for row in result.curve if "train/reward" in row]
    assert [step for step, _ in scalars["train/reward"]] == [m["samples"] for m in agent.train_log]
    assert [value for _, value in scalars["optimizer_steps"]] == pytest.approx([m["optimizer_steps"] for m in agent.train_log])
    # every validation evaluation on the curve, and the final test
    assert [step for step, _ in scalars["val/ground_truth"]] == [row["samples"] for row in result.curve]
    assert [value for _, value in scalars["val/mean_reward"]] == pytest.approx([row["val/mean_reward"] for row in result.curve])
    assert scalars["test/ground_truth"] == [(16, pytest.approx(result.test["test/ground_truth"]))]
    assert train  # the curve rows carry the iterations' means as well


def test_tracking_is_off_by_default_and_checks_its_backends(tiny_model_dir, tmp_path):
    assert parse_report_to("none") == [] and parse_report_to(None) == []
    assert parse_report_to("tensorboard") == ["tensorboard"]
    with pytest.raises(ValueError, match="unknown"):
        parse_report_to("neptune")
    tracker = Tracker("none", tmp_path / "nothing")
    tracker.log({"a": 1.0}, 0)
    tracker.close()
    assert not (tmp_path / "nothing").exists()
    agent_class = load_agent("sft")
    agent = agent_class(small_config(agent_class, tiny_model_dir))
    agent.learn(ENV, Budget(max_samples=8), run_dir=tmp_path / "run", progress=False, test=False)
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_non_numbers_are_skipped(tmp_path):
    tracker = Tracker("tensorboard", tmp_path / "tb")
    tracker.log({"x": 1.5, "flag": True, "name": "grpo", "nan": float("nan"), "n": 3}, step=5)
    tracker.close()
    assert read_scalars(tmp_path / "tb") == {"x": [(5, 1.5)], "n": [(5, 3.0)]}
