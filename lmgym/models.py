"""lmgym's own tiny models, for CPUs and tests: a character tokenizer (and, with the
generation backends, small Llama configs built on it).

The procedural tasks use a small alphabet (digits, operators, ASCII prose), so a
character-level tokenizer keeps models tiny and sequences honest: every character is one
token, so decoding a prefix of the token ids gives a prefix of the text.
"""

from __future__ import annotations

import string

__all__ = ["CHAT_TEMPLATE", "char_tokenizer"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

# A minimal chat template so that prompt_template="chat" works with lmgym's own models.
CHAT_TEMPLATE = (
    "{% for message in messages %}<{{ message['role'] }}>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


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
