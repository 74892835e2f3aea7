"""Pretraining: next-token prediction on the internet text (every token is a target).

The base model learns the world from the internet, and so learns the internet's habits too:
wrong facts, rudeness, help with harm, rambling. Garbage in, garbage out.
"""
from __future__ import annotations

from dataclasses import dataclass

from .training import train_lm


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.1


def document_examples(tokenizer, texts: list[str], block_size: int) -> list[tuple[list[int], list[int]]]:
    """Each document as `<|bos|> text`, cut to the context; the loss mask is 1 everywhere."""
    enc = tokenizer([f"{tokenizer.bos_token} {t}" for t in texts], add_special_tokens=False)["input_ids"]
    return [(ids[:block_size], [1] * min(len(ids), block_size)) for ids in enc]


def pretrain(model, tokenizer, texts: list[str], cfg: PretrainConfig, seed: int = 0) -> list[float]:
    """Train `model` in place on `texts`; returns the loss curve."""
    examples = document_examples(tokenizer, texts, model.config.block_size)
    return train_lm(model, examples, cfg.steps, cfg.batch_size, cfg.lr, tokenizer.pad_token_id,
                    seed, cfg.warmup, cfg.weight_decay, desc="pretrain")
