"""The shared agent core (agents/core.py): its pure functions against hand values, and what every
agent gets from it (budgets, checkpoint/resume, evaluation, logging), looped over the registry."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents import AGENTS, load_agent
from agents.core import completion_logprobs, kl_penalty, masked_mean, masked_whiten, nll_loss
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, small_config

ROOT = Path(__file__).resolve().parents[2]
t = lambda *values: torch.tensor(values, dtype=torch.float64)


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))
    assert kl_penalty(ref, ref, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")


def test_masked_statistics_ignore_padding():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_mean(values, mask).item() == 2.0
    whitened = masked_whiten(values, mask)
    torch.testing.assert_close(whitened, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4, rtol=0)
    assert nll_loss(torch.log(torch.tensor([[0.5, 0.25, 1e-9]])), mask).item() == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)


def test_weighted_nll_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0], [-3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert nll_loss(logprobs, mask).item() == pytest.approx(2.0)  # (1 + 2 + 3) / 3 tokens
    assert nll_loss(logprobs, mask, torch.ones(2)).item() == pytest.approx(2.0)
    assert nll_loss(logprobs, mask, torch.tensor([2.0, 0.0])).item() == pytest.approx(2.0)  # 2 * (1 + 2) / 3
    assert nll_loss(logprobs, mask, torch.tensor([0.5, 2.0])).item() == pytest.approx((0.5 * 3 + 2 * 3) / 3)


def test_completion_logprobs_mask_the_prompt_and_match_full_sequence_scores(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts, completions = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13, 2]]

    def one_by_one(prompt, completion):  # each sequence alone, no padding: the reference
        ids = torch.tensor([prompt + completion])
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)

    with torch.no_grad():
        logprobs, mask = completion_logprobs(model, prompts, completions, pad_token_id=0)
        expected = [one_by_one(p, c) for p, c in zip(prompts, completions)]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    torch.testing.assert_close(logprobs[0, :2], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logprobs[1], expected[1], atol=1e-5, rtol=0)
    assert logprobs[0, 2:].abs().sum() == 0


def test_completion_logprobs_ask_only_for_the_logits_that_predict_completion_tokens(tiny_model_dir):
    """With every prompt longer than one token, the positions before the earliest completion
    start predict no completion token: the model is asked for the last ``keep`` positions only
    (``logits_to_keep``), and the log-probs are those of a model that computes them all."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agents.core import AdaptersOff, _keeps_logits

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    prompts, completions = [[5, 6, 7, 4, 3], [8, 3, 4]], [[9, 10], [11, 12, 13, 2]]
    widths = []

    class AllLogits(torch.nn.Module):  # the same model behind a forward without the option
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, output_hidden_states=False):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
            widths.append(out.logits.shape[1])
            return out

    handle = model.register_forward_hook(lambda module, args, out: widths.append(out.logits.shape[1]))
    with torch.no_grad():
        trimmed, mask = completion_logprobs(model, prompts, completions, pad_token_id=0)
        full, full_mask = completion_logprobs(AllLogits(model), prompts, completions, pad_token_id=0)
    handle.remove()
    # width 7 (5 + 2 and 3 + 4); the earliest completion start predicts from position 2 on
    assert widths == [5, 7, 7] and _keeps_logits(model) and not _keeps_logits(AllLogits(model))
    torch.testing.assert_close(trimmed, full, atol=1e-6, rtol=0)
    assert torch.equal(mask, full_mask)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert _keeps_logits(lora) and _keeps_logits(AdaptersOff(lora))


@pytest.mark.parametrize("name", ["sft", "ppo", "exit"])
def test_the_last_iteration_spends_exactly_the_budget(name, warm_model_dir):
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, warm_model_dir))  # 8 samples per iteration
    result = agent.learn(ENV, Budget(max_samples=20), env_kwargs=EASY_ARITHMETIC, progress=False)
    assert result.budget["samples"] == 20 and agent.iteration_count == 3


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
    reference = straight.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "straight", progress=False)

    interrupted = agent_class(config)
    interrupted.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "resumed", stop_after=2, progress=False)
    assert interrupted.iteration_count == 2
    resumed = agent_class(config)  # a new process would start exactly like this
    result = resumed.learn(ENV, Budget(max_samples=32), run_dir=tmp_path / "resumed", progress=False)

    assert resumed.iteration_count == straight.iteration_count == 4
    timeless = lambda curve: [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in curve]
    assert timeless(result.curve) == timeless(straight.curve)  # wall times aside, the same run
    assert result.test == reference.test and result.chosen == reference.chosen  # and the same chosen checkpoint
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


