"""Memory and scale options on every agent (agents/core.py): LoRA adapters (peft) with the base
as reference, bf16 autocast, gradient checkpointing, and token-budget micro-batches with
gradient accumulation. Each is checked against the plain run it must equal (or approximate)."""

from __future__ import annotations

import pytest
import torch

from agents import load_agent
from agents.core import AdaptersOff, merged_lora_state_dict, micro_batches
from lmgym.rollout import Budget
from tests.agents.conftest import ENV, SAME_UPDATE, SAME_UPDATE_TOLERANCE, small_config
from tests.conftest import EASY_ARITHMETIC

pytest.importorskip("peft")


def trained(name, model_dir, samples=16, **options):
    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, model_dir, eval_problems=4, test_problems=4, eval_k=1, **options))
    agent.learn(ENV, Budget(max_samples=samples), env_kwargs=EASY_ARITHMETIC, progress=False, test=False)
    return agent


def initial(model_dir):
    return load_agent("sft")(small_config(load_agent("sft"), model_dir)).policy.state_dict()


def max_difference(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_micro_batches_respect_both_limits():
    assert micro_batches([5, 5, 5, 5], 2) == [(0, 2), (2, 4)]
    assert micro_batches([3, 9, 2, 2, 2], 10, max_tokens=18) == [(0, 2), (2, 5)]  # 2 x 9 = 18 fits; 3 x 9 would not
    assert micro_batches([30, 1], 10, max_tokens=8) == [(0, 1), (1, 2)]  # a sequence over the budget goes alone


@pytest.mark.parametrize("name", ["grpo", "ppo", "rcrl", "sft"])
def test_token_micro_batches_accumulate_to_the_same_update(name, warm_model_dir):
    """Forward/backward in micro-batches of 40 tokens (a few sequences each) gives the same
    parameters as the whole minibatch at once: gradient accumulation, not a different loss."""
    whole = trained(name, warm_model_dir, samples=32, **SAME_UPDATE)
    split = trained(name, warm_model_dir, samples=32, micro_batch_tokens=40, **SAME_UPDATE)
    assert whole.optimizer_steps == split.optimizer_steps > 0
    assert max_difference(whole.policy.state_dict(), initial(warm_model_dir)) > 1e-3  # it did learn something
    assert max_difference(whole.policy.state_dict(), split.policy.state_dict()) < SAME_UPDATE_TOLERANCE
    assert split.train_flops > whole.train_flops  # the replayed forward passes are counted


def forward_calls_in_backward(agent, micro_batch_tokens=0) -> int:
    """How often the policy's first MLP runs during backward: 1 when its layer's activations are
    recomputed (checkpointing), 0 when they were stored."""
    mlp = agent.policy.get_base_model().model.layers[0].mlp if agent.config.lora_rank else agent.policy.model.layers[0].mlp
    calls, original = [], mlp.forward
    mlp.forward = lambda *args, **kwargs: (calls.append(1), original(*args, **kwargs))[1]
    logprobs, mask = agent.logprobs(agent.policy, [[5, 6, 7]] * 3, [[8, 9]] * 3)
    before = len(calls)
    (logprobs * mask).sum().backward()
    mlp.forward = original
    return len(calls) - before


def test_gradient_checkpointing_gives_the_same_update(warm_model_dir):
    plain = trained("grpo", warm_model_dir, **SAME_UPDATE)
    checkpointed = trained("grpo", warm_model_dir, gradient_checkpointing=True, **SAME_UPDATE)
    assert max_difference(plain.policy.state_dict(), initial(warm_model_dir)) > 1e-3
    assert max_difference(plain.policy.state_dict(), checkpointed.policy.state_dict()) < SAME_UPDATE_TOLERANCE


@pytest.mark.parametrize("options", [{}, {"lora_rank": 2}])
def test_gradient_checkpointing_recomputes_in_backward_with_the_policy_in_eval_mode(options, warm_model_dir):
    """transformers checkpoints a layer only in training mode, and lmgym keeps the policy in eval
    mode (no dropout): the option used to do nothing. Now the layers recompute in backward, and
    the policy's modules keep the modes they had (the base model's: eval, no dropout)."""
    grpo = load_agent("grpo")
    plain = grpo(small_config(grpo, warm_model_dir, **options))
    checkpointed = grpo(small_config(grpo, warm_model_dir, gradient_checkpointing=True, **options))
    assert forward_calls_in_backward(plain) == 0
    assert forward_calls_in_backward(checkpointed) == 1
    assert [m.training for m in checkpointed.policy.modules()] == [m.training for m in plain.policy.modules()]
    assert not any(layer.training for layer in checkpointed._checkpointed)


def test_bf16_autocast_keeps_float32_weights_and_the_gradient_direction(warm_model_dir):
    mixed = trained("grpo", warm_model_dir, bf16=True)
    assert all(p.dtype == torch.float32 for p in mixed.policy.parameters())
    assert max_difference(mixed.policy.state_dict(), initial(warm_model_dir)) > 1e-4  # it trained
    grpo = load_agent("grpo")
    prompts, completions = [[5, 20, 21, 16, 22], [7, 8, 9]], [[30, 31, 32], [40, 41]]
    grads, logprobs = [], []
    for bf16 in (False, True):
        agent = grpo(small_config(grpo, warm_model_dir, bf16=bf16))
        values, mask = agent.logprobs(agent.policy, prompts, completions)
        (values * mask).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in agent.policy.parameters() if p.grad is not None]))
        logprobs.append(values.detach())
    assert (logprobs[0] - logprobs[1]).abs().max() < 0.1  # bfloat16 has ~3 significant digits
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.98


