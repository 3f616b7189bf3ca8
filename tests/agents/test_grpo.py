"""GRPO and RLOO (agents/grpo.py): group advantages and the clipped loss against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from agents.grpo import GRPO, clipped_policy_loss, group_advantages
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config

t = lambda *values: torch.tensor(values, dtype=torch.float64)


def test_group_advantages():
    rewards = t(1.0, 0.0, 0.0, 1.0).view(1, 4)
    assert group_advantages(rewards, "rloo")[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    scaled = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # unbiased std of (1, 0, 0, 1) is sqrt(1/3)
    assert group_advantages(rewards, "grpo")[0].tolist() == pytest.approx([scaled, -scaled, -scaled, scaled])
    assert group_advantages(rewards, "grpo", scale_rewards=False)[0].tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])
    assert group_advantages(t(1.0, 1.0).view(1, 2), "grpo").tolist() == [[0.0, 0.0]]  # no signal, no NaN


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 2, dtype=torch.float64)
    new = torch.log(t(1.5, 0.9)).view(1, 2)  # ratios 1.5 (clipped to 1.2 for A > 0) and 0.9
    mask = torch.ones(1, 2, dtype=torch.float64)
    loss, clipfrac = clipped_policy_loss(new, old, t(1.0), mask, clip_range=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.9) / 2) and clipfrac == 0.5


def test_subset_gradient_norms_vanish_where_rewards_do_not_vary():
    """On relabelled Arithmetic the relabelled prompts' rewards never vary, so their part of the
    policy gradient is exactly 0; the rest's is not (logged per iteration)."""
    from lmgym.pretrain import default_model

    config = small_config(GRPO, default_model(), subset_grad_norms=True, prompts_per_iteration=32, samples_per_prompt=4)
    agent = GRPO(config)
    result = agent.learn(ENV, Budget(max_samples=128), env_kwargs={"relabel": 0.2}, progress=False, test=False)
    logged = agent.train_log[-1]
    assert logged["train/grad_norm[relabelled]"] == 0.0 and logged["train/grad_norm[rest]"] > 0
    assert logged["train/reward_std_zero_share[relabelled]"] == 1.0
    assert result.budget["samples"] == 128


def test_one_step_per_rollout_reuses_the_training_pass_for_the_old_logprobs():
    """With 1 epoch and one minibatch the old log-probs are the training pass's own (detached),
    not a second no-grad pass: the same samples, loss and update as recomputing them, to float
    rounding, one forward pass fewer."""
    from lmgym.pretrain import default_model

    params, passes = {}, {}
    for recompute in (False, True):
        config = small_config(GRPO, default_model(), prompts_per_iteration=16, samples_per_prompt=4, minibatch_size=64,
                              recompute_old_logprobs=recompute)
        agent = GRPO(config)
        calls = []
        original = agent.logprobs
        agent.logprobs = lambda *args, **kwargs: calls.append(torch.is_grad_enabled()) or original(*args, **kwargs)
        agent.learn(ENV, Budget(max_samples=128), progress=False, test=False)
        params[recompute] = torch.cat([p.detach().flatten() for p in agent.policy.parameters()])
        passes[recompute] = calls.count(False)  # no-grad passes (evaluation's go through the generator)
        assert agent.train_log[-1]["losses/clipfrac"] == 0.0  # the ratio is 1: nothing clipped
        assert agent.train_log[-1]["sampler/logprob_mismatch"] < 1e-4  # the sampler's log-probs match the trainer's
    assert torch.allclose(params[False], params[True], atol=1e-6)
    assert passes[True] - passes[False] == 2  # one per iteration (2 iterations of 64 samples)


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
def test_skipping_zero_advantage_rows_gives_the_same_update(aggregation, warm_model_dir):
    """With beta 0 a row whose advantage is 0 adds exactly 0 to the loss's gradient: GRPO runs
    only the other rows through the training passes, divides by the whole minibatch still, and
    reaches the same parameters as running every row (2 minibatches per rollout, 2 epochs: the
    old log-probs come from a no-grad pass over the trained rows)."""
    from tests.agents.conftest import SAME_UPDATE, SAME_UPDATE_TOLERANCE
    from tests.conftest import EASY_ARITHMETIC

    agents, rows = {}, {}
    for skip in (False, True):
        config = small_config(GRPO, warm_model_dir, prompts_per_iteration=16, samples_per_prompt=4, minibatch_size=32,
                              epochs=2, loss_aggregation=aggregation, skip_zero_advantage=skip, **SAME_UPDATE)
        agent = GRPO(config)
        counted = []
        original = agent.logprobs
        agent.logprobs = lambda model, prompts, *args, **kwargs: counted.append(len(prompts)) or original(model, prompts, *args, **kwargs)
        agent.learn(ENV, Budget(max_samples=128), env_kwargs=EASY_ARITHMETIC, progress=False, test=False)
        agents[skip], rows[skip] = agent, sum(counted)
    shares = [log["train/trained_row_share"] for log in agents[True].train_log]
    assert all(share > 0 for share in shares) and min(shares) < 1  # both kinds of group occurred: the test tests something
    assert [log["train/trained_row_share"] for log in agents[False].train_log] == [1.0, 1.0]
    assert rows[True] < rows[False]
    first, second = (torch.cat([p.detach().flatten() for p in agents[skip].policy.parameters()]) for skip in (False, True))
    assert (first - second).abs().max() < SAME_UPDATE_TOLERANCE
    for key in ("losses/policy", "train/reward"):
        assert [log[key] for log in agents[True].train_log] == pytest.approx([log[key] for log in agents[False].train_log], abs=1e-6)
    assert agents[True].optimizer_steps == agents[False].optimizer_steps == 8
    assert agents[True].trained_tokens < agents[False].trained_tokens  # compute is reported as run


def test_a_step_without_a_graph_is_the_step_on_zero_gradients():
    """A minibatch in which no row carries an advantage still takes its optimizer step: on zero
    gradients, exactly as a backward through a loss multiplied by 0 leaves them (AdamW's moments
    decay and move the weights after an earlier real step)."""
    from lmgym.pretrain import default_model

    weights = []
    for graphless in (False, True):
        agent = GRPO(small_config(GRPO, default_model(), lr=1e-2))
        logprobs, mask = agent.logprobs(agent.policy, [[5, 6, 7]] * 2, [[8, 9]] * 2)
        agent.optimizer_step(-(logprobs * mask).sum())  # a real step: AdamW's moments are not 0
        logprobs, mask = agent.logprobs(agent.policy, [[5, 6, 7]] * 2, [[8, 9]] * 2)
        before = torch.cat([p.detach().flatten() for p in agent.policy.parameters()])
        agent.optimizer_step(torch.zeros(()) if graphless else 0.0 * (logprobs * mask).sum())
        weights.append(torch.cat([p.detach().flatten() for p in agent.policy.parameters()]))
        assert not torch.equal(weights[-1], before)  # the zero-gradient step moved the weights (AdamW's momentum)
        assert agent.optimizer_steps == 2
    assert torch.equal(weights[0], weights[1])
