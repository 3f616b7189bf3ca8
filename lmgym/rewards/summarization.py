"""Rewards for summaries: an NLI entailment judge, learned Bradley-Terry reward models (and
their ensembles), ROUGE against references, and the brevity term they share.

Entailment (:class:`EntailmentJudge`). The summary is split into sentences (:func:`split_sentences`:
a regex on ``.``, ``!``, ``?`` and line breaks; no NLTK data needed offline); an NLI
cross-encoder (``AutoModelForSequenceClassification``) gives P(document entails sentence) for
each; ``aggregate="min"`` (default: one unsupported sentence sinks the summary) or ``"mean"``
combines them; the result is multiplied by :func:`brevity`. Documents longer than the judge's
context are truncated from the end (``truncation="only_first"``: the summary sentence is never
cut); ``info["truncated"]`` says when. Documented scores for bad input: an empty (or
whitespace-only) summary scores 0; a summary as long as the document (a copy) or longer scores
0; a non-English or otherwise out-of-domain text is scored as it is (the judge decides, no
language filter). The default judge, ``cross-encoder/nli-distilroberta-base`` (a
``RobertaForSequenceClassification``; any NLI model with an ``entailment`` label works), is
downloaded from the hub on first use; :func:`build_tiny_nli` builds a local model of the same
class for tests and CPUs.

Learned reward models (:class:`RewardModel`, :func:`train_reward_model`). A Bradley-Terry RM
is ``AutoModelForSequenceClassification`` with ``num_labels = K`` on top of any causal LM
(last non-padding token) or encoder: K heads on one trunk form an ensemble (each head trained on
its own bootstrap mask of the pairs), and ``members > 1`` trains K separate models. ``score``
returns the ensemble mean and the epistemic standard deviation (across heads or members), in
batches. Saved with ``save_pretrained`` plus ``lmgym_rm.json``; loadable by vLLM's pooling
runner (it is a standard sequence-classification checkpoint).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_NLI_MODEL = "cross-encoder/nli-distilroberta-base"
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")


def split_sentences(text: str) -> list[str]:
    """Sentences: runs of text ending in ``.``/``!``/``?`` or a line break; blanks dropped."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip() and any(c.isalnum() for c in s)]


def brevity(summary: str, document: str, max_ratio: float = 0.5) -> float:
    """1 while the summary has at most ``max_ratio`` of the document's words, then falling
    linearly to 0 at the document's own length; 0 for an empty summary or one as long as (or
    longer than) the document. So neither an empty nor a copied summary can win."""
    summary_words, document_words = len(summary.split()), max(len(document.split()), 1)
    if summary_words == 0:
        return 0.0
    ratio = summary_words / document_words
    if ratio <= max_ratio:
        return 1.0
    return max(0.0, (1.0 - ratio) / (1.0 - max_ratio))


def rouge(predictions: Sequence[str], references: Sequence[str], types: Sequence[str] = ("rouge1", "rouge2", "rougeL")) -> list[dict]:
    """ROUGE F-measures per pair, from Google's ``rouge-score`` package (what ``evaluate``'s
    ``rouge`` metric wraps; used directly so that nothing is downloaded at run time)."""
    scorer = _rouge_scorer(tuple(types))
    return [{name: score.fmeasure for name, score in scorer.score(ref, pred).items()}
            for pred, ref in zip(predictions, references, strict=True)]


_SCORERS: dict = {}


def _rouge_scorer(types):
    if types not in _SCORERS:
        from rouge_score import rouge_scorer

        _SCORERS[types] = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    return _SCORERS[types]


def _device(device):
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(device)``
    (a ``torch.device`` passes through)."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --- entailment ---------------------------------------------------------------------------


@dataclass
class Judgement:
    reward: float
    entailment: list[float]  # P(entailed) per summary sentence
    sentences: list[str]
    brevity: float
    truncated: bool