def test_lora_trains_adapters_only_with_the_base_as_reference(warm_model_dir):
    agent = trained("grpo", warm_model_dir, lora_rank=4, beta=0.05)
    assert isinstance(agent.reference, AdaptersOff) and agent.reference.policy is agent.policy  # no second copy
    trainable = {name for name, p in agent.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    fresh = initial(warm_model_dir)
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in agent.policy.state_dict().items()
            if "lora_" not in k}
    assert max_difference({k: base[k] for k in fresh}, fresh) == 0.0  # the base never moved
    # the merged weights are the adapted policy: a plain model loaded with them gives its logits
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(warm_model_dir)
    plain.load_state_dict(merged_lora_state_dict(agent.policy))
    ids = torch.tensor([[5, 20, 21, 16, 22]])
    with torch.no_grad():
        adapted, merged = agent.policy(input_ids=ids).logits, plain(input_ids=ids).logits
        with agent.policy.disable_adapter():
            original = agent.policy(input_ids=ids).logits
    assert (adapted - merged).abs().max() < 1e-4 and (adapted - original).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["grpo", "ppo", "exit", "rcrl", "copg", "dpo", "joint", "sft", "rloo"])
def test_every_agent_runs_with_every_option(name, warm_model_dir):
    agent = trained(name, warm_model_dir, samples=8, lora_rank=2, bf16=True, gradient_checkpointing=True,
                    micro_batch_tokens=64)
    assert agent.optimizer_steps > 0
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


@pytest.mark.vllm
def test_lora_sync_keeps_vllm_on_the_trainer(tiny_model_dir, vllm_generator):
    """Merged LoRA weights synced into the real vLLM engine: what it samples has the trainer's
    log-probs (PPO logs the mismatch of every rollout after the first)."""
    from transformers import AutoModelForCausalLM

    agent_class = load_agent("ppo")
    agent = agent_class(small_config(agent_class, tiny_model_dir, backend="vllm", lora_rank=4, lr=1e-2),
                        generator=vllm_generator)
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    vllm_generator.load_weights(original)
    try:
        agent.learn(ENV, Budget(max_samples=24), progress=False, test=False)
        assert max(m["sampler/logprob_mismatch"] for m in agent.train_log) < 1e-3
    finally:
        vllm_generator.load_weights(original)
