"""CoPG (agents/copg.py): the loss against hand values and its gradient, its IPO special case, the
CoPG paper's bandit against its closed-form optimum (and the biased baselines that miss it),
off-policy data from the frozen initial policy or a file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents import load_agent
from agents.copg import biased_off_policy_pg_loss, copg_loss
from agents.core import group_pairs, random_pairs
from agents.dpo import bradley_terry_pairs, ipo_loss, preference_pairs
from lmgym.envs.bandit import BanditTask
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config

t = lambda *values: torch.tensor(values, dtype=torch.float64)


def test_copg_by_hand():
    # pair 1: (1 - 0) - 0.5 (0.4 - (-0.2)) = 0.7 -> 0.49; pair 2: (0 - 1) - 0.5 (0 - 1) = -0.5 -> 0.25
    loss = copg_loss(t(1.0, 0.0), t(0.0, 1.0), t(0.4, 0.0), t(-0.2, 1.0), beta=0.5)
    assert loss.item() == pytest.approx((0.49 + 0.25) / 2)


def test_copg_gradient_is_the_contrastive_policy_gradient():
    # d/dh(y) of (dR - beta dh)^2 = -2 beta (R_beta(y) - R_beta(y')), R_beta = R - beta h
    h = torch.tensor([0.3, -0.1], requires_grad=True)
    beta = 0.2
    copg_loss(t(2.0), t(1.0), h[:1], h[1:], beta).backward()
    r_beta = np.array([2.0 - beta * 0.3, 1.0 - beta * -0.1])
    assert h.grad[0].item() == pytest.approx(-2 * beta * (r_beta[0] - r_beta[1]))
    assert h.grad[1].item() == pytest.approx(2 * beta * (r_beta[0] - r_beta[1]))


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_copg_with_preference_rewards_is_ipo(beta):
    rng = np.random.default_rng(0)
    h_w, h_l = torch.tensor(rng.normal(size=50)), torch.tensor(rng.normal(size=50))
    quarter = torch.full((50,), 0.25, dtype=torch.float64)
    copg = copg_loss(quarter, -quarter, h_w, h_l, beta)
    assert copg.item() == pytest.approx(beta**2 * ipo_loss(h_w, h_l, tau=beta).item(), rel=1e-12)


def test_pairs():
    assert group_pairs([3, 2]) == [(0, 1), (0, 2), (1, 2), (3, 4)]
    assert preference_pairs([1.0, 0.0, 1.0, 0.5, 0.5], [3, 2]) == [(0, 1), (2, 1)]


def test_random_pairs_are_disjoint_within_groups_and_linear_in_size():
    rng = np.random.default_rng(0)
    pairs = random_pairs([5, 4], rng)
    assert len(pairs) == 2 + 2
    used = [i for pair in pairs for i in pair]
    assert len(used) == len(set(used))  # each sample in at most one pair
    assert all((i < 5) == (j < 5) for i, j in pairs)  # never across groups
    big = random_pairs([10_000], rng, limit=64)  # one prompt's huge group: 64 pairs, not 5e7
    assert len(big) == 64 and len({i for pair in big for i in pair}) == 128
    assert random_pairs([1, 1], rng) == []


def test_bradley_terry_labels_follow_the_reward_gap():
    rng = np.random.default_rng(0)
    rewards = [1.0, 0.0] * 5000
    pairs = bradley_terry_pairs(rewards, [(i, i + 1) for i in range(0, 10_000, 2)], rng)
    first_chosen = np.mean([w % 2 == 0 for w, _ in pairs])
    assert first_chosen == pytest.approx(1 / (1 + np.exp(-1.0)), abs=0.02)  # sigmoid(1) = 0.731
    ties = bradley_terry_pairs([0.5] * 2000, [(i, i + 1) for i in range(0, 2000, 2)], rng)
    assert np.mean([w < l for w, l in ties]) == pytest.approx(0.5, abs=0.05)


def test_one_prompt_dataset_with_random_pairing(tiny_model_dir, tmp_path):
    """The paper's bandit as a file: one prompt, many scored samples. "all" pairing would
    contrast every sample with every other; "random" takes disjoint pairs, capped."""
    scored = tmp_path / "bandit.jsonl"
    rng = np.random.default_rng(0)
    arms = rng.choice(3, size=400, p=(0.1, 0.2, 0.7))
    scored.write_text("\n".join(json.dumps({"prompt": "Arm:", "completion": " " + "ABC"[a], "reward": (2.5, 2.0, 1.0)[a]})
                                for a in arms))
    agent_class = load_agent("copg")
    agent = agent_class(small_config(agent_class, tiny_model_dir, data="offline", dataset=str(scored),
                                     pairing="random", pairs_per_update=16))
    agent.learn(ENV, Budget(max_samples=800), progress=False)
    assert all(row["train/pairs"] == 16 for row in agent.train_log)


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_uncorrected_pg_runs_on_the_same_data(warm_model_dir, baseline):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent("copg")
    agent = agent_class(small_config(agent_class, warm_model_dir, loss="pg", pg_baseline=baseline, pairing="random"))
    agent.learn(ENV, Budget(max_samples=16), env_kwargs=EASY_ARITHMETIC, progress=False)
    assert agent.optimizer_steps >= 1 and np.isfinite(agent.train_log[-1]["losses/copg"])
    contrast = agent_class(small_config(agent_class, warm_model_dir, pairing="random"))  # same seed, same samples
    contrast.learn(ENV, Budget(max_samples=16), env_kwargs=EASY_ARITHMETIC, progress=False)
    first, other = agent.train_log[0], contrast.train_log[0]
    assert first["train/reward"] == other["train/reward"] and first["train/reward"] > 0  # rewards to weigh
    assert first["losses/copg"] != pytest.approx(other["losses/copg"])  # the policy-gradient loss ran, not CoPG's
    with pytest.raises(ValueError, match="loss must be"):
        agent_class.Config(loss="ipo")
    with pytest.raises(ValueError, match="pg_baseline"):
        agent_class.Config(loss="pg", pg_baseline="median")


def test_biased_pg_has_no_baseline():
    logprobs = torch.log(t(0.5, 0.25)).requires_grad_()
    biased_off_policy_pg_loss(t(1.0, 2.0), t(0.0, 0.0), logprobs, beta=0.5).backward()
    assert logprobs.grad.tolist() == pytest.approx([-0.5, -1.0])


class TestBandit:
    """The CoPG paper's bandit: 3 arms, R = (2.5, 2, 1), beta = 0.5, uniform reference; pairs
    y ~ (0.1, 0.2, 0.7), y' ~ (0.05, 0.05, 0.9)."""

    task = BanditTask()

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
