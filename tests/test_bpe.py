"""Paths only a real tokenizer exercises, on a tiny random Llama with a byte-level BPE tokenizer
built here (lmgym.models.bpe_tokenizer): labels and prefixes joined by ids, not by text; stop
strings and EOS cut on token boundaries; chat prompts with special tokens; the token-level
wrapper. The same checks on SmolLM2-135M-Instruct are in tests/test_smollm2.py (slow)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from transformers import AutoTokenizer

import lmgym  # noqa: F401
from agents import load_agent
from lmgym.generation.hf import HFGenerator
from lmgym.rollout import Budget, rollout
from lmgym.wrappers import TokenLevel
from tests.agents.conftest import small_config

ENV = "lmgym/Arithmetic-v0"
SEAM_PROMPT = "Question: What is 2 + 2? Answer: "  # ends in a space that BPE merges with a label's letter


@pytest.fixture(scope="module")
def tokenizer(bpe_model_dir):
    return AutoTokenizer.from_pretrained(bpe_model_dir)


@pytest.fixture(scope="module")
def generator(bpe_model_dir):
    return HFGenerator(bpe_model_dir, device="cpu")


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_tokenizer_merges_across_the_seam(tokenizer):
    """The premise of the tests below: tokenizing prompt + label as one string changes the
    prompt's own last token (" " and "G" become " G"), so it cannot be undone by counting."""
    joined = ids(tokenizer, SEAM_PROMPT + "G ")
    assert joined != ids(tokenizer, SEAM_PROMPT) + ids(tokenizer, "G ")
    assert joined[: len(ids(tokenizer, SEAM_PROMPT))] != ids(tokenizer, SEAM_PROMPT)


def test_prefix_and_suffix_are_joined_by_ids(generator, tokenizer):
    out = generator.generate([SEAM_PROMPT, "3+4="], prefix="B ", suffix="G ", temperature=0, max_tokens=3)
    for generation, prompt in zip(out, [SEAM_PROMPT, "3+4="]):
        assert generation.prompt_token_ids == ids(tokenizer, "B ") + ids(tokenizer, prompt) + ids(tokenizer, "G ")
        assert generation.prompt == "B " + prompt + "G "
    assert generator.encode([SEAM_PROMPT], suffix="G ") == [ids(tokenizer, SEAM_PROMPT) + ids(tokenizer, "G ")]


@pytest.mark.parametrize("position", ["completion", "prompt"])
def test_rcrl_stores_the_env_prompt_ids_and_its_own_label(position, bpe_model_dir, tokenizer):
    """RC-RL samples with the good label and stores each sample under its own return's label:
    the stored prompt is exactly the env prompt's ids with the label's ids where it acts, on
    prompts that end in a space (where tokenizing prompt + label as one string merges)."""
    agent_class = load_agent("rcrl")
    agent = agent_class(small_config(agent_class, bpe_model_dir, label_position=position, reward_threshold=0.5))
    template = "Question: What is {question}? Answer: "
    agent.learn(ENV, Budget(max_samples=8), env_kwargs={"prompt_template": template}, progress=False, test=False)
    assert agent.dataset
    for prompt_ids, _, label in agent.dataset:
        label_ids = ids(tokenizer, label)
        if position == "completion":
            own, where = prompt_ids[: len(prompt_ids) - len(label_ids)], prompt_ids[len(prompt_ids) - len(label_ids):]
        else:
            own, where = prompt_ids[len(label_ids):], prompt_ids[: len(label_ids)]
        assert where == label_ids
        text = tokenizer.decode(own)
        assert text.startswith("Question: What is ") and text.endswith("? Answer: ")
        assert own == ids(tokenizer, text)  # the env prompt's own tokenization, untouched by the label


def test_eos_and_stop_strings_cut_on_token_boundaries(generator, tokenizer):
    eos = tokenizer.eos_token_id
    answer = ids(tokenizer, " 46.\n#### 46")
    # EOS: the text ends before it, the ids and log-probs keep it (the policy chose it)
    done = generator.finish(answer + [eos] + ids(tokenizer, " junk"), [-1.0] * (len(answer) + 3), 32, [])
    assert done.text == " 46.\n#### 46" and done.token_ids == answer + [eos] and done.finish_reason == "stop"
    # a stop string inside one multi-character token: cut at that token, text before the stop
    stopped = generator.finish(answer, [-1.0] * len(answer), 32, ["####"])
    first = next(k for k in range(1, len(answer) + 1) if "####" in tokenizer.decode(answer[:k]))
    assert stopped.text == " 46.\n" and stopped.token_ids == answer[:first] and stopped.finish_reason == "stop"
    assert len(stopped.logprobs) == len(stopped.token_ids)
    # sampled: no completion contains a stop string, and every one decodes from its own ids
    for generation in generator.generate(["3+4=", SEAM_PROMPT], n=4, temperature=1.0, max_tokens=12, stop=["4", "\n"], seed=0):
        for completion in generation.completions:
            assert "4" not in completion.text and "\n" not in completion.text
            assert tokenizer.decode(completion.token_ids, skip_special_tokens=True).startswith(completion.text)
            assert len(completion.logprobs) == len(completion.token_ids) <= 12


