"""The Hugging Face ``transformers`` backend: always available, any causal LM."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from lmgym.generation.generator import Generation, Generator, resolve_model
from lmgym.models import forward_accepts

__all__ = ["HFGenerator"]


class HFGenerator(Generator):
    """Sampling with ``model.generate``.

    Args:
        model: a hub name, a local folder, or an already loaded causal LM (then pass
            ``tokenizer``). A loaded model is sampled from directly: a trainer can share it.
        tokenizer: defaults to the model's own (``AutoTokenizer``).
        dtype: for loading by name (default float32 on CPU, bfloat16 on CUDA).
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
        batch_size: prompts per ``generate`` call (memory bound).
        share_prompts: with ``n > 1`` samples per prompt, run each prompt (but its last token)
            through the model once and start its n samples from copies of its key/value cache,
            instead of letting ``generate`` repeat the prompt n times before its first pass. The
            same samples up to float rounding (the random draws are the same: same rows, same
            order); False: ``generate``'s own expansion.
    """

    backend = "hf"

    def __init__(self, model, tokenizer=None, dtype=None, device: str | None = None, batch_size: int = 64,
                 share_prompts: bool = True):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(model, torch.nn.Module) or hasattr(model, "generate"):  # a loaded model (or a view of one)
            if tokenizer is None:
                raise ValueError("pass tokenizer= along with a loaded model")
            self.model = model
        else:
            path = resolve_model(model)
            dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_model_len = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.batch_size = batch_size
        self.share_prompts = share_prompts
        self.model_name = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generate(self, generations, n, temperature, top_p, max_tokens, stop, seed) -> None:
        was_training = self.model.training
        self.model.eval()
        rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
        try:
            with rng, torch.no_grad():
                if seed is not None:
                    torch.manual_seed(seed)
                for start in range(0, len(generations), self.batch_size):
                    self._generate_batch(generations[start : start + self.batch_size], n, temperature, top_p, max_tokens, stop)
        finally:
            self.model.train(was_training)

    def _generate_batch(self, batch: list[Generation], n, temperature, top_p, max_tokens, stop) -> None:
        width = max(len(g.prompt_token_ids) for g in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, generation in enumerate(batch):  # left padding: generation continues at the right edge
            ids = generation.prompt_token_ids
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            attention_mask[i, width - len(ids) :] = 1
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else dict(do_sample=False)
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        rows = dict(num_return_sequences=n)
        # (greedy n > 1 stays generate's error: n copies of one greedy answer are not n samples)
        cache = self._shared_prompt_cache(input_ids, attention_mask, n) if self.share_prompts and temperature > 0 else None
        if cache is not None:  # the n copies of each prompt, in generate's own order, continuing from its cache
            input_ids, attention_mask = input_ids.repeat_interleave(n, 0), attention_mask.repeat_interleave(n, 0)
            rows = dict(num_return_sequences=1, past_key_values=cache)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_tokens,
            **rows,
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
            output_logits=True,  # the raw (unprocessed) logits: the policy's own distribution
            return_dict_in_generate=True,
            stop_strings=stop or None,
            tokenizer=self.tokenizer if stop else None,
            **sampling,
        )
        new_tokens = output.sequences[:, width:]
        logits = torch.stack(output.logits, dim=1).float()  # (batch * n, steps, vocab)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens[..., None]).squeeze(-1)
        new_tokens, logprobs = new_tokens.tolist(), logprobs.tolist()
        for row, (token_ids, token_logprobs) in enumerate(zip(new_tokens, logprobs)):
            batch[row // n].completions.append(self.finish(token_ids, token_logprobs, max_tokens, stop))

    def _shared_prompt_cache(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int):
        """The key/value cache of each (left-padded) prompt without its last token, computed once
        and repeated for its n samples; None where that does not apply (n = 1, one-column
        prompts, a model whose forward takes no cache or returns none)."""
        if n < 2 or input_ids.shape[1] < 2:
            return None
        if not (forward_accepts(self.model, "past_key_values") and forward_accepts(self.model, "position_ids")):
            return None
        head, mask = input_ids[:, :-1], attention_mask[:, :-1]
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # numbered as generate numbers them
        keep = {"logits_to_keep": 1} if forward_accepts(self.model, "logits_to_keep") else {}
        output = self.model(input_ids=head, attention_mask=mask, position_ids=positions, use_cache=True, **keep)
        cache = getattr(output, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave") or cache.get_seq_length() != head.shape[1]:
            return None
        cache.batch_repeat_interleave(n)
        return cache

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        missing, unexpected = self.model.load_state_dict(dict(state_dict), strict=False)
        tied = {k for k in missing if "lm_head" in k and getattr(self.model.config, "tie_word_embeddings", False)}
        if set(missing) - tied or unexpected:
            raise ValueError(f"state_dict does not match the model: missing {sorted(set(missing) - tied)[:5]}, unexpected {unexpected[:5]}")

    def close(self) -> None:
        self.model = None
