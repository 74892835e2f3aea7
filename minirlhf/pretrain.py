"""Pretraining: next-token prediction on the internet text (every token is a target).

The base model learns the world from the internet, and so learns the internet's habits too:
wrong facts, rudeness, help with harm, rambling. Garbage in, garbage out.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .model import GPT, GPTConfig
from .training import set_seed, train_lm


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0


def document_examples(tokenizer, texts: list[str], block_size: int) -> list[tuple[list[int], list[int]]]:
    """Each document as `<|bos|> text`, cut to the context; the loss mask is 1 everywhere."""
    enc = tokenizer([f"{tokenizer.bos_token} {t}" for t in texts], add_special_tokens=False)["input_ids"]
    return [(ids[:block_size], [1] * min(len(ids), block_size)) for ids in enc]


def pretrain(model, tokenizer, texts: list[str], cfg: PretrainConfig, seed: int = 0) -> list[float]:
    """Train `model` in place on `texts`; returns the loss curve."""
    examples = document_examples(tokenizer, texts, model.config.block_size)
    return train_lm(model, examples, cfg.steps, cfg.batch_size, cfg.lr, tokenizer.pad_token_id,
                    seed, cfg.warmup, cfg.weight_decay, cfg.grad_clip, desc="pretrain")


def pretrain_stage(tokenizer, texts: list[str], model_config: GPTConfig, cfg: PretrainConfig, seed: int = 0,
                   device="cpu") -> dict:
    """The base model: a fresh GPT with the tokenizer's vocabulary, pretrained on `texts`.

    Returns {"model": the GPT, "log": {"losses", "n_params"}} (what the stage cache saves).
    """
    set_seed(seed)
    model = GPT(replace(model_config, vocab_size=len(tokenizer))).to(device)
    losses = pretrain(model, tokenizer, texts, cfg, seed)
    return {"model": model, "log": {"losses": losses, "n_params": model.num_parameters()}}
