"""Summarization tasks, scored by an entailment judge, a learned reward model, or (offline)
known key facts. Rewards: :mod:`lmgym.rewards.summarization`.

- ``lmgym/KeyFacts-v0`` (:class:`KeyFactsTask`): procedural documents of key facts and filler
  sentences, offline: the family end to end on a CPU. Reward ``judge="facts"`` (default):
  the share of key facts the summary states (subject and value in one sentence), minus the
  share of sentences that state something false about a subject, times the brevity term;
  ``judge="entailment"`` scores with an NLI model instead.
- ``lmgym/TLDR-Entailment-v0``, ``lmgym/TLDR-RM-v0`` (:class:`TLDRTask`, the latter registered with
  ``judge="reward_model"``): Reddit TL;DR,
  hub dataset ``trl-lib/tldr`` (OpenAI's filtered TL;DR; ``prompt``/``completion``), or local
  jsonl files ``{split}.jsonl`` with ``prompt`` (or ``post``) and ``completion`` (or ``summary``).
  Scored by the entailment judge, or by a reward model trained with ``lmgym train-rm``
  (``reward_model=<path>``; the reward is the ensemble mean, ``info["rm_std"]`` its spread).
- ``lmgym/CNNDM-Entailment-v0`` (:class:`CNNDMTask`): CNN/DailyMail, hub ``abisee/cnn_dailymail``
  (``3.0.0``; ``article``/``highlights``), or local ``{split}.jsonl`` with those fields.

Ground truth (``info["ground_truth"]``, what evaluation reports beside the reward): by default
the training judge itself, except on KeyFacts, where it is always the exact key-facts judge. Set
``ground_truth="entailment"`` (or ``"reward_model"`` with ``ground_truth_model=`` a held-out gold
RM) to train on one judge and be evaluated by another; ``lmgym/TLDR-RM-v0`` is registered with
``ground_truth="entailment"``, so an agent that games the learned RM shows up as a gap.

Every task reports ROUGE-1/2/L against the reference summary in ``info["rouge"]`` (auxiliary:
never part of the reward). Judges and reward models are loaded once per process and shared
by every env that names the same one; the vector env scores a whole step in one batch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from lmgym.core import Problem, Task
from lmgym.data import held_out_split, load_hub_rows, local_files, read_jsonl
from lmgym.rewards.summarization import DEFAULT_NLI_MODEL, EntailmentJudge, RewardModel, brevity, rouge, split_sentences



@lru_cache(maxsize=8)
def shared_judge(model: str, aggregate: str, max_ratio: float, backend: str) -> EntailmentJudge:
    return EntailmentJudge(model, aggregate=aggregate, max_ratio=max_ratio, backend=backend)


# Reward models that ship with lmgym, by name (``reward_model="keyfacts-rm"``): folder under
# lmgym/assets. A fixed artifact like the tiny policies (lmgym.pretrain.SHIPPED); its
# lmgym_rm.json records how it was trained and its held-out pair accuracy.
SHIPPED_RMS = {"keyfacts-rm": "keyfacts-rm"}


def _shipped_rm(name: str | None) -> str | None:
    if name in SHIPPED_RMS:
        return str(Path(__file__).resolve().parents[1] / "assets" / SHIPPED_RMS[name])
    return name


@lru_cache(maxsize=8)
def shared_reward_model(path: str) -> RewardModel:
    return RewardModel.load(path)


class SummarizationTask(Task):
    """Shared scoring. Subclasses provide problems whose ``meta["document"]`` is the text to
    summarize and whose ``answer`` is the reference summary.

    Args:
        judge: ``"entailment"`` or ``"reward_model"`` (the key-facts task adds ``"facts"``).
        nli_model: the NLI model for the entailment judge (hub name or path).
        aggregate: ``"min"`` or ``"mean"`` over summary sentences.
        max_ratio: the brevity term's free length, as a share of the document's words.
        reward_model: path of a reward model saved by ``lmgym train-rm``, or a shipped one's name
            (``"keyfacts-rm"``: :data:`SHIPPED_RMS`).
        judge_backend: ``"hf"`` or ``"vllm"`` (its pooling runner, when it supports the model).
        ground_truth: the judge evaluation trusts (``info["ground_truth"]``): one of ``judges``;
            None: the training judge (KeyFacts: ``"facts"``).
        ground_truth_model: with ``ground_truth="reward_model"``: a held-out gold RM's path.
    """

    plain_template = "{question}"
    chat_instruction = "Summarize the text in one or two sentences."
    judges = ("entailment", "reward_model")

    default_ground_truth: str | None = None  # None: the training judge

    def __init__(self, judge: str = "entailment", nli_model: str = DEFAULT_NLI_MODEL, aggregate: str = "min",
                 max_ratio: float = 0.5, reward_model: str | None = None, judge_backend: str = "hf",
                 ground_truth: str | None = None, ground_truth_model: str | None = None):
        ground_truth = ground_truth or self.default_ground_truth or judge
        reward_model, ground_truth_model = (_shipped_rm(reward_model), _shipped_rm(ground_truth_model))
        for name, value, model in (("judge", judge, reward_model), ("ground_truth", ground_truth, ground_truth_model)):
            if value not in self.judges:
                raise ValueError(f"{name} must be one of {self.judges}, got {value!r}")
            if value == "reward_model":
                option = "reward_model" if name == "judge" else "ground_truth_model"
                if model is None:
                    raise ValueError(f"{self.name}: {name}='reward_model' needs {option}=<path of a model trained with "
                                     "`lmgym train-rm`>")
                if not (Path(model) / "lmgym_rm.json").is_file():
                    raise FileNotFoundError(f"no lmgym reward model at {model} (train one with `lmgym train-rm`)")
        self.judge, self.nli_model, self.aggregate, self.max_ratio = judge, nli_model, aggregate, max_ratio
        self.reward_model, self.judge_backend = reward_model, judge_backend
        self.ground_truth, self.ground_truth_model = ground_truth, ground_truth_model

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[tuple[float, dict]]:
        documents = [p.meta["document"] for p in problems]
        references = [p.answer for p in problems]
        infos = [{"rouge": scores} for scores in rouge(completions, references)] if problems else []
        rewards = self.rewards(problems, documents, completions, infos, self.judge, self.reward_model)
        if (self.ground_truth, self.ground_truth_model) == (self.judge, self.reward_model):
            truths = rewards
        else:  # details of the ground-truth judge under their own key, so they never mix with the reward's
            details = [{} for _ in infos]
            truths = self.rewards(problems, documents, completions, details, self.ground_truth, self.ground_truth_model)
            for info, detail in zip(infos, details):
                info["ground_truth_details"] = detail
        for info, truth in zip(infos, truths):
            info["ground_truth"] = float(truth)
        return list(zip(rewards, infos))

    def rewards(self, problems, documents, summaries, infos, judge: str, reward_model: str | None) -> list[float]:
        """One judge's rewards (``judge`` one of :attr:`judges`), its details added to ``infos``."""
        if judge == "entailment":
            judge = shared_judge(self.nli_model, self.aggregate, self.max_ratio, self.judge_backend)
            out = []
            for info, judgement in zip(infos, judge.judge(documents, summaries)):
                info.update(entailment=judgement.entailment, sentences=judgement.sentences, brevity=judgement.brevity,
                            truncated=judgement.truncated)
                out.append(judgement.reward)
            return out
        model = shared_reward_model(str(reward_model))
        means, stds = model.score([p.question for p in problems], list(summaries))
        for info, mean, std in zip(infos, means, stds):
            info.update(rm_mean=float(mean), rm_std=float(std))
        return [float(m) for m in means]