class EntailmentJudge:
    """P(document entails summary) from an NLI cross-encoder, sentence by sentence, batched.

    Args:
        model: hub name or local path of an NLI ``AutoModelForSequenceClassification``.
        aggregate: ``"min"`` or ``"mean"`` over the summary's sentences.
        max_ratio: see :func:`brevity`.
        max_length: tokens per (document, sentence) pair; the document is truncated to fit.
        batch_size: pairs per forward pass.
        backend: ``"hf"``, or ``"vllm"`` (its pooling runner's ``classify``; falls back to HF,
            with ``fallback_reason`` set, when vLLM is missing or does not support the model).
    """

    def __init__(self, model: str = DEFAULT_NLI_MODEL, aggregate: str = "min", max_ratio: float = 0.5,
                 max_length: int = 512, batch_size: int = 64, device: str | None = None, backend: str = "hf"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if aggregate not in ("min", "mean"):
            raise ValueError(f"aggregate must be 'min' or 'mean', got {aggregate!r}")
        if backend not in ("hf", "vllm"):
            raise ValueError(f"backend must be 'hf' or 'vllm', got {backend!r}")
        self.aggregate, self.max_ratio, self.batch_size = aggregate, max_ratio, batch_size
        self.device = _device(device)
        from lmgym.rewards.nli import resolve_nli

        model = resolve_nli(model)  # "keyfacts-nli": lmgym's own offline judge
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSequenceClassification.from_pretrained(model).to(self.device).eval()
        labels = {str(name).lower(): int(i) for i, name in self.model.config.id2label.items()}
        entail = [i for name, i in labels.items() if name.startswith("entail")]
        if not entail:
            raise ValueError(f"{model} has no 'entailment' label (labels: {sorted(labels)}): not an NLI model")
        self.entailment_index = entail[0]
        self.max_length = min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length)
        self.backend, self.fallback_reason, self._llm = "hf", None, None
        if backend == "vllm":
            self._start_vllm(model)

    def _start_vllm(self, model: str) -> None:
        try:
            import torch

            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process, as lmgym's generator
            if not torch.cuda.is_available():
                os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            from vllm import LLM

            self._llm = LLM(model=model, runner="pooling", max_model_len=self.max_length, dtype="float32",
                            enforce_eager=True, **({"gpu_memory_utilization": 0.2} if torch.cuda.is_available() else {}))
            self.backend = "vllm"
        except Exception as error:  # not installed, or the model is not a supported pooling model
            self.fallback_reason = f"{type(error).__name__}: {error}"[:500]

    def _encode(self, premises: list[str], hypotheses: list[str]):
        return self.tokenizer(premises, hypotheses, truncation="only_first", max_length=self.max_length,
                              padding=True, return_tensors="pt")

    def entailment_probabilities(self, premises: Sequence[str], hypotheses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """P(entailment) for each (premise, hypothesis) pair, and whether the premise was truncated.

        Pairs are batched by length (sorted, then restored to input order), so that a batch
        pads little."""
        import torch

        out, truncated = np.zeros(len(premises)), np.zeros(len(premises), dtype=bool)
        if not len(premises):
            return out, truncated
        lengths = [len(ids) for ids in self.tokenizer(list(premises), list(hypotheses), truncation=False, verbose=False)["input_ids"]]
        truncated[:] = np.array(lengths) > self.max_length
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            chunk_p, chunk_h = [premises[i] for i in rows], [hypotheses[i] for i in rows]
            if self.backend == "vllm":
                out[rows] = self._vllm_probabilities(chunk_p, chunk_h)
                continue
            batch = self._encode(chunk_p, chunk_h).to(self.device)
            with torch.no_grad():
                logits = self.model(**batch).logits.float()
            out[rows] = logits.softmax(-1)[:, self.entailment_index].cpu().numpy()
        return out, truncated

    def _vllm_probabilities(self, premises, hypotheses) -> np.ndarray:
        from vllm.inputs import TokensPrompt

        ids = self.tokenizer(premises, hypotheses, truncation="only_first", max_length=self.max_length)["input_ids"]
        outputs = self._llm.classify([TokensPrompt(prompt_token_ids=row) for row in ids], use_tqdm=False)
        return np.array([output.outputs.probs[self.entailment_index] for output in outputs])

    def judge(self, documents: Sequence[str], summaries: Sequence[str]) -> list[Judgement]:
        """One :class:`Judgement` per (document, summary), all sentences in shared batches."""
        pairs, owners, split = [], [], []
        for i, (document, summary) in enumerate(zip(documents, summaries, strict=True)):
            sentences = split_sentences(summary)
            split.append(sentences)
            for sentence in sentences:
                pairs.append((document, sentence))
                owners.append(i)
        probabilities, truncated = self.entailment_probabilities([p for p, _ in pairs], [h for _, h in pairs])
        per_summary: list[list[float]] = [[] for _ in summaries]
        cut = [False] * len(summaries)
        for owner, p, t in zip(owners, probabilities, truncated):
            per_summary[owner].append(float(p))
            cut[owner] |= bool(t)
        results = []
        for i, (document, summary) in enumerate(zip(documents, summaries)):
            factor = brevity(summary, document, self.max_ratio)
            scores = per_summary[i]
            combined = (min(scores) if self.aggregate == "min" else float(np.mean(scores))) if scores else 0.0
            results.append(Judgement(combined * factor, scores, split[i], factor, cut[i]))
        return results


NLI_SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    # lmgym's own trained KeyFacts judge (lmgym.rewards.nli): ~1M parameters
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384),
    # the default judge's shape (distilroberta-base, 82M parameters): for throughput measurements
    "distilroberta": dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
}


