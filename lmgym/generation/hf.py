"""The Hugging Face ``transformers`` backend: always available, any causal LM."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from lmgym.generation.generator import Generation, Generator, resolve_model

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
    """

    backend = "hf"

    def __init__(self, model, tokenizer=None, dtype=None, device: str | None = None, batch_size: int = 64):
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
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            max_new_tokens=max_tokens,
            num_return_sequences=n,
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

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        missing, unexpected = self.model.load_state_dict(dict(state_dict), strict=False)
        tied = {k for k in missing if "lm_head" in k and getattr(self.model.config, "tie_word_embeddings", False)}
        if set(missing) - tied or unexpected:
            raise ValueError(f"state_dict does not match the model: missing {sorted(set(missing) - tied)[:5]}, unexpected {unexpected[:5]}")

    def close(self) -> None:
        self.model = None
