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

from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .masks import pad_left
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


@lru_cache(maxsize=1 << 16)
def prompt_ids(tokenizer: PreTrainedTokenizerFast, prompt: str) -> tuple[int, ...]:
    """One prompt in the chat format, as token ids ending with `<|assistant|>`.

    Cached: the pipeline asks the same prompts thousands of times (K answers per ranking, every PPO
    batch), and rendering the chat template is slower than a forward pass of the fast model.
    """
    bad = unknown_words(tokenizer, prompt)
    if bad:
        raise ValueError(f"unknown words {bad} in prompt {prompt!r}: the world's vocabulary has "
                         f"{len(tokenizer)} tokens (see minirlhf.world.vocabulary()); "
                         "rephrase the prompt with known words")
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompts(tokenizer: PreTrainedTokenizerFast, prompts: list[str],
                   max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Chat-format, left-padded prompts ready for `generate`.

    Returns `input_ids` and `attention_mask`, both (B, T), ending with the `<|assistant|>` token.
    """
    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    ids, mask = pad_left([prompt_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id)
    if max_len is not None and ids.shape[1] > max_len:
        raise ValueError(f"prompt of {ids.shape[1]} tokens is longer than the "
                         f"model's context of {max_len}: shorten it or train a larger block_size")
    return {"input_ids": ids, "attention_mask": mask}