def build_tiny_nli(path: str | os.PathLike, seed: int = 0, corpus: Sequence[str] | None = None, shape: str = "tiny") -> Path:
    """A randomly initialised ``RobertaForSequenceClassification`` NLI model (labels
    contradiction / entailment / neutral, like the default judge) with a byte-level BPE
    tokenizer trained on ``corpus``, saved at ``path``: the real loading and scoring code,
    without the hub. Its probabilities mean nothing until it is trained. ``shape="distilroberta"``
    gives the default judge's size (for throughput numbers)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    corpus = list(corpus or ["The cat sat on the mat. A dog ran in the park. The bridge opened in 1984."])
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=512, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    backend = bpe._tokenizer  # the tokenizers.Tokenizer inside the convenience wrapper
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))  # <s> A </s></s> B </s>
    tokenizer = RobertaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                     cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                     model_max_length=512)
    tokenizer.save_pretrained(path)
    config = RobertaConfig(vocab_size=len(tokenizer), **NLI_SHAPES[shape], max_position_embeddings=514, type_vocab_size=1, num_labels=3,
                           id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
                           label2id={"contradiction": 0, "entailment": 1, "neutral": 2},
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    RobertaForSequenceClassification(config).save_pretrained(path)
    return path


# --- learned reward models ----------------------------------------------------------------


@dataclass
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str


def load_preferences(path: str | os.PathLike | None = None, split: str = "train") -> list[PreferencePair]:
    """Preference pairs from a local jsonl, in either format:

    - ``openai/summarize_from_feedback`` (``comparisons``): ``{"info": {"post": ...},
      "summaries": [{"text": ...}, {"text": ...}], "choice": 0|1}`` (the prompt is the post
      followed by ``"\\nTL;DR:"``; CNN/DM rows use ``info["article"]``);
    - ``{"prompt", "chosen", "rejected"}``.

    Without a path: the hub dataset ``openai/summarize_from_feedback`` (``comparisons``) through
    ``datasets`` (``split`` is ``"train"`` or ``"validation"``).
    """
    if path is None:
        try:
            from datasets import load_dataset

            rows = [dict(row) for row in load_dataset("openai/summarize_from_feedback", "comparisons", split=split)]
        except Exception as error:
            raise RuntimeError("could not load openai/summarize_from_feedback from the hub; pass a local jsonl "
                               f"of preference pairs: {error}") from error
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"preference data not found: {path}")
        with open(path, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    pairs = []
    for number, row in enumerate(rows, 1):
        if {"prompt", "chosen", "rejected"} <= set(row):
            pairs.append(PreferencePair(row["prompt"], row["chosen"], row["rejected"]))
        elif {"info", "summaries", "choice"} <= set(row):
            info = row["info"]
            document = info.get("post") or info.get("article") or ""
            prompt = (f"TITLE: {info['title']}\n" if info.get("title") else "") + f"POST: {document}\nTL;DR:"
            choice = int(row["choice"])
            texts = [s["text"] for s in row["summaries"]]
            pairs.append(PreferencePair(prompt, " " + texts[choice].strip(), " " + texts[1 - choice].strip()))
        else:
            raise ValueError(f"row {number} of {path or 'the hub data'} is neither a comparison nor a prompt/chosen/rejected pair")
    return pairs


@dataclass
class RewardModelConfig:
    """How :func:`train_reward_model` trains. ``heads`` ensemble heads on one trunk; ``members``
    separate models (each with ``heads`` heads)."""

    heads: int = 4
    members: int = 1
    bootstrap: float = 0.8  # each head trains on each pair with this probability
    lr: float = 5e-4
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 512
    seed: int = 0
    extra: dict = field(default_factory=dict)


def bradley_terry_loss(chosen_scores, rejected_scores, mask=None):
    """``-log sigmoid(r_chosen - r_rejected)``, averaged over pairs (and heads, where
    ``mask`` (pairs, heads) says which head trains on which pair)."""
    import torch.nn.functional as F

    losses = -F.logsigmoid(chosen_scores - rejected_scores)
    if mask is None:
        return losses.mean()
    mask = mask.to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


class RewardModel:
    """A Bradley-Terry reward model (or an ensemble of them) that scores in batches.

    ``score(prompts, completions)`` -> ``(mean, std)`` arrays: the ensemble mean reward and the
    standard deviation across heads and members (0 for a single head)."""

    def __init__(self, models: list, tokenizer, max_length: int = 512, device=None):
        self.models, self.tokenizer, self.max_length = models, tokenizer, max_length
        self.device = _device(device)
        for model in self.models:
            model.to(self.device)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        for model in self.models:
            model.config.pad_token_id = self.tokenizer.pad_token_id

    @classmethod
    def from_base(cls, base_model: str, heads: int = 4, members: int = 1, max_length: int = 512, seed: int = 0, device=None):
        """Fresh heads on a causal LM or encoder checkpoint (hub name or path)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base_model)
        models = []
        for member in range(members):
            torch.manual_seed(seed + member)
            model = AutoModelForSequenceClassification.from_pretrained(
                base_model, num_labels=heads, problem_type="regression", ignore_mismatched_sizes=True)  # fresh heads
            models.append(model)
        return cls(models, tokenizer, max_length, device)

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> RewardModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        meta_path = path / "lmgym_rm.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no lmgym reward model at {path} (expected {meta_path}; train one with `lmgym train-rm`)")
        meta = json.loads(meta_path.read_text())
        tokenizer = AutoTokenizer.from_pretrained(path)
        folders = [path] if meta["members"] == 1 else [path / f"member{i}" for i in range(meta["members"])]
        models = [AutoModelForSequenceClassification.from_pretrained(folder) for folder in folders]
        return cls(models, tokenizer, meta.get("max_length", 512), device)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """``save_pretrained`` (member folders when there are several) + ``lmgym_rm.json``,
        written to a temporary folder and renamed into place."""
        from lmgym.io import atomic_dir

        with atomic_dir(path) as staging:
            if len(self.models) == 1:
                self.models[0].save_pretrained(staging)
            else:
                for i, model in enumerate(self.models):
                    model.save_pretrained(staging / f"member{i}")
            self.tokenizer.save_pretrained(staging)
            meta = {"members": len(self.models), "heads": self.models[0].config.num_labels,
                    "max_length": self.max_length, **(extra or {})}
            (staging / "lmgym_rm.json").write_text(json.dumps(meta, indent=2))

    def _batch(self, texts: list[str]):
        return self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                              return_tensors="pt").to(self.device)

    def head_scores(self, prompts: Sequence[str], completions: Sequence[str], grad: bool = False):
        """``(batch, members * heads)`` scores of ``prompt + completion``."""
        import torch

        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        batch = self._batch(texts)
        with torch.set_grad_enabled(grad):
            return torch.cat([model(**batch).logits.float() for model in self.models], dim=1)

    def score(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and spread per (prompt, completion), batched by length (sorted, then
        restored to input order)."""
        for model in self.models:
            model.eval()
        means, stds = np.zeros(len(prompts)), np.zeros(len(prompts))
        order = np.argsort([len(p) + len(c) for p, c in zip(prompts, completions, strict=True)], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            scores = self.head_scores([prompts[i] for i in rows], [completions[i] for i in rows])
            means[rows] = scores.mean(1).cpu().numpy()
            if scores.shape[1] > 1:
                stds[rows] = scores.std(1).cpu().numpy()
        return means, stds

    def accuracy(self, pairs: Sequence[PreferencePair], batch_size: int = 64) -> float:
        """Share of pairs whose chosen completion gets the higher mean score."""
        chosen, _ = self.score([p.prompt for p in pairs], [p.chosen for p in pairs], batch_size)
        rejected, _ = self.score([p.prompt for p in pairs], [p.rejected for p in pairs], batch_size)
        return float(np.mean(chosen > rejected)) if len(pairs) else float("nan")


def train_reward_model(pairs: Sequence[PreferencePair], base_model: str, config: RewardModelConfig | None = None,
                       eval_pairs: Sequence[PreferencePair] = (), progress: bool = True, device=None) -> tuple[RewardModel, list[dict]]:
    """Bradley-Terry training of a (possibly ensembled) reward model; returns it and a log of
    ``{"step", "loss", "eval_accuracy"}`` rows (evaluated after each epoch)."""
    import torch
    from tqdm.auto import tqdm

    config = config or RewardModelConfig()
    if not pairs:
        raise ValueError("no preference pairs to train on")
    rm = RewardModel.from_base(base_model, config.heads, config.members, config.max_length, config.seed, device)
    heads = config.heads * config.members
    rng = np.random.default_rng(config.seed)
    masks = torch.as_tensor(rng.random((len(pairs), heads)) < config.bootstrap)
    masks[masks.sum(1) == 0, 0] = True  # every pair trains some head
    parameters = [p for model in rm.models for p in model.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(pairs) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, 1 - s / total))
    log, step = [], 0
    bar = tqdm(total=total, desc="train-rm", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        for model in rm.models:
            model.train()
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), config.batch_size):
            rows = order[start:start + config.batch_size]
            chunk = [pairs[i] for i in rows]
            scores = rm.head_scores([p.prompt for p in chunk] * 2, [p.chosen for p in chunk] + [p.rejected for p in chunk], grad=True)
            loss = bradley_terry_loss(scores[: len(chunk)], scores[len(chunk):], masks[rows].to(scores.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            log.append({"step": step, "loss": loss.item()})
        if eval_pairs:
            log[-1]["eval_accuracy"] = rm.accuracy(eval_pairs)
    bar.close()
    return rm, log
