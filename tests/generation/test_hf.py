"""The transformers backend, the Generator contract, and its errors."""

from __future__ import annotations

import pytest
import torch

from lmgym.generation import make_generator
from agents.core import score_logprobs
from lmgym.generation.hf import HFGenerator

PROMPTS = ["12+34=", "7-5=", "a longer prompt: 99*9="]


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return HFGenerator(tiny_model_dir, device="cpu")


def test_generate_returns_ids_logprobs_and_text(hf):
    generations = hf.generate(PROMPTS, n=3, temperature=1.0, max_tokens=8, seed=0)
    assert [g.prompt for g in generations] == PROMPTS
    for generation in generations:
        assert generation.prompt_token_ids == hf.tokenizer(generation.prompt, add_special_tokens=False)["input_ids"]
        assert len(generation.completions) == 3
        for completion in generation.completions:
            assert 1 <= len(completion.token_ids) <= 8
            assert len(completion.logprobs) == len(completion.token_ids)
            assert all(lp <= 0 for lp in completion.logprobs)
            assert completion.text == hf.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
            assert completion.finish_reason in ("stop", "length")


def test_sampled_logprobs_equal_teacher_forced_logprobs(hf):
    generations = hf.generate(PROMPTS, n=2, max_tokens=10, seed=1)
    pairs = [(g.prompt_token_ids, c) for g in generations for c in g.completions]
    with torch.no_grad():
        recomputed = score_logprobs(hf.model, [p for p, _ in pairs], [c.token_ids for _, c in pairs])
    for (_, completion), expected in zip(pairs, recomputed):
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-4, rtol=0)


def test_greedy_is_deterministic_and_seeds_reproduce(hf):
    greedy = [hf.generate(PROMPTS, temperature=0, max_tokens=6)[i].completions[0].token_ids for i in range(3)]
    assert greedy == [hf.generate(PROMPTS, temperature=0, max_tokens=6)[i].completions[0].token_ids for i in range(3)]
    a = hf.generate(PROMPTS, n=4, max_tokens=6, seed=7)
    b = hf.generate(PROMPTS, n=4, max_tokens=6, seed=7)
    c = hf.generate(PROMPTS, n=4, max_tokens=6, seed=8)
    ids = lambda gens: [x.token_ids for g in gens for x in g.completions]
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_stop_strings_and_eos_cut_the_completion(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # teach the model one continuation so that stop strings and EOS are actually reached
    text = "1+1=2\nxyz"
    ids = tokenizer([text], return_tensors="pt", add_special_tokens=False)["input_ids"]
    ids = torch.cat([ids, torch.tensor([[tokenizer.eos_token_id]])], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator = HFGenerator(model, tokenizer=tokenizer)
    full = generator.generate(["1+1="], temperature=0, max_tokens=12)[0].completions[0]
    assert full.text == "2\nxyz" and full.finish_reason == "stop"
    assert full.token_ids[-1] == tokenizer.eos_token_id and len(full.logprobs) == len(full.token_ids)
    cut = generator.generate(["1+1="], temperature=0, max_tokens=12, stop=["\n"])[0].completions[0]
    assert cut.text == "2" and cut.finish_reason == "stop"
    assert tokenizer.decode(cut.token_ids) == "2\n"  # ids end with the token that completed the stop
    short = generator.generate(["1+1="], temperature=0, max_tokens=2)[0].completions[0]
    assert short.text == "2\n" and short.finish_reason == "length"


def test_prompt_longer_than_the_context_is_a_clear_error(hf):
    with pytest.raises(ValueError, match="exceeds the model's context of 512"):
        hf.generate(["1" * 500], max_tokens=64)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n must"), ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens")],
)
def test_bad_sampling_arguments(hf, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hf.generate(PROMPTS, **kwargs)
    with pytest.raises(TypeError, match="sequence of str"):
        hf.generate("a single string")


def test_make_generator_errors(tiny_model_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown generation backend 'tgi'"):
        make_generator(tiny_model_dir, backend="tgi")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_generator(tmp_path / "no-such-model", backend="hf")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        make_generator(tmp_path, backend="hf")
    import lmgym.generation

    monkeypatch.setattr(lmgym.generation, "vllm_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'lmgym\[vllm\]' \(GPU\) or 'lmgym\[cpu\]'"):
        make_generator(tiny_model_dir, backend="vllm")
    assert make_generator(tiny_model_dir, backend="auto").backend == "hf"


def test_the_interface_does_not_import_its_backends():
    import subprocess
    import sys

    code = ("import sys, lmgym.generation.generator; "
            "print(sorted(m for m in sys.modules if m.startswith('lmgym.generation.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["lmgym.generation.generator"]
    from lmgym.generation.generator import make_generator as old_path  # the old import still works

    assert old_path is make_generator


def test_load_weights_follows_the_trainer(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    generator = HFGenerator(tiny_model_dir)
    trainer = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in trainer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = generator.generate(PROMPTS, temperature=0, max_tokens=8)
    generator.load_weights(trainer.state_dict())
    after = generator.generate(PROMPTS, temperature=0, max_tokens=8)
    reference = HFGenerator(trainer, tokenizer=generator.tokenizer).generate(PROMPTS, temperature=0, max_tokens=8)
    ids = lambda gens: [c.token_ids for g in gens for c in g.completions]
    assert ids(after) == ids(reference) != ids(before)
    with pytest.raises(ValueError, match="does not match"):
        generator.load_weights({"nonsense.weight": torch.zeros(1)})


def test_shared_prompts_sample_what_generate_samples_with_each_prompt_run_once(tiny_model_dir):
    """With n samples per prompt, each prompt but its last token goes through the model once (its
    cache repeated n times), not n times: the same tokens (sampled with the same seed) and log-probs as ``generate``'s own expansion, with prompts of different lengths (left padding,
    a one-token prompt whose cached part is all padding)."""
    prompts = ["12+34=", "7", "a longer prompt: 99*9=", "7-5="]
    model_calls: dict[bool, list] = {}
    results = {}
    for share in (True, False):
        generator = HFGenerator(tiny_model_dir, device="cpu", share_prompts=share)
        calls = model_calls[share] = []
        generator.model.register_forward_hook(lambda m, args, kwargs, out: calls.append(tuple(kwargs["input_ids"].shape)),
                                              with_kwargs=True)
        results[share] = [generator.generate(prompts, n=3, max_tokens=6, seed=5),
                          generator.generate(prompts, n=2, temperature=0.7, top_p=0.9, max_tokens=6, seed=6)]
    width = max(len(g.prompt_token_ids) for g in results[True][0])
    assert model_calls[True][0] == (4, width - 1) and model_calls[True][1] == (12, 1)  # the prompts once, then each sample
    assert model_calls[False][0] == (12, width)  # generate's own expansion: every prompt 3 times
    for shared, plain in zip(results[True], results[False]):
        for g, h in zip(shared, plain):
            assert [c.token_ids for c in g.completions] == [c.token_ids for c in h.completions]
            for c, d in zip(g.completions, h.completions):
                torch.testing.assert_close(torch.tensor(c.logprobs), torch.tensor(d.logprobs), atol=1e-5, rtol=0)
    assert len({tuple(c.token_ids) for g in results[True][0] for c in g.completions}) > 4  # sampled, not all alike
