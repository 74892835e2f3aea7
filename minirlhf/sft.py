"""Supervised fine-tuning on demonstrations, with the loss on the response tokens only.

    L_SFT = −(1/|y|) Σ_t log π(y_t | x, y_<t)

The prompt x is context, not something to imitate: its tokens are masked out of the loss, so
the model learns to answer, not to write questions.
"""
from __future__ import annotations

from dataclasses import dataclass

from .training import train_lm


@dataclass(frozen=True)
class SFTConfig:
    epochs: float = 2.0   # passes over the (few) demonstrations
    batch_size: int = 32
    lr: float = 5e-4
    warmup: int = 10
    grad_clip: float = 1.0


def sft_example(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    """Token ids of the whole dialogue and a loss mask that is 1 on the response and its end token."""
    prompt_text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                add_generation_prompt=True)
    n_prompt = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    full = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": response}], tokenize=False)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    return ids, [0] * n_prompt + [1] * (len(ids) - n_prompt)


def sft(model, tokenizer, prompts: list[str], responses: list[str], cfg: SFTConfig,
        seed: int = 0) -> list[float]:
    """Fine-tune `model` in place on (prompt, response) demonstrations; returns the loss curve."""
    examples = [sft_example(tokenizer, p, r) for p, r in zip(prompts, responses)]
    steps = max(1, round(cfg.epochs * len(examples) / cfg.batch_size))
    return train_lm(model, examples, steps, cfg.batch_size, cfg.lr, tokenizer.pad_token_id,
                    seed, cfg.warmup, grad_clip=cfg.grad_clip, desc="sft")


def sft_stage(model, tokenizer, prompts: list[str], responses: list[str], cfg: SFTConfig, seed: int = 0) -> dict:
    """The SFT model: `model` (the base model) fine-tuned on the demonstrations.

    Returns {"model": the fine-tuned GPT, "log": {"losses"}} (what the stage cache saves).
    """
    return {"model": model, "log": {"losses": sft(model, tokenizer, prompts, responses, cfg, seed)}}
