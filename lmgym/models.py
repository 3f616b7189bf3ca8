"""lmgym's own tiny models, for CPUs and tests: a character tokenizer (and, with the
generation backends, small Llama configs built on it).

The procedural tasks use a small alphabet (digits, operators, ASCII prose), so a
character-level tokenizer keeps models tiny and sequences honest: every character is one
token, so decoding a prefix of the token ids gives a prefix of the text.
"""

from __future__ import annotations

import string

__all__ = ["CHAT_TEMPLATE", "CHATML_TEMPLATE", "bpe_tokenizer", "char_tokenizer", "forward_accepts"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

# A minimal chat template so that prompt_template="chat" works with lmgym's own models.
CHAT_TEMPLATE = (
    "{% for message in messages %}<{{ message['role'] }}>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def forward_accepts(model, argument: str) -> bool:
    """Whether the forward of the model doing the work takes ``argument`` (e.g. ``logits_to_keep``,
    ``past_key_values``): wrappers with ``get_base_model`` (peft's, lmgym's ``AdaptersOff``) are
    looked through. Cached per model class."""
    for _ in range(4):  # AdaptersOff(peft(model)) at most
        if not hasattr(model, "get_base_model"):
            break
        model = model.get_base_model()
    key = (type(model), argument)
    if key not in _ACCEPTS:
        import inspect

        try:
            _ACCEPTS[key] = argument in inspect.signature(model.forward).parameters
        except (TypeError, ValueError, AttributeError):
            _ACCEPTS[key] = False
    return _ACCEPTS[key]


_ACCEPTS: dict[tuple[type, str], bool] = {}


def char_tokenizer(alphabet: str = string.printable):
    """A ``PreTrainedTokenizerFast`` with one token per character of ``alphabet``.

    Ids 0-3 are ``<pad> <s> </s> <unk>``; characters outside ``alphabet`` map to ``<unk>``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(alphabet))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS.values(), *chars])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# ChatML, as SmolLM2, Qwen and many instruction models use it (special tokens <|im_start|> and
# <|im_end|>, the latter also EOS).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_BPE_CORPUS = (  # what a tiny BPE learns its merges from: the tasks' own kind of text
    "Question: What is 12 + 34? Answer: 46. The answer is 46.\n#### 46\n",
    "She sells 9 eggs for $2 each: 9*2=18 dollars. Then she buys 3 more.\n#### 18\n",
    "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n",
    "The summary of the article: the council approved the new budget on Monday.\n",
    "Solve the problem. Finish with a line '#### <answer>'.\n",
    "Question: 3+4= Answer: G 7\nQuestion: 3+4= Answer: B 8\n",  # return labels (agents/rcrl.py)
)


def bpe_tokenizer(vocab_size: int = 600, corpus: tuple[str, ...] = _BPE_CORPUS):
    """A small byte-level BPE ``PreTrainedTokenizerFast`` trained here, offline, in well under a
    second: GPT-2's pre-tokenizer and byte alphabet (every string encodes), merges learned from
    ``corpus``, ChatML special tokens (``<|endoftext|>`` 0, ``<|im_start|>`` 1, ``<|im_end|>`` 2,
    also EOS and padding, as in SmolLM2) and :data:`CHATML_TEMPLATE`.

    For tests of what only a real tokenizer exercises (merges across a seam, multi-character
    tokens, specials inside a chat prompt) without downloading one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(list(corpus) * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


# --- tiny Llama configs -------------------------------------------------------------------

# Shrunk Llama shapes for CPUs. head_dim stays 32/64: vLLM's CPU attention supports those.
TINY_SHAPES = {
    # ~0.8M parameters: small enough to pretrain and train on 2 CPU cores
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
    # ~20M parameters: big enough that generation is compute-bound (the vLLM benchmark model)
    "small": dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8),
}


def tiny_llama_config(tokenizer, size: str = "tiny", max_position_embeddings: int = 512):
    """A ``LlamaConfig`` of one of :data:`TINY_SHAPES` for ``tokenizer``'s vocabulary."""
    from transformers import LlamaConfig

    if size not in TINY_SHAPES:
        raise ValueError(f"unknown tiny model size {size!r}: choose one of {sorted(TINY_SHAPES)}")
    shape = TINY_SHAPES[size]
    return LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=shape["num_attention_heads"],
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
        **shape,
    )


def tiny_llama(tokenizer=None, size: str = "tiny", seed: int = 0):
    """A randomly initialised tiny Llama and its tokenizer: ``(model, tokenizer)``."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = tokenizer or char_tokenizer()
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config(tokenizer, size)), tokenizer
