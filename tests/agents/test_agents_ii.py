"""Agents II: CoPG, DPO, GRPO/RLOO and the joint reward-policy agent: losses against hand
values, the CoPG bandit against its closed-form optimum, and each agent end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from agents import load_agent
from agents.copg import biased_off_policy_pg_loss, copg_loss, group_pairs
from agents.dpo import dpo_loss, ipo_loss, preference_pairs
from agents.grpo import clipped_policy_loss, group_advantages
from agents.joint import RewardEnsemble, choose_queries
from lmgym.envs.bandit import BanditTask
from lmgym.rollout import Budget
from tests.agents.test_agents import ENV, small_config

t = lambda *values: torch.tensor(values, dtype=torch.float64)


class TestLosses:
    def test_copg_by_hand(self):
        # pair 1: (1 - 0) - 0.5 (0.4 - (-0.2)) = 0.7 -> 0.49; pair 2: (0 - 1) - 0.5 (0 - 1) = -0.5 -> 0.25
        loss = copg_loss(t(1.0, 0.0), t(0.0, 1.0), t(0.4, 0.0), t(-0.2, 1.0), beta=0.5)
        assert loss.item() == pytest.approx((0.49 + 0.25) / 2)

    def test_copg_gradient_is_the_contrastive_policy_gradient(self):
        # d/dh(y) of (dR - beta dh)^2 = -2 beta (R_beta(y) - R_beta(y')), R_beta = R - beta h
        h = torch.tensor([0.3, -0.1], requires_grad=True)
        beta = 0.2
        copg_loss(t(2.0), t(1.0), h[:1], h[1:], beta).backward()
        r_beta = np.array([2.0 - beta * 0.3, 1.0 - beta * -0.1])
        assert h.grad[0].item() == pytest.approx(-2 * beta * (r_beta[0] - r_beta[1]))
        assert h.grad[1].item() == pytest.approx(2 * beta * (r_beta[0] - r_beta[1]))

    @pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
    def test_copg_with_preference_rewards_is_ipo(self, beta):
        rng = np.random.default_rng(0)
        h_w, h_l = torch.tensor(rng.normal(size=50)), torch.tensor(rng.normal(size=50))
        quarter = torch.full((50,), 0.25, dtype=torch.float64)
        copg = copg_loss(quarter, -quarter, h_w, h_l, beta)
        assert copg.item() == pytest.approx(beta**2 * ipo_loss(h_w, h_l, tau=beta).item(), rel=1e-12)

    def test_dpo_by_hand(self):
        # beta (h_w - h_l) = 0.1 * 2 = 0.2 -> -log sigmoid(0.2)
        assert dpo_loss(t(1.0), t(-1.0), beta=0.1).item() == pytest.approx(math.log1p(math.exp(-0.2)))
        smoothed = dpo_loss(t(1.0), t(-1.0), beta=0.1, label_smoothing=0.1).item()
        assert smoothed == pytest.approx(0.9 * math.log1p(math.exp(-0.2)) + 0.1 * math.log1p(math.exp(0.2)))

    def test_pairs(self):
        assert group_pairs([3, 2]) == [(0, 1), (0, 2), (1, 2), (3, 4)]
        assert preference_pairs([1.0, 0.0, 1.0, 0.5, 0.5], [3, 2]) == [(0, 1), (2, 1)]

    def test_group_advantages(self):
        rewards = t(1.0, 0.0, 0.0, 1.0).view(1, 4)
        assert group_advantages(rewards, "rloo")[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
        scaled = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # unbiased std of (1, 0, 0, 1) is sqrt(1/3)
        assert group_advantages(rewards, "grpo")[0].tolist() == pytest.approx([scaled, -scaled, -scaled, scaled])
        assert group_advantages(rewards, "grpo", scale_rewards=False)[0].tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])
        assert group_advantages(t(1.0, 1.0).view(1, 2), "grpo").tolist() == [[0.0, 0.0]]  # no signal, no NaN

    def test_clipped_policy_loss_by_hand(self):
        old = torch.zeros(1, 2, dtype=torch.float64)
        new = torch.log(t(1.5, 0.9)).view(1, 2)  # ratios 1.5 (clipped to 1.2 for A > 0) and 0.9
        mask = torch.ones(1, 2, dtype=torch.float64)
        loss, clipfrac = clipped_policy_loss(new, old, t(1.0), mask, clip_range=0.2)
        assert loss.item() == pytest.approx(-(1.2 + 0.9) / 2) and clipfrac == 0.5

    def test_biased_pg_has_no_baseline(self):
        logprobs = torch.log(t(0.5, 0.25)).requires_grad_()
        biased_off_policy_pg_loss(t(1.0, 2.0), t(0.0, 0.0), logprobs, beta=0.5).backward()
        assert logprobs.grad.tolist() == pytest.approx([-0.5, -1.0])

    def test_joint_query_choice(self):
        predictions = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.2], [0.9, 0.9]])
        rng = np.random.default_rng(0)
        assert choose_queries(predictions, 2, 1, "greedy", rng) == [0, 3]  # ties -> first
        picks = {tuple(choose_queries(predictions, 2, 1, "thompson", np.random.default_rng(s))) for s in range(20)}
        assert {p[0] for p in picks} == {0, 1}  # members disagree on group 0: both get asked about
        assert all(p[1] == 3 for p in picks)  # members agree on group 1
        assert sorted(choose_queries(predictions, 2, 2, "uniform", rng)) == [0, 1, 2, 3]

    def test_reward_ensemble_members_differ_through_their_priors(self):
        ensemble = RewardEnsemble(width=8, size=4, prior_scale=1.0, seed=0)
        out = ensemble(torch.randn(5, 8))
        assert out.shape == (5, 4) and out.std(1).min() > 0


class TestBandit:
    """The CoPG paper's bandit: 3 arms, R = (2.5, 2, 1), beta = 0.5, uniform reference; pairs
    y ~ (0.1, 0.2, 0.7), y' ~ (0.05, 0.05, 0.9)."""

    task = BanditTask()

    def test_closed_form_optimum(self):
        np.testing.assert_allclose(self.task.optimal_policy(), [0.705, 0.259, 0.035], atol=1e-3)
        values = [self.task.regularised_value(p) for p in ([1, 0, 0], [1 / 3] * 3, self.task.optimal_policy())]
        assert values[2] > max(values[:2])  # pi* maximises E[R] - beta KL

    def test_env_scores_arms(self):
        import gymnasium as gym

        env = gym.make("lmgym/Bandit-v0")
        prompt, _ = env.reset(seed=0)
        assert prompt == "Choose an arm: A, B or C.\nArm:"
        assert env.step(" B")[1] == 2.0
        env.reset()
        _, reward, _, _, info = env.step("?")
        assert reward == 0.0 and info["error"] == "the completion names no arm"

    def fit(self, loss_fn, steps=3000, lr=0.05):
        """A tabular softmax policy trained by full-batch Adam on 20,000 off-policy pairs."""
        y, y2, r, r2 = self.task.sample_pairs(20_000, seed=0)
        y, y2 = torch.as_tensor(y), torch.as_tensor(y2)
        r, r2 = torch.as_tensor(r), torch.as_tensor(r2)
        log_ref = torch.log(torch.as_tensor(self.task.reference))
        logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            log_pi = torch.log_softmax(logits, 0)
            h = log_pi - log_ref
            loss = loss_fn(y, y2, r, r2, h, log_pi)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return torch.softmax(logits, 0).detach().numpy()

    def test_copg_reaches_the_optimum_from_off_policy_pairs(self):
        beta = self.task.beta
        policy = self.fit(lambda y, y2, r, r2, h, _: copg_loss(r, r2, h[y], h[y2], beta))
        np.testing.assert_allclose(policy, self.task.optimal_policy(), atol=0.01)

    def test_off_policy_pg_without_the_contrastive_baseline_does_not(self):
        beta = self.task.beta
        # both halves of each pair, drawn from the two behaviour policies, no importance weights
        policy = self.fit(lambda y, y2, r, r2, h, log_pi: biased_off_policy_pg_loss(
            torch.cat([r, r2]), torch.cat([h[y], h[y2]]), torch.cat([log_pi[y], log_pi[y2]]), beta))
        assert np.abs(policy - self.task.optimal_policy()).max() > 0.1

    def test_ipo_on_the_same_pairs_does_not(self):
        beta = self.task.beta

        def ipo(y, y2, r, r2, h, _):
            keep = r != r2  # preferences lose the reward's magnitude
            winner = torch.where(r > r2, y, y2)[keep]
            loser = torch.where(r > r2, y2, y)[keep]
            return ipo_loss(h[winner], h[loser], tau=beta)

        policy = self.fit(ipo)
        assert np.abs(policy - self.task.optimal_policy()).max() > 0.05


