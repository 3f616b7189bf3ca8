"""The one interface every sampler implements, whatever runs it.

``generate(prompts, n=..., temperature=..., top_p=..., max_tokens=..., stop=..., seed=...)``
returns, per prompt, a :class:`Generation` holding the prompt's token ids and ``n``
:class:`Completion` s, each with its sampled token ids and their per-token log-probs.
``load_weights(state_dict)`` makes the sampler follow the trainer.

Token ids are kept end to end: the prompt is tokenized once, here, and the completion's ids
are the sampled ids, never a re-tokenization of the decoded text.

``Completion.logprobs[t]`` is ``log pi(token_t | prompt, tokens_<t)`` under the model's own
distribution (temperature 1, no top-p), which is what a trainer recomputes for importance
ratios and KL. With ``temperature != 1`` or ``top_p < 1`` the tokens were *sampled* from the
modified distribution; the log-probs still describe the unmodified policy.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Completion", "Generation", "Generator", "resolve_model"]


@dataclass
class Completion:
    text: str  # decoded token_ids, cut before a stop string
    token_ids: list[int]  # the sampled ids (EOS included when the model emitted it)
    logprobs: list[float]  # log pi(token | prefix), one per token id
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (max_tokens reached)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class Generation:
    prompt: str
    prompt_token_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


def resolve_model(model: str | os.PathLike) -> str:
    """A local model folder as a string, or a hub name passed through; clear error for a bad path.
    ``"default"`` and the names in :data:`lmgym.hub.NAMED` resolve to their folders."""
    from lmgym.hub import NAMED, resolve

    text = str(model)
    if text == "default" or text in NAMED:
        return resolve(text)
    looks_local = text.startswith((".", "/", "~")) or os.sep in text and not _looks_like_hub_id(text)
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{text!r} is a folder but not a Hugging Face model (no config.json)")
        return str(path)
    if looks_local:
        raise FileNotFoundError(f"model path {text!r} does not exist")
    return text


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


class Generator(abc.ABC):
    """Batched sampling with log-probs, and weight sync from the trainer.

    Subclasses set ``self.tokenizer`` and ``self.max_model_len`` and implement
    :meth:`_generate` and :meth:`load_weights`.
    """

    backend: str = "?"
    tokenizer: Any
    max_model_len: int

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 64,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        prefix: str = "",
        suffix: str = "",
    ) -> list[Generation]:
        """Sample ``n`` completions for each prompt. ``temperature=0`` is greedy decoding.

        ``prefix`` and ``suffix`` (a return-conditioning label, say) are tokenized on their own
        and joined to each prompt's ids at the token level (see :meth:`encode`)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of str; wrap a single prompt in a list")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        stop = [stop] if isinstance(stop, str) else list(stop or [])
        prompt_ids = self.encode(prompts, max_tokens, prefix=prefix, suffix=suffix)
        generations = [Generation(prefix + prompt + suffix, ids) for prompt, ids in zip(prompts, prompt_ids)]
        if generations:
            self._generate(generations, n, temperature, top_p, max_tokens, stop, seed)
        return generations

    def encode(self, prompts: Sequence[str], max_tokens: int = 0, prefix: str = "", suffix: str = "") -> list[list[int]]:
        """Tokenize prompts once (no special tokens added) and check they fit the context.

        ``prefix`` and ``suffix`` are tokenized on their own and their ids put around each
        prompt's: with a BPE tokenizer, ``tokenize(prompt + label)`` may merge across the seam
        and change the prompt's last tokens, so an agent could not tell the prompt's ids from
        the label's. Joined by ids, a prompt reads the same with any label, and the label is
        exactly ``len(tokenize(label))`` ids (for a character tokenizer the two agree)."""
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        before = self._ids(prefix)
        after = self._ids(suffix)
        if before or after:
            ids = [before + list(row) + after for row in ids]
        for i, row in enumerate(ids):
            if not row:
                raise ValueError(f"prompt {i} is empty after tokenization")
            if len(row) + max_tokens > self.max_model_len:
                raise ValueError(
                    f"prompt {i} has {len(row)} tokens; with max_tokens={max_tokens} that exceeds the "
                    f"model's context of {self.max_model_len} tokens: shorten the prompt or lower max_tokens"
                )
        return ids

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def finish(self, token_ids: list[int], logprobs: list[float], max_tokens: int, stop: list[str]) -> Completion:
        """Build a Completion from sampled ids: cut at EOS or the first stop string."""
        eos = self.tokenizer.eos_token_id
        if eos in token_ids:
            cut = token_ids.index(eos) + 1
            return Completion(self._decode(token_ids[: cut - 1]), token_ids[:cut], logprobs[:cut], "stop")
        text = self._decode(token_ids)
        if stop and any(s in text for s in stop):
            for k in range(1, len(token_ids) + 1):  # the first token that completes a stop string
                prefix = self._decode(token_ids[:k])
                hits = [prefix.find(s) for s in stop if s in prefix]
                if hits:
                    return Completion(prefix[: min(hits)], token_ids[:k], logprobs[:k], "stop")
        return Completion(text, token_ids, logprobs, "length" if len(token_ids) >= max_tokens else "stop")

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @abc.abstractmethod
    def _generate(
        self,
        generations: list[Generation],
        n: int,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: list[str],
        seed: int | None,
    ) -> None:
        """Fill ``generation.completions`` for every generation (``n`` each)."""

    @abc.abstractmethod
    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Make the sampler use these weights (a trainer's ``model.state_dict()``)."""

    def close(self) -> None:
        """Release the engine's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def __getattr__(name: str):
    # make_generator lived here before the interface stopped importing its backends
    if name in ("make_generator", "vllm_available"):
        import lmgym.generation

        return getattr(lmgym.generation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
