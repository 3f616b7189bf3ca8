"""Each agent end to end for a few updates with the real generator, and checkpoint/resume."""

from __future__ import annotations

import math

import pytest
import torch

from agents import AGENTS, load_agent
from lmgym.rollout import Budget

ENV = "lmgym/Arithmetic-v0"


def small_config(agent_class, model_dir, **overrides):
    # shrunk for tests: 4 prompts x 2 samples per iteration, 20 test problems, short completions
    options = dict(model=str(model_dir), prompts_per_iteration=4, samples_per_prompt=2, eval_problems=20,
                   max_new_tokens=6, eval_every=0, lr=1e-3)
    if agent_class.name == "sft":
        options.update(prompts_per_iteration=8, samples_per_prompt=1)  # one reference per problem
    options.update(overrides)
    return agent_class.Config(**options)


@pytest.mark.parametrize("name", ["sft", "ppo", "exit", "rcrl"])
def test_agent_learns_end_to_end_and_updates_every_parameter(name, warm_model_dir, tmp_path):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, warm_model_dir, warmup_steps=0))
    before = {k: v.clone() for k, v in agent.policy.named_parameters()}
    result = agent.learn(ENV, Budget(max_samples=16), run_dir=tmp_path, env_kwargs=EASY_ARITHMETIC, progress=False)
    per_iteration = agent.config.prompts_per_iteration * agent.config.samples_per_prompt
    assert result.budget["samples"] == 16 and agent.iteration_count == 16 // per_iteration
    assert [row["samples"] for row in result.curve] == [0, result.budget["samples"]]
    assert all(0.0 <= row["test/mean_reward"] <= 1.0 for row in result.curve)
    assert all(math.isfinite(v) for m in agent.train_log for k, v in m.items() if k != "iteration")
    unchanged = [k for k, v in agent.policy.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged, f"parameters that did not train: {unchanged[:5]}"
    assert len(agent.act(["12+34=", "5-7="])) == 2


@pytest.mark.parametrize("position", ["completion", "prompt"])
def test_rcrl_labels_every_sample_where_it_acts(position, tiny_model_dir):
    """The label the agent acts on sits where training put it; each sample is stored once, with
    its own return's label in place of the one it was sampled with."""
    agent_class = load_agent("rcrl")
    agent = agent_class(small_config(agent_class, tiny_model_dir, label_position=position, reward_threshold=0.5))
    agent.learn(ENV, Budget(max_samples=16), progress=False)
    assert len(agent.dataset) == len({(tuple(p), tuple(c)) for p, c, _ in agent.dataset}) <= 16
    for prompt_ids, _, label in agent.dataset:
        assert label in ("G ", "B ")
        text = agent.tokenizer.decode(prompt_ids)
        assert text.endswith("=" + label) if position == "completion" else text.startswith(label) and text.endswith("=")
    acted = agent.prompt_prefix() + "12+34=" + agent.prompt_suffix()
    assert acted == ("12+34=G " if position == "completion" else "G 12+34=")
    with pytest.raises(ValueError, match="label_position"):
        agent_class(small_config(agent_class, tiny_model_dir, label_position="middle"))


def test_an_rcrl_checkpoint_without_labels_is_refused_clearly(tiny_model_dir):
    agent_class = load_agent("rcrl")
    agent = agent_class(small_config(agent_class, tiny_model_dir))
    with pytest.raises(ValueError, match="predates stored labels"):
        agent.load_extra_state({"dataset": [([1, 2], [3])]})
    agent.load_extra_state({"dataset": [([1, 2], [3], "G ")]})
    assert agent.dataset == [([1, 2], [3], "G ")] and agent.seen == {((1, 2), (3,))}


@pytest.mark.parametrize("name", ["sft", "ppo", "exit"])
def test_the_last_iteration_spends_exactly_the_budget(name, warm_model_dir):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, warm_model_dir))  # 8 samples per iteration
    result = agent.learn(ENV, Budget(max_samples=20), env_kwargs=EASY_ARITHMETIC, progress=False)
    assert result.budget["samples"] == 20 and agent.iteration_count == 3


def test_ppo_logs_a_near_zero_sampler_mismatch_when_hf_samples_the_policy(tiny_model_dir):
    agent = load_agent("ppo")(small_config(load_agent("ppo"), tiny_model_dir))
    agent.learn(ENV, Budget(max_samples=8), progress=False)
    assert agent.train_log[0]["sampler/logprob_mismatch"] < 1e-4
    assert agent.train_log[0]["train/kl"] == pytest.approx(0.0, abs=1e-5)  # first batch: policy == reference


def test_base_policy_spends_nothing(tiny_model_dir):
    agent = load_agent("base")(small_config(load_agent("base"), tiny_model_dir))
    result = agent.learn(ENV, Budget(max_samples=100), progress=False)
    assert result.budget["samples"] == 0 and len(result.curve) == 1


@pytest.mark.parametrize("name", ["ppo", "exit", "rcrl"])
def test_interrupted_run_resumes_to_the_same_state(name, tiny_model_dir, tmp_path):
    agent_class = load_agent(name)
    extra = {"reward_threshold": 0.0} if name == "exit" else {}
    config = small_config(agent_class, tiny_model_dir, eval_every=8, **extra)

    straight = agent_class(config)
    straight.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "straight", progress=False)

    interrupted = agent_class(config)
    interrupted.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "resumed", stop_after=2, progress=False)
    assert interrupted.iteration_count == 2
    resumed = agent_class(config)  # a new process would start exactly like this
    result = resumed.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "resumed", progress=False)

    assert resumed.iteration_count == straight.iteration_count == 4
    assert result.curve == straight.curve
    for (key, a), b in zip(straight.policy.state_dict().items(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=key)


def test_checkpoints_are_written_atomically_and_checked(tiny_model_dir, tmp_path):
    agent_class = load_agent("exit")
    agent = agent_class(small_config(agent_class, tiny_model_dir))
    agent.learn(ENV, Budget(max_samples=8), run_dir=tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp files left
    ppo = load_agent("ppo")(small_config(load_agent("ppo"), tiny_model_dir))
    with pytest.raises(ValueError, match="checkpoint of 'exit'"):
        ppo.load(tmp_path / "checkpoint.pt")


def test_registry_and_config_errors(tiny_model_dir):
    assert set(AGENTS) >= {"base", "sft", "ppo", "exit", "rcrl"}
    with pytest.raises(ValueError, match="unknown agent"):
        load_agent("a2c")
    ppo = load_agent("ppo")
    with pytest.raises(TypeError, match="takes a PPOConfig"):
        ppo(load_agent("exit").Config(model=str(tiny_model_dir)))


@pytest.mark.vllm
def test_ppo_with_the_vllm_sampler_keeps_it_in_sync(tiny_model_dir, vllm_generator):
    from transformers import AutoModelForCausalLM

    agent_class = load_agent("ppo")
    agent = agent_class(small_config(agent_class, tiny_model_dir, backend="vllm"), generator=vllm_generator)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    vllm_generator.load_weights(original)
    try:
        agent.learn(ENV, Budget(max_samples=24), progress=False)
        # iterations 2 and 3 sampled from weights synced after updates: the sampler matches the trainer
        assert max(m["sampler/logprob_mismatch"] for m in agent.train_log) < 1e-3
    finally:
        vllm_generator.load_weights(original)
