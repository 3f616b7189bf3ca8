"""lmgym.integrations.trl: lmgym ids as TRL datasets and reward functions, checked against
lmgym's own scoring, and TRL's real GRPOTrainer training on them for a few steps."""

from __future__ import annotations

import functools

import gymnasium as gym
import pytest

import lmgym  # noqa: F401
from lmgym.integrations import scorer
from lmgym.integrations.trl import dataset, reward_function

trl = pytest.importorskip("trl")


@functools.lru_cache(maxsize=None)
def make_env(env_id: str, split: str):
    return gym.make(env_id, split=split)


def env_step(env_id: str, split: str, index: int, completion: str) -> float:
    """lmgym's own reward for a completion: a fresh episode of the env, stepped once."""
    env = make_env(env_id, split)
    env.reset(options={"index": index})
    return env.step(completion)[1]


def test_dataset_columns_hold_no_reference():
    rows = dataset("lmgym/Arithmetic-v0", split="test")
    assert rows.column_names == ["prompt", "lmgym_env", "lmgym_split", "lmgym_index"]
    assert len(rows) == 500 and rows["lmgym_index"] == list(range(500))
    task = scorer("lmgym/Arithmetic-v0").task
    env = gym.make("lmgym/Arithmetic-v0", split="test")
    for i in (0, 17, 499):
        assert rows[i]["prompt"] == env.reset(options={"index": i})[0]  # the env's own prompt
    assert task.problem("test", 0).answer is not None


def test_procedural_split_is_drawn_reproducibly():
    with pytest.raises(ValueError, match="num_problems"):
        dataset("lmgym/TinyCode-v0", split="train")
    a = dataset("lmgym/TinyCode-v0", num_problems=16, seed=3)["lmgym_index"]
    assert a == dataset("lmgym/TinyCode-v0", num_problems=16, seed=3)["lmgym_index"]
    assert a != dataset("lmgym/TinyCode-v0", num_problems=16, seed=4)["lmgym_index"]
    # a finite split asked for more than it has: shuffled epochs, each problem once per epoch
    epochs = dataset("lmgym/Arithmetic-v0", split="validation", num_problems=1000)["lmgym_index"]
    assert sorted(epochs[:500]) == list(range(500)) == sorted(epochs[500:])


def test_conversational_prompts_are_the_tasks_chat_messages():
    rows = dataset("lmgym/TinyCode-v0", split="test", conversational=True)
    messages = rows[0]["prompt"]
    task = scorer("lmgym/TinyCode-v0").task
    assert messages == task.chat_messages(task.problem("test", 0))
    assert messages[0]["role"] == "user" and task.chat_instruction in messages[0]["content"]


def test_rewards_equal_env_step_in_one_scoring_call():
    env_id = "lmgym/TinyCode-v0"
    rows = dataset(env_id, split="validation", num_problems=12, seed=0)
    env = scorer(env_id)
    completions = [env.task.problem("validation", i).solution for i in rows["lmgym_index"]]
    completions[1] = "def broken(:\n    pass"
    completions[2] = "x" * 100_000  # longer than the env accepts: 0 with an error, as env.step
    completions[3] = completions[3].replace("return", "return 1 +", 1)  # a wrong answer
    calls, metrics, extra = env.calls, {}, {}
    reward = reward_function(env_id)
    rewards = reward(prompts=rows["prompt"], completions=completions, lmgym_split=rows["lmgym_split"],
                     lmgym_index=rows["lmgym_index"], lmgym_env=rows["lmgym_env"],
                     log_metric=metrics.__setitem__, log_extra=extra.__setitem__, trainer_state=None)
    assert env.calls == calls + 1  # the whole batch in one call
    expected = [env_step(env_id, "validation", i, c) for i, c in zip(rows["lmgym_index"], completions)]
    assert rewards == expected
    assert rewards[0] == 1.0 and rewards[1] == rewards[2] == rewards[3] == 0.0
    assert "error" in reward.last_infos[2] and reward.last_infos[0]["tests_passed"] == 4
    assert metrics["lmgym_TinyCode_v0/rejected_share"] == pytest.approx(1 / 12)
    assert metrics["lmgym_TinyCode_v0/ground_truth"] == pytest.approx(sum(expected) / 12)
    assert "lmgym_TinyCode_v0/tests_passed" in metrics
    assert len(extra["lmgym_TinyCode_v0_info"]) == 12