# --- the offline procedural task ----------------------------------------------------------

_PEOPLE = ["Ada", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kira", "Luca", "Mina",
           "Nils", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Viktor", "Wen", "Yara", "Zoe"]
_CITIES = ["Oslo", "Lima", "Perth", "Quito", "Riga", "Sofia", "Tunis", "Vienna", "Warsaw", "Zagreb", "Accra", "Bern"]
_BUILDINGS = ["library", "museum", "station", "school", "bakery", "theatre", "hospital", "market"]
_ANIMALS = ["cats", "dogs", "goats", "horses", "parrots", "rabbits"]
_FILLERS = ["It was a {adj} day.", "Nothing else of note happened that week.", "People talked about the {adj} weather.",
            "The newspapers wrote little else.", "Many visitors came and went.", "The evening was {adj} and quiet."]
_ADJECTIVES = ["cold", "warm", "grey", "bright", "windy", "calm"]


def _fact(rng: np.random.Generator, used: set[str]) -> tuple[str, str, str]:
    """One key fact: ``(subject, value, sentence)`` with a subject not in ``used``."""
    while True:
        kind = int(rng.integers(4))
        person = str(rng.choice(_PEOPLE))
        if kind == 0:
            subject, value = person, str(int(rng.integers(1900, 2020)))
            sentence = f"{subject} was born in {value}."
        elif kind == 1:
            subject, value = person, str(rng.choice(_CITIES))
            sentence = f"{subject} lives in {value}."
        elif kind == 2:
            subject = f"The {rng.choice(_BUILDINGS)} in {rng.choice(_CITIES)}"
            value = str(int(rng.integers(2, 40)))
            sentence = f"{subject} has {value} floors."
        else:
            subject, value = person, str(int(rng.integers(2, 30)))
            sentence = f"{subject} owns {value} {rng.choice(_ANIMALS)}."
        if subject not in used:
            used.add(subject)
            return subject, value, sentence


class KeyFactsTask(SummarizationTask):
    """Procedural documents: ``facts`` key facts among ``fillers`` filler sentences, shuffled.
    The reference summary is the key facts in document order.

    Args:
        facts, fillers: sentences of each kind per document.
        test_size, validation_size: documents in the held-out splits (no split shares a document
            with another: :func:`lmgym.data.held_out_split` of the document's text).
        judge: ``"facts"`` (default, exact), ``"entailment"`` or ``"reward_model"``.
        false_penalty: subtracted per sentence that misstates a subject, as a share of ``facts``.
        max_ratio: the brevity term's free length (0.7: a reference summary, about
            facts/(facts+fillers) of the words, is not penalised; a copy scores 0).
    """

    name = "KeyFacts"
    judges = ("facts", "entailment", "reward_model")
    default_ground_truth = "facts"  # exact: whatever judge trains, evaluation knows the truth
    TRAIN_SIZE = 2**31 - 1
    _HELD_OUT_SEEDS = {"test": 1, "validation": 2}  # the documents' seed streams; train's is 0

    def __init__(self, facts: int = 3, fillers: int = 2, test_size: int = 500, validation_size: int = 500, judge: str = "facts",
                 false_penalty: float = 1.0, max_ratio: float = 0.7, **kwargs):
        super().__init__(judge=judge, max_ratio=max_ratio, **kwargs)
        if facts < 1 or fillers < 0 or test_size < 1 or validation_size < 1:
            raise ValueError("facts must be >= 1, fillers >= 0, test_size and validation_size >= 1")
        self.facts, self.fillers, self.false_penalty = facts, fillers, false_penalty
        self.sizes = {"test": test_size, "validation": validation_size}
        self._held_out: dict[str, list[dict]] = {}

    def _document(self, seed: Sequence[int]) -> dict:
        rng = np.random.default_rng(list(seed))
        used: set[str] = set()
        facts = [_fact(rng, used) for _ in range(self.facts)]
        fillers = [str(rng.choice(_FILLERS)).format(adj=rng.choice(_ADJECTIVES)) for _ in range(self.fillers)]
        sentences = [(s, i) for i, (_, _, s) in enumerate(facts)] + [(f, None) for f in fillers]
        order = rng.permutation(len(sentences))
        document = " ".join(sentences[i][0] for i in order)
        key_order = [sentences[i][1] for i in order if sentences[i][1] is not None]
        reference = " ".join(facts[i][2] for i in key_order)
        return {"document": document, "reference": reference, "facts": [(s, v) for s, v, _ in facts]}

    def _make(self, index: int, record: dict) -> Problem:
        return Problem(index=index, question=record["document"] + "\nTL;DR:", answer=record["reference"],
                       solution=" " + record["reference"], meta={"document": record["document"], "facts": record["facts"]})

    def num_problems(self, split: str) -> int:
        self.check_split(split)
        return self.sizes.get(split, self.TRAIN_SIZE)

    def problem(self, split: str, index: int) -> Problem:
        self.check_split(split)
        if split in self._HELD_OUT_SEEDS:
            if split not in self._held_out:
                documents, attempt = [], 0
                while len(documents) < self.sizes[split]:
                    record = self._document((self._HELD_OUT_SEEDS[split], attempt))
                    attempt += 1
                    if held_out_split(record["document"]) == split:
                        documents.append(record)
                self._held_out[split] = documents
            return self._make(index, self._held_out[split][index])
        attempt = 0
        while True:  # the train stream skips documents that are held out (validation or test)
            record = self._document((0, index, attempt))
            if held_out_split(record["document"]) == "train":
                return self._make(index, record)
            attempt += 1

    def candidate_summary(self, problem: Problem, rng: np.random.Generator, misstatements: float = 0.5) -> str:
        """A random summary of a document: some of its key facts (one misstated with probability
        ``misstatements``), perhaps a filler sentence. Material for synthetic preferences."""
        facts = problem.meta["facts"]
        reference = split_sentences(problem.answer)
        keep = rng.permutation(len(reference))[: int(rng.integers(0, len(reference) + 1))]
        sentences = [reference[i] for i in sorted(keep)]
        if sentences and rng.random() < misstatements:  # misstate one fact: swap its value for another of its kind
            i = int(rng.integers(len(sentences)))
            for subject, value in facts:
                if subject in sentences[i]:
                    if value.isdigit():
                        wrong = str(int(value) + int(rng.integers(1, 9)))
                    else:
                        wrong = str(rng.choice([c for c in _CITIES if c != value]))
                    sentences[i] = sentences[i].replace(f" {value}", f" {wrong}", 1)
                    break
        if rng.random() < 0.3:
            others = [s for s in split_sentences(problem.meta["document"]) if s not in reference]
            if others:
                sentences.insert(int(rng.integers(len(sentences) + 1)), str(rng.choice(others)))
        return " " + " ".join(sentences) if sentences else ""

    def preference_pairs(self, n: int, split: str = "train", seed: int = 0, misstatements: float = 0.5):
        """``n`` synthetic preference pairs with a known ground truth: two candidate summaries
        of one document, the one with the higher key-facts reward chosen (ties skipped).
        ``misstatements``: how often a candidate misstates a fact (telling those apart needs
        checking the summary against the document; the rest is coverage and brevity)."""
        from lmgym.rewards.summarization import PreferencePair

        rng = np.random.default_rng([seed, {"train": 0, "test": 1, "validation": 2}[split]])
        pairs, index = [], 0
        while len(pairs) < n:
            problem = self.problem(split, index % self.num_problems(split))
            index += 1
            a, b = (self.candidate_summary(problem, rng, misstatements) for _ in range(2))
            ra, rb = (self.facts_reward(problem, summary)[0] for summary in (a, b))
            if ra != rb:
                chosen, rejected = (a, b) if ra > rb else (b, a)
                pairs.append(PreferencePair(problem.question, chosen, rejected))
        return pairs

    def facts_reward(self, problem: Problem, summary: str) -> tuple[float, dict]:
        """The key-facts reward (fact score x brevity) and its details: the ``judge="facts"``
        reward, and the ground truth of :meth:`preference_pairs` whatever the judge."""
        score, details = self.fact_score(problem.meta["facts"], summary)
        factor = brevity(summary, problem.meta["document"], self.max_ratio)
        return score * factor, {**details, "brevity": factor}

    def rewards(self, problems, documents, summaries, infos, judge: str, reward_model: str | None) -> list[float]:
        if judge != "facts":
            return super().rewards(problems, documents, summaries, infos, judge, reward_model)
        out = []
        for problem, summary, info in zip(problems, summaries, infos):
            reward, details = self.facts_reward(problem, summary)
            info.update(details)
            out.append(reward)
        return out

    def fact_score(self, facts: Sequence[tuple[str, str]], summary: str) -> tuple[float, dict]:
        """Coverage of the key facts minus misstatements, in [0, 1]. Subjects and values match
        as whole words, case-insensitively ("16" is not stated by "169")."""
        sentences = split_sentences(summary)
        states = lambda sentence, text: re.search(rf"(?<!\w){re.escape(text)}(?!\w)", sentence, re.IGNORECASE) is not None
        covered = [any(states(s, subject) and states(s, value) for s in sentences) for subject, value in facts]
        false = sum(any(states(s, subject) and not states(s, value) for subject, value in facts) for s in sentences)
        score = max(0.0, (sum(covered) - self.false_penalty * false) / len(facts))
        return score, {"facts_covered": int(sum(covered)), "facts_total": len(facts), "false_statements": false}


# --- hub datasets ---------------------------------------------------------------------------


class _HubSummarizationTask(SummarizationTask):
    """Problems from a hub dataset or local jsonl files (one per split)."""

    hub: tuple[str, str | None] = ("", None)
    local_folder = ""
    splits = ("train", "validation", "test")
    split_names: dict[str, str] = {}

    def __init__(self, data_dir: str | os.PathLike | None = None, data_files: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.data_dir, self.data_files = data_dir, data_files
        self._rows: dict[str, list[dict]] = {}

    def rows(self, split: str) -> list[dict]:
        self.check_split(split)
        if split not in self._rows:  # each split on first use: a local copy may hold only some of them
            data_files = None if self.data_files is None else {split: self.data_files.get(split)}
            if data_files is not None and data_files[split] is None:
                raise ValueError(f"data_files has no {split!r} split (has {sorted(self.data_files)})")
            files = local_files(self.local_folder, {split: f"{split}.jsonl"}, data_dir=self.data_dir, data_files=data_files)
            if files is not None:
                self._rows[split] = read_jsonl(files[split])
            else:
                name, config = self.hub
                self._rows[split] = load_hub_rows(self.local_folder, name, config, self.split_names.get(split, split))
        return self._rows[split]

    def num_problems(self, split: str) -> int:
        return len(self.rows(split))

    def problem(self, split: str, index: int) -> Problem:
        document, reference = self.fields(self.rows(split)[index])
        return Problem(index=index, question=self.prompt(document), answer=reference, solution=" " + reference,
                       meta={"document": document})

    def fields(self, row: dict) -> tuple[str, str]:
        raise NotImplementedError

    def prompt(self, document: str) -> str:
        return document + "\nTL;DR:"


class TLDRTask(_HubSummarizationTask):
    """Reddit TL;DR (``trl-lib/tldr``). The document is the post (subreddit, title and body,
    as in the dataset's prompt, without its trailing ``TL;DR:``)."""

    name = "TLDR"
    hub = ("trl-lib/tldr", None)
    local_folder = "tldr"
    splits = ("train", "validation", "test")

    def fields(self, row: dict) -> tuple[str, str]:
        text = row.get("prompt") or row.get("post")
        summary = row.get("completion") or row.get("summary")
        if text is None or summary is None:
            raise ValueError(f"a TL;DR row needs prompt (or post) and completion (or summary); got {sorted(row)}")
        text = text.rstrip()
        if text.endswith("TL;DR:"):
            text = text[: -len("TL;DR:")].rstrip()
        return text, summary.strip()


class CNNDMTask(_HubSummarizationTask):
    """CNN/DailyMail 3.0.0 (``abisee/cnn_dailymail``): summarize ``article`` like ``highlights``."""

    name = "CNNDM"
    hub = ("abisee/cnn_dailymail", "3.0.0")
    local_folder = "cnn_dailymail"
    splits = ("train", "validation", "test")

    def fields(self, row: dict) -> tuple[str, str]:
        if "article" not in row or "highlights" not in row:
            raise ValueError(f"a CNN/DM row needs article and highlights; got {sorted(row)}")
        return row["article"].strip(), row["highlights"].strip()
