"""A word-level tokenizer for the synthetic world, as a Hugging Face `PreTrainedTokenizerFast`.

Every word of the world is one token, so a decoded response reads exactly like the text the
labelers judge. Special tokens (the reference implementations insist on these being distinct):

    <|pad|>        padding only: never trained on, never generated
    <|bos|>        start of a document
    <|end|>        end of a turn; the tokenizer's `eos_token`, where generation stops
    <|user|>, <|assistant|>   role tokens of the chat template
    <|unk|>        a word outside the vocabulary (`encode_prompts` refuses those)
"""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .world import vocabulary

PAD, BOS, END, USER, ASSISTANT, UNK = "<|pad|>", "<|bos|>", "<|end|>", "<|user|>", "<|assistant|>", "<|unk|>"
SPECIAL_TOKENS = [PAD, BOS, END, USER, ASSISTANT, UNK]

# `apply_chat_template` renders a conversation exactly as `world.chat_text` writes it.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ ' <|' + message['role'] + '|> ' + message['content'] + ' <|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ ' <|assistant|>' }}{% endif %}"
)


def build_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (the world's vocabulary by default)."""
    words = vocabulary() if words is None else words
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with one space
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, bos_token=BOS,
                                  eos_token=END, unk_token=UNK,
                                  additional_special_tokens=[USER, ASSISTANT])
    tok.padding_side = "left"  # prompts are left-padded so every response starts at the same column
    tok.chat_template = CHAT_TEMPLATE
    return tok


def unknown_words(tokenizer: PreTrainedTokenizerFast, text: str) -> list[str]:
    vocab = tokenizer.get_vocab()
    return [w for w in text.split() if w not in vocab]


def encode_prompts(tokenizer: PreTrainedTokenizerFast, prompts: list[str],
                   max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Chat-format, left-padded prompts ready for `generate`.

    Returns `input_ids` and `attention_mask`, both (B, T), ending with the `<|assistant|>` token.
    """
    for p in prompts:
        bad = unknown_words(tokenizer, p)
        if bad:
            raise ValueError(f"unknown words {bad} in prompt {p!r}: the world's vocabulary has "
                             f"{len(tokenizer)} tokens (see minirlhf.world.vocabulary()); "
                             "rephrase the prompt with known words")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    if max_len is not None and enc["input_ids"].shape[1] > max_len:
        raise ValueError(f"prompt of {enc['input_ids'].shape[1]} tokens is longer than the "
                         f"model's context of {max_len}: shorten it or train a larger block_size")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