@pytest.mark.vllm
def test_an_agents_own_vllm_engine_samples_from_the_policys_float32_weights(tiny_model_dir):
    """vLLM's dtype "auto" casts a float32 model to bfloat16 on CPU: an agent that built its own
    engine that way trained a float32 policy on samples from a bfloat16 copy of it. By default
    the engine now holds the policy's own dtype, and the sampler's log-probs are the trainer's."""
    pytest.importorskip("vllm")
    agent_class = load_agent("grpo")
    with pytest.raises(ValueError, match="sampler_dtype"):
        agent_class(small_config(agent_class, tiny_model_dir, backend="vllm", sampler_dtype="int8"))
    # In its own process: a second in-process vLLM engine tears down the distributed state of the
    # session's engine when it is closed.
    code = (
        "import json\n"
        "from agents import load_agent\n"
        "from lmgym.rollout import Budget\n"
        "from tests.agents.conftest import ENV, small_config\n"
        "grpo = load_agent('grpo')\n"
        # every row through the trainer (the untrained model scores nothing: no row has an advantage)
        f"agent = grpo(small_config(grpo, {str(tiny_model_dir)!r}, backend='vllm', skip_zero_advantage=False))\n"
        "dtype = agent.generator.dtype\n"
        "agent.learn(ENV, Budget(max_samples=16), progress=False, test=False)\n"
        "print(json.dumps({'dtype': dtype, 'mismatch': [m['sampler/logprob_mismatch'] for m in agent.train_log]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["dtype"] == "float32"
    assert record["mismatch"] and max(record["mismatch"]) < 1e-3  # with bfloat16: 0.007-0.016


CORE_KEYS = {"samples", "tokens", "queries", "iteration", "optimizer_steps", "trained_tokens", "train_flops",
             "generation_flops", "train_seconds"}


@pytest.mark.parametrize("name", sorted(set(AGENTS) - {"base"}))
def test_every_registered_agent_learns_end_to_end_and_logs_the_core_keys(name, warm_model_dir, tmp_path):
    """A new agent in the registry is tested here for free: a few updates on the real
    generator and env, every parameter trained, the shared counters logged, the budget spent."""
    from tests.conftest import EASY_ARITHMETIC

    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, warm_model_dir, warmup_steps=0))
    before = {k: v.clone() for k, v in agent.policy.named_parameters()}
    result = agent.learn(ENV, Budget(max_samples=32), run_dir=tmp_path, env_kwargs=EASY_ARITHMETIC, progress=False)
    assert result.budget["samples"] == 32
    assert [row["samples"] for row in result.curve] == [0, 32]
    # the curve is validation (greedy, and pass@2 / maj@2 on a few problems); the test ran once, at the end
    assert all(0.0 <= row["val/ground_truth"] <= 1.0 and row["val/problems"] == 12 and "val/pass@2" in row
               for row in result.curve)
    assert not any(key.startswith("test/") for row in result.curve for key in row)
    assert result.test["test/problems"] == 12 and {"test/ground_truth", "test/pass@2", "test/maj@2",
                                                    "test/kl_to_reference", "test/solved_share"} <= set(result.test)
    assert result.chosen["samples"] in (0, 32)
    for metrics in agent.train_log:
        assert CORE_KEYS <= set(metrics), CORE_KEYS - set(metrics)
        assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
        assert name == "sft" or "train/reward" in metrics  # every agent that samples
    last = agent.train_log[-1]
    assert last["optimizer_steps"] == agent.optimizer_steps >= 1  # (ExIt/DPO skip a round with nothing to learn)
    assert last["trained_tokens"] >= last["optimizer_steps"]
    assert CORE_KEYS <= set(result.curve[-1])
    assert last["train_flops"] >= 6 * agent.parameter_count(agent.policy) * last["trained_tokens"]
    assert (last["generation_flops"] > 0) == (name != "sft")  # SFT generates nothing
    unchanged = [k for k, v in agent.policy.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged, f"parameters that did not train: {unchanged[:5]}"
    if name == "joint":  # feedback is charged apart from samples: one query per prompt
        assert result.budget["queries"] == 32 // agent.config.samples_per_prompt
    elif name != "sft":
        assert result.budget["queries"] == 32
    assert len(agent.act(["12+34=", "5-7="])) == 2


@pytest.mark.parametrize("name", sorted(set(AGENTS) - {"base"}))
def test_every_config_field_has_a_one_line_doc_and_iteration_one_signature(name):
    import inspect

    from agents.core import Agent, config_docs

    agent_class = load_agent(name)
    undocumented = [field for field, _, _, doc in config_docs(agent_class.Config) if not doc]
    assert not undocumented, f"{name}: config fields without a doc: {undocumented}"
    assert list(inspect.signature(agent_class.iteration).parameters) == list(inspect.signature(Agent.iteration).parameters)


def test_help_agent_prints_every_field(capsys):
    from lmgym.cli import main

    assert main(["bench", "--help-agent", "ppo"]) == 0
    out = capsys.readouterr().out
    assert "minibatch_size" in out and "sequences per optimizer step" in out and "clip_range" in out


def test_configs_of_earlier_versions_still_load():
    from agents.core import config_from_dict

    ppo = config_from_dict(load_agent("ppo").Config, {"ppo_epochs": 2, "minibatches": 4, "prompts_per_iteration": 64})
    assert (ppo.epochs, ppo.minibatch_size) == (2, 64)  # 64 x 4 samples in 4 minibatches
    exit_config = config_from_dict(load_agent("exit").Config, {"sft_epochs": 3, "sft_batch_size": 32})
    assert (exit_config.epochs, exit_config.minibatch_size) == (3, 32)
    with pytest.raises(ValueError, match="unknown PPOConfig field"):
        config_from_dict(load_agent("ppo").Config, {"learning_rate": 1.0})


def test_an_agent_trains_on_a_multi_turn_code_env(tmp_path):
    """GRPO on MBPP-Feedback through the same rollout: failed attempts get the failing test as
    their next observation, each episode is one sample, every turn's tokens and scored steps
    are charged."""
    from transformers import LlamaForCausalLM

    from lmgym.models import char_tokenizer, tiny_llama_config

    tokenizer = char_tokenizer()  # a tiny model with room for a prompt, an attempt and its feedback
    LlamaForCausalLM(tiny_llama_config(tokenizer, max_position_embeddings=8192)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    agent_class = load_agent("grpo")
    agent = agent_class(small_config(agent_class, tmp_path / "model", max_new_tokens=8, eval_problems=2))
    short_prompt = lambda problem: f"# {problem.meta['entry_point']}\n"  # the tiny model's context is 512 tokens
    result = agent.learn("lmgym/MBPP-Feedback-v0", Budget(max_samples=16), progress=False,
                         env_kwargs={"max_turns": 2, "prompt_template": short_prompt, "timeout": 3.0})
    assert result.budget["samples"] == 16
    assert result.budget["queries"] == 32  # nothing the tiny model writes passes: every episode takes both turns
    assert result.budget["tokens"] > 16 * 8  # both turns' tokens
    assert all(math.isfinite(m["losses/policy"]) for m in agent.train_log)


def test_evaluation_covers_eval_problems_or_the_whole_split_when_it_is_smaller(tiny_model_dir):
    agent = load_agent("base")(small_config(load_agent("base"), tiny_model_dir, eval_problems=50, test_problems=None))
    assert agent.evaluate(ENV, {"validation_size": 20})["val/problems"] == 20
    assert agent.evaluate(ENV, {"validation_size": 80})["val/problems"] == 50
    assert agent.evaluation_envs(ENV, {"validation_size": 20}, problems=50).unwrapped.num_envs == 20
    assert agent.evaluate(ENV, {"test_size": 30}, split="test")["test/problems"] == 30  # the final test: all of it


def test_a_trained_token_cap_ends_training_like_a_sample_budget(tiny_model_dir):
    agent_class = load_agent("sft")
    agent = agent_class(small_config(agent_class, tiny_model_dir))
    result = agent.learn(ENV, Budget(max_samples=10_000, max_trained_tokens=20), progress=False, test=False)
    assert result.budget["trained_tokens"] >= 20 == result.budget["max_trained_tokens"]
    assert result.budget["samples"] <= 24 and result.test == {}  # stopped within the iteration that crossed the cap
    assert result.curve[-1]["trained_tokens"] == result.budget["trained_tokens"]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_agent_offers_plain_sgd_beside_adamw(optimizer, tiny_model_dir):
    """optimizer="sgd" is plain SGD (p <- p - lr * g, no momentum); "adamw" is not (its first
    step moves every weight by about lr, whatever the gradient's size)."""
    agent_class = load_agent("grpo")
    config = dataclasses.replace(small_config(agent_class, tiny_model_dir), optimizer=optimizer, lr=0.05, warmup_steps=0,
                                 max_grad_norm=1e9)
    agent = agent_class(config)
    before = {name: p.detach().clone() for name, p in agent.policy.named_parameters()}
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    loss = agent.policy(input_ids=ids).logits[0, -1, 3]
    agent.optimizer_step(loss)
    name, weight = next((n, p) for n, p in agent.policy.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0)
    expected = before[name] - 0.05 * weight.grad
    if optimizer == "sgd":
        torch.testing.assert_close(weight.detach(), expected)
    else:
        assert not torch.allclose(weight.detach(), expected)
    with pytest.raises(ValueError, match="optimizer must be"):
        agent_class(dataclasses.replace(config, optimizer="lion"))


def test_metrics_break_down_by_the_tasks_subsets():
    """On relabelled Arithmetic the shipped model never gives the negated answer: the relabelled
    subset is stuck with zero reward std, the rest is not (Razin et al.'s setting)."""
    agent = load_agent("base")(load_agent("base").Config(eval_k=4, test_problems=120))
    metrics = agent.evaluate_all(ENV, {"relabel": 0.15}, split="test")
    assert metrics["test/ground_truth[relabelled]"] == 0.0 and metrics["test/ground_truth[rest]"] > 0.3
    assert metrics["test/reward_std_zero_share[relabelled]"] == 1.0 == metrics["test/stuck_share[relabelled]"]
    assert metrics["test/reward_std_zero_share[rest]"] < 0.5
    share = metrics["test/prompt_share[relabelled]"]
    assert 0.05 < share < 0.3 and share + metrics["test/prompt_share[rest]"] == pytest.approx(1.0)
    assert metrics["test/ground_truth"] == pytest.approx(share * 0.0 + (1 - share) * metrics["test/ground_truth[rest]"])
    assert not any("[" in key for key in agent.evaluate_all(ENV, split="test"))  # no subsets, no breakdown


def test_a_checkpoint_of_another_setup_is_set_aside_not_resumed(tiny_model_dir, tmp_path):
    """An interrupted run with a larger budget left a checkpoint in the cell folder: a run with
    another budget (or config) must not continue to the old budget; it starts afresh and keeps
    the old checkpoint aside."""
    agent_class = load_agent("ppo")
    config = small_config(agent_class, tiny_model_dir)
    agent_class(config).learn(ENV, Budget(max_samples=64), run_dir=tmp_path, stop_after=5, progress=False)
    result = agent_class(config).learn(ENV, Budget(max_samples=16), run_dir=tmp_path, progress=False)
    assert result.budget["samples"] == 16
    assert len(list(tmp_path.glob("checkpoint.stale-*.pt"))) == 1
    other = dataclasses.replace(config, lr=config.lr * 2)  # same budget, other config: also aside
    agent_class(other).learn(ENV, Budget(max_samples=16), run_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("checkpoint.stale-*.pt"))) == 2


def _logprobs_and_grads(model, prompts, completions, weights, **options):
    """Log-probs, mask, hidden states and the gradient of a weighted sum of the log-probs."""
    model.zero_grad(set_to_none=True)
    logprobs, mask, hidden = completion_logprobs(model, prompts, completions, pad_token_id=0, return_hidden=True, **options)
    ((logprobs * weights[:, : logprobs.shape[1]]).sum() + (hidden * mask[..., None]).sum() * 1e-3).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logprobs.detach(), mask, hidden.detach(), grads


def test_shared_prompts_give_the_plain_log_probs_and_gradients_with_each_prompt_run_once(tiny_model_dir):
    """Groups of completions of the same prompt (GRPO's n samples), prompts of different lengths,
    rows out of order, an empty completion: with ``share_prompts`` each distinct prompt goes
    through the model once and every row's completion attends to its keys/values; log-probs,
    hidden states and gradients (which sum over a prompt's completions) equal the plain pass's."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    a, b, c = [5, 6, 7, 4, 3, 9], [8, 3], [12, 4, 4, 7]
    prompts = [a, b, a, c, b, a, c, a]
    completions = [[9, 10], [11, 12, 13, 2], [9], [4, 5, 6, 7, 8], [], [10, 11, 2], [3], [14, 15, 16, 17, 18, 2]]
    weights = torch.linspace(-1.0, 2.0, 8)[:, None].expand(8, 6)
    calls = []
    handle = model.register_forward_hook(lambda module, args, kwargs, out: calls.append(tuple(kwargs["input_ids"].shape)),
                                         with_kwargs=True)
    shared = _logprobs_and_grads(model, prompts, completions, weights, share_prompts=True)
    assert calls == [(3, 5), (8, 6)]  # the 3 prompts without their last token, then every row's rest
    calls.clear()
    plain = _logprobs_and_grads(model, prompts, completions, weights)
    handle.remove()
    assert calls == [(8, 12)]
    assert torch.equal(shared[1], plain[1])
    torch.testing.assert_close(shared[0], plain[0], atol=2e-5, rtol=0)
    torch.testing.assert_close(shared[2] * shared[1][..., None], plain[2] * plain[1][..., None], atol=2e-5, rtol=0)
    assert shared[3].keys() == plain[3].keys()
    for name, grad in plain[3].items():
        torch.testing.assert_close(shared[3][name], grad, atol=1e-5, rtol=1e-4)


def test_prompt_sharing_is_used_only_where_it_saves_tokens(tiny_model_dir):
    """Distinct prompts, a one-token prompt, or a model without a cache: the plain pass."""
    from agents.core import prompt_sharing, processed_tokens

    assert prompt_sharing([[1, 2], [3, 4]], [[5], [6]]) is None  # nothing repeats
    assert prompt_sharing([[1], [1]], [[5], [6]]) is None  # the last prompt token runs with the completion
    assert prompt_sharing([[1, 2, 3], [1, 2, 3], [4, 5]], [[5], [6], [7]]) == ([0, 0, 1], [(1, 2, 3), (4, 5)])
    assert processed_tokens([[1, 2, 3], [1, 2, 3], [4, 5]], [[5], [6], [7]]) == 11
    assert processed_tokens([[1, 2, 3], [1, 2, 3], [4, 5]], [[5], [6], [7]], share_prompts=True) == 2 + 1 + 3
    # a long prompt alone and long completions behind a short shared one: the padded tokens of two passes
    # (2 x 9 + 3 x 9) would exceed one pass's (3 x 11)
    assert prompt_sharing([[1, 2], [1, 2], [3] * 10], [[5] * 9, [6] * 9, [7]]) is None


def test_an_agent_shares_prompts_across_shuffled_rows_and_counts_the_tokens_it_runs(tiny_model_dir):
    """``Agent.logprobs`` puts rows of one prompt side by side (so a micro-batch holds whole
    groups), returns them in the caller's order, and its FLOP estimate counts each prompt once."""
    import numpy as np

    from agents.grpo import GRPO

    agent = GRPO(small_config(GRPO, tiny_model_dir), micro_batch_size=4)
    rng = np.random.default_rng(0)
    groups = [rng.integers(3, 40, size=rng.integers(3, 9)).tolist() for _ in range(4)]
    prompts = [g for g in groups for _ in range(4)]
    completions = [rng.integers(3, 40, size=rng.integers(1, 5)).tolist() for _ in prompts]
    order = rng.permutation(len(prompts))
    prompts, completions = [prompts[i] for i in order], [completions[i] for i in order]
    results = {}
    for share in (False, True):
        agent.config.share_prompts = share
        before = agent.train_flops
        logprobs, mask = agent.logprobs(agent.policy, prompts, completions)
        results[share] = logprobs.detach(), mask, agent.train_flops - before
    torch.testing.assert_close(results[True][0], results[False][0], atol=2e-5, rtol=0)
    assert torch.equal(results[True][1], results[False][1])
    tokens = lambda share: sum(len(p) - 1 for p in groups) + sum(len(c) for c in completions) if share else \
        sum(len(p) + len(c) for p, c in zip(prompts, completions))
    assert results[True][2] / results[False][2] == pytest.approx(tokens(True) / tokens(False))


def test_shared_prompts_through_lora_and_its_adapters_off_reference(tiny_model_dir):
    """The same through peft's wrapper (the adapters' gradients) and :class:`AdaptersOff` (the
    LoRA policy's reference), which pass the cache and positions on to the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agents.core import AdaptersOff

    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    for name, p in lora.named_parameters():
        if "lora_B" in name:  # away from peft's zero start, so that the adapters change the outputs
            torch.nn.init.normal_(p, std=0.1)
    prompts, completions = [[5, 6, 7], [8, 3, 4, 4], [5, 6, 7], [8, 3, 4, 4]], [[9, 10], [11], [12, 13, 2], [14, 2]]
    weights = torch.ones(4, 3)
    shared, plain = (_logprobs_and_grads(lora, prompts, completions, weights, share_prompts=s) for s in (True, False))
    torch.testing.assert_close(shared[0], plain[0], atol=2e-5, rtol=0)
    assert any("lora_B" in name for name in plain[3])
    for name, grad in plain[3].items():
        torch.testing.assert_close(shared[3][name], grad, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        off = [completion_logprobs(AdaptersOff(lora), prompts, completions, 0, share_prompts=s)[0] for s in (True, False)]
    torch.testing.assert_close(off[0], off[1], atol=2e-5, rtol=0)
    assert (off[0] - shared[0]).abs().max() > 1e-3  # the adapters were off