def test_conversational_completions_and_other_envs_rows():
    reward = reward_function("lmgym/Arithmetic-v0")
    task = scorer("lmgym/Arithmetic-v0").task
    answer = str(task.problem("test", 5).answer)
    rewards = reward(completions=[[{"role": "assistant", "content": answer}], "nope"],
                     lmgym_split=["test", "test"], lmgym_index=[5, 5], lmgym_env=["lmgym/Arithmetic-v0", "lmgym/Other-v0"])
    assert rewards == [1.0, None]  # another env's row: TRL's "not mine"
    with pytest.raises(ValueError, match="lmgym_split"):
        reward(completions=["1"])


def test_a_learned_reward_model_env_pays_its_proxy_and_logs_the_ground_truth():
    env_id = "lmgym/KeyFacts-RM-v0"
    rows = dataset(env_id, split="validation", num_problems=4)
    env = scorer(env_id)
    completions = [env.task.problem("validation", i).solution for i in rows["lmgym_index"]]
    reward = reward_function(env_id)
    rewards = reward(completions=completions, lmgym_split=rows["lmgym_split"], lmgym_index=rows["lmgym_index"])
    assert rewards == pytest.approx([env_step(env_id, "validation", i, c) for i, c in zip(rows["lmgym_index"], completions)])
    assert all(info["ground_truth"] == 1.0 for info in reward.last_infos)  # reference summaries: every fact
    assert any(r != 1.0 for r in rewards)  # the RM's score, not the ground truth


def train_grpo(env_id: str, model: str, tmp_path, max_completion_length: int):
    """TRL's own GRPOTrainer for 2 steps on an lmgym dataset + reward; returns what it was paid."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from lmgym.hub import resolve

    paid = []
    reward = reward_function(env_id)

    def recorded(**kwargs):  # the lmgym reward as TRL calls it, with what it returned
        rewards = reward(**kwargs)
        paid.extend(zip(kwargs["lmgym_index"], kwargs["completions"], rewards))
        return rewards

    recorded.__name__ = reward.__name__
    path = resolve(model)
    config = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4,
                        max_completion_length=max_completion_length, max_steps=2, learning_rate=1e-5, report_to=[],
                        use_cpu=True, save_strategy="no", bf16=False, logging_steps=1, seed=0, temperature=1.0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                          reward_funcs=recorded, args=config, processing_class=AutoTokenizer.from_pretrained(path),
                          train_dataset=dataset(env_id, num_problems=32, seed=0))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    moved = any(not torch.equal(a, b.detach()) for a, b in zip(before, trainer.model.parameters()))
    return paid, trainer.state.log_history, moved


@pytest.mark.parametrize("env_id, model, length", [("lmgym/Arithmetic-v0", "default", 16),
                                                   ("lmgym/TinyCode-v0", "tinycode-tiny", 64)])
def test_trl_grpo_trainer_trains_on_an_lmgym_env(env_id, model, length, tmp_path):
    paid, logs, moved = train_grpo(env_id, model, tmp_path, length)
    assert len(paid) >= 16 and moved
    for index, completion, reward in paid:  # what TRL optimised is what env.step pays
        assert reward == env_step(env_id, "train", index, completion)
    name = reward_function(env_id).__name__
    assert any(f"{name}/ground_truth" in row for row in logs)  # lmgym's metrics reach TRL's logs
    if env_id == "lmgym/TinyCode-v0":
        assert 0 < sum(r for _, _, r in paid) < len(paid)  # the shipped model solves some, not all