def test_chat_prompts_carry_the_special_tokens_as_single_ids(tokenizer, generator):
    env = gym.make("lmgym/GSM8K-v0", split="test", prompt_template="chat", tokenizer=tokenizer)
    prompt, _ = env.reset(seed=0)
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    prompt_ids = generator.encode([prompt])[0]
    assert prompt_ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert prompt_ids.count(tokenizer.eos_token_id) == 1  # the user turn's <|im_end|>
    assert tokenizer.decode(prompt_ids) == prompt


def test_rollout_samples_keep_the_sampled_ids(generator, tokenizer):
    """What training sees is what was sampled: the ids, never the text re-tokenized (which BPE
    can tokenize differently, e.g. ' 4' + '6' sampled vs ' 46' re-encoded)."""
    envs = gym.make_vec(ENV, num_envs=8, prompt_template="Question: What is {question}? Answer: ")
    batch = rollout(envs, generator, n=2, seed=0, temperature=1.0, max_tokens=8, suffix="G ")
    for sample in batch.samples:
        assert sample.prompt_token_ids == ids(tokenizer, sample.prompt) + ids(tokenizer, "G ")
        assert len(sample.logprobs) == len(sample.token_ids)
        assert tokenizer.decode(sample.token_ids, skip_special_tokens=True).startswith(sample.completion)


def test_token_level_wrapper_on_bpe(tokenizer):
    env = TokenLevel(gym.make(ENV), tokenizer, max_new_tokens=16, vocab_size=len(tokenizer) + 7)
    observation, _ = env.reset(seed=0)
    assert list(observation) == ids(tokenizer, env.unwrapped.prompt)
    assert env.action_space.n == len(tokenizer) + 7  # the model's (padded) vocabulary, not the tokenizer's
    answer = str(env.unwrapped.problem.answer)
    for token in ids(tokenizer, answer):
        observation, reward, terminated, truncated, info = env.step(token)
    observation, reward, terminated, truncated, info = env.step(tokenizer.eos_token_id)
    assert terminated and reward == 1.0 and info["completion"] == answer


def has_a_digit(prompts, completions):
    """A proxy reward that a random model earns about half the time (the task's own is ~never
    earned), so that every agent's update has a signal to follow."""
    return [float(any(ch.isdigit() for ch in completion)) for completion in completions]


@pytest.mark.parametrize("name", ["grpo", "rloo", "ppo", "exit", "rcrl", "copg", "dpo", "joint", "sft"])
def test_every_agent_updates_on_a_bpe_model(name, bpe_model_dir):
    agent_class = load_agent(name)
    agent = agent_class(small_config(agent_class, bpe_model_dir, eval_problems=4, test_problems=4, eval_k_problems=2))
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    agent.learn(ENV, Budget(max_samples=16), env_kwargs={"reward_fn": "tests.test_bpe:has_a_digit"}, progress=False,
                test=False)
    changed = sum(int((before[k] != v).any()) for k, v in agent.policy.state_dict().items())
    assert agent.optimizer_steps > 0 and changed > 0 and agent.trained_tokens > 0


@pytest.mark.vllm
def test_vllm_and_hf_agree_on_a_bpe_model(bpe_model_dir, tokenizer):
    """The real vLLM engine on the BPE model: the same prompt ids as HF (suffix joined by ids),
    greedy ids equal to HF's, sampled log-probs equal to HF's recomputed ones, stop strings cut."""
    pytest.importorskip("vllm")
    import torch

    from agents.core import score_logprobs
    from lmgym.generation.vllm import VLLMGenerator

    hf = HFGenerator(bpe_model_dir, device="cpu")
    vllm = VLLMGenerator(bpe_model_dir, dtype="float32", seed=0)
    prompts = [SEAM_PROMPT, "3+4=", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"]
    try:
        greedy_v = vllm.generate(prompts, suffix="G ", temperature=0, max_tokens=12)
        greedy_h = hf.generate(prompts, suffix="G ", temperature=0, max_tokens=12)
        assert [g.prompt_token_ids for g in greedy_v] == [g.prompt_token_ids for g in greedy_h]
        assert [c.token_ids for g in greedy_v for c in g.completions] == [c.token_ids for g in greedy_h for c in g.completions]
        sampled = vllm.generate(prompts, n=3, temperature=1.0, max_tokens=12, seed=1)
        pairs = [(g.prompt_token_ids, c) for g in sampled for c in g.completions]
        with torch.no_grad():
            recomputed = score_logprobs(hf.model, [p for p, _ in pairs], [c.token_ids for _, c in pairs],
                                        tokenizer.pad_token_id)
        worst = max((torch.tensor(c.logprobs) - r).abs().max().item() for (_, c), r in zip(pairs, recomputed))
        assert worst < 1e-4
        for generation in vllm.generate(prompts, n=3, temperature=1.0, max_tokens=12, stop=["4", "\n"], seed=2):
            assert all("4" not in c.text and "\n" not in c.text for c in generation.completions)
    finally:
        vllm.close()