@pytest.mark.parametrize("name", ["copg", "dpo", "grpo", "rloo", "joint"])
def test_agent_learns_end_to_end_and_updates_every_parameter(name, warm_model_dir, tmp_path):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, warm_model_dir, warmup_steps=0))
    before = {k: v.clone() for k, v in agent.policy.named_parameters()}
    budget = Budget(max_samples=32)
    result = agent.learn(ENV, budget, run_dir=tmp_path, env_kwargs=EASY_ARITHMETIC, progress=False)
    assert result.budget["samples"] == 32
    assert all(0.0 <= row["test/mean_reward"] <= 1.0 for row in result.curve)
    assert all(math.isfinite(v) for m in agent.train_log for k, v in m.items() if isinstance(v, float))
    unchanged = [k for k, v in agent.policy.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged, f"parameters that did not train: {unchanged[:5]}"
    if name == "joint":  # feedback is charged apart from samples: one query per prompt
        assert result.budget["queries"] == 32 // agent.config.samples_per_prompt
    else:
        assert result.budget["queries"] == 32


def test_joint_agent_stops_at_its_feedback_budget(warm_model_dir):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent("joint")
    agent = agent_class(small_config(agent_class, warm_model_dir, exploration="greedy"))
    result = agent.learn(ENV, Budget(max_queries=6), env_kwargs=EASY_ARITHMETIC, progress=False)
    assert result.budget["queries"] == 6 and result.curve[-1]["queries"] == 6
    assert len(agent.labels) == 6


def test_copg_and_dpo_learn_from_a_file(tiny_model_dir, tmp_path):
    scored = tmp_path / "scored.jsonl"
    scored.write_text("\n".join(json.dumps(row) for row in [
        {"prompt": "1+1=", "completion": "2", "reward": 1.0}, {"prompt": "1+1=", "completion": "3", "reward": 0.0},
        {"prompt": "2+2=", "completion": "4", "reward": 1.0}, {"prompt": "2+2=", "completion": "5", "reward": 0.0}]))
    copg = load_agent("copg")(small_config(load_agent("copg"), tiny_model_dir, data="offline", dataset=str(scored)))
    copg.learn(ENV, Budget(max_samples=8), progress=False)
    assert copg.iteration_count == 2 and copg.train_log[0]["train/pairs"] == 2
    preferences = tmp_path / "preferences.jsonl"
    preferences.write_text(json.dumps({"prompt": "1+1=", "chosen": "2", "rejected": "3"}) + "\n")
    dpo = load_agent("dpo")(small_config(load_agent("dpo"), tiny_model_dir, preferences=str(preferences)))
    dpo.learn(ENV, Budget(max_samples=16), progress=False)
    assert dpo.train_log[-1]["train/dataset"] == 4 * 2  # 4 pairs per iteration, 2 iterations, accumulated


def test_offline_copg_samples_from_the_frozen_initial_policy(warm_model_dir):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent("copg")
    agent = agent_class(small_config(agent_class, warm_model_dir, data="offline", warmup_steps=0))
    agent.learn(ENV, Budget(max_samples=16), env_kwargs=EASY_ARITHMETIC, progress=False)
    assert agent.behaviour.model is agent.reference  # the behaviour policy never moves
    assert not all(torch.equal(a, b) for a, b in zip(agent.policy.parameters(), agent.reference.parameters()))


@pytest.mark.parametrize("name", ["copg", "joint"])
def test_interrupted_run_resumes_to_the_same_state(name, tiny_model_dir, tmp_path):
    agent_class = load_agent(name)
    extra = {"data": "replay"} if name == "copg" else {}
    config = small_config(agent_class, tiny_model_dir, eval_every=8, **extra)
    straight = agent_class(config)
    straight.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "straight", progress=False)
    interrupted = agent_class(config)
    interrupted.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "resumed", stop_after=2, progress=False)
    resumed = agent_class(config)
    result = resumed.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "resumed", progress=False)
    assert result.curve == straight.curve
    for (key, a), b in zip(straight.policy.state_dict().items(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=key)
