"""lmgym's own offline NLI judge (lmgym/rewards/nli.py): its synthetic task's labels are right by
construction, the shipped judge scores what its record says, and it runs the entailment path of
KeyFacts in the loop."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import gymnasium as gym
import pytest

import lmgym  # noqa: F401
from lmgym.envs.summarization import split_sentences
from lmgym.rewards.nli import LABELS, keyfacts_nli_examples
from lmgym.rewards.summarization import EntailmentJudge


def test_synthetic_examples_are_balanced_and_labelled_by_construction():
    examples = keyfacts_nli_examples(300, "train")
    assert collections.Counter(label for *_, label in examples) == {0: 100, 1: 100, 2: 100}
    for premise, hypothesis, label in examples:
        sentences = split_sentences(premise)
        if label == LABELS["entailment"]:
            assert hypothesis in sentences
        else:
            assert hypothesis not in sentences
            subject = hypothesis.split(" lives")[0].split(" was born")[0].split(" owns")[0].split(" has")[0]
            assert (subject in premise) == (label == LABELS["contradiction"])
    test = keyfacts_nli_examples(60, "test", seed=1)
    validation = keyfacts_nli_examples(60, "validation", seed=1)
    assert not {p for p, _, _ in test} & {p for p, _, _ in examples}  # held-out documents
    assert not {p for p, _, _ in validation} & ({p for p, _, _ in examples} | {p for p, _, _ in test})


def test_the_trainer_writes_a_judge_the_entailment_path_loads(tmp_path):
    """A short run of the real trainer: the saved folder is an NLI model with an entailment
    label that EntailmentJudge scores with, and its record says how it did on held-out data."""
    from lmgym.rewards.nli import train_keyfacts_nli

    record = train_keyfacts_nli(tmp_path / "nli", examples=300, steps=3, eval_examples=30, progress=False)
    assert record["held_out"]["examples"] == 30 and 0 <= record["held_out"]["accuracy"] <= 1
    assert record["validation"]["split"] == "validation" and 0 <= record["validation"]["accuracy"] <= 1  # for choices
    assert json.loads((tmp_path / "nli" / "lmgym_nli.json").read_text())["steps"] == 3
    judge = EntailmentJudge(str(tmp_path / "nli"), max_length=256)
    env = gym.make("lmgym/KeyFacts-v0", judge="entailment", nli_model=str(tmp_path / "nli"), facts=2, fillers=1)
    env.reset(options={"index": 0})
    _, reward, *_, info = env.step(env.unwrapped.task.problem("train", 0).solution)
    assert 0 <= reward <= 1 and len(info["entailment"]) == 2 and info["ground_truth"] == 1.0
    assert judge.entailment_index == LABELS["entailment"]


def test_eval_every_keeps_the_checkpoint_best_on_validation(tmp_path):
    """eval_every=N: validation scored every N steps and at the end; the saved judge is the best
    of them (the earliest on ties), and re-scoring it on validation gives that accuracy."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmgym.rewards.nli import _accuracy, train_keyfacts_nli

    record = train_keyfacts_nli(tmp_path / "nli", examples=300, steps=5, eval_every=2, eval_examples=30,
                                lr=3e-3, progress=False)
    curve = {point["step"]: point["accuracy"] for point in record["validation_curve"]}
    assert list(curve) == [2, 4, 5]
    best = max(curve.values())
    assert record["chosen_step"] == min(step for step, accuracy in curve.items() if accuracy == best)
    assert record["validation"]["accuracy"] == pytest.approx(best)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "nli").eval()
    rescored = _accuracy(model, AutoTokenizer.from_pretrained(tmp_path / "nli"), keyfacts_nli_examples(30, "validation", 1))
    assert rescored["accuracy"] == pytest.approx(best)
    # the same run without a choice ends in its last state: the saved judge is that state only
    # when the last step was the one chosen (accuracies this early often tie, so step 2 wins)
    train_keyfacts_nli(tmp_path / "last", examples=300, steps=5, eval_examples=30, lr=3e-3, progress=False)
    last = AutoModelForSequenceClassification.from_pretrained(tmp_path / "last").state_dict()
    same = all(torch.equal(value, last[name]) for name, value in model.state_dict().items())
    assert same == (record["chosen_step"] == 5)


def test_a_judge_started_from_a_causal_lm_separates_premise_and_hypothesis(tmp_path):
    """init="keyfacts-tiny": the policy's body under a new 3-way head, its tokenizer with a pair
    template (premise </s> hypothesis </s>); the entailment path loads and scores with it."""
    from transformers import AutoTokenizer

    from lmgym.rewards.nli import train_keyfacts_nli

    record = train_keyfacts_nli(tmp_path / "nli", examples=60, steps=2, eval_examples=12, batch_size=8,
                                init="keyfacts-tiny", progress=False)
    assert record["init"] == "keyfacts-tiny"
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "nli")
    ids = tokenizer("Ana owns 3 cats.", "Ana owns 4 cats.")["input_ids"]
    assert ids.count(tokenizer.eos_token_id) == 2 and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids) == f"Ana owns 3 cats.{tokenizer.eos_token}Ana owns 4 cats.{tokenizer.eos_token}"
    judge = EntailmentJudge(str(tmp_path / "nli"), max_length=256)
    probabilities, truncated = judge.entailment_probabilities(["Ana owns 3 cats.", "Bo lives in Oslo."],
                                                              ["Ana owns 3 cats.", "Bo lives in Rome."])
    assert probabilities.shape == (2,) and ((0 < probabilities) & (probabilities < 1)).all() and not truncated.any()


def test_the_shipped_judge_scores_what_its_record_says():
    """keyfacts-nli (lmgym/assets, SHA-256 checked on load) re-scored on its held-out test
    examples gives the accuracy its lmgym_nli.json records, and the entailment path loads it by name."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lmgym.rewards.nli import _accuracy, resolve_nli

    path = resolve_nli("keyfacts-nli")
    record = json.loads((Path(path) / "lmgym_nli.json").read_text())
    rows = keyfacts_nli_examples(record["held_out"]["examples"], "test", record["seed"] + 1)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    scored = _accuracy(model, AutoTokenizer.from_pretrained(path), rows)
    assert scored["accuracy"] == pytest.approx(record["held_out"]["accuracy"], abs=0.01)  # argmax ties may flip across CPUs
    assert scored["accuracy"] > 0.5  # chance is 1/3
    judge = EntailmentJudge("keyfacts-nli", max_length=256)
    probabilities, _ = judge.entailment_probabilities(["Ana owns 3 cats. Bo lives in Oslo."] * 2,
                                                      ["Ana owns 3 cats.", "Bo lives in Rome."])
    assert probabilities.shape == (2,)
