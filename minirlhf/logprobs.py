"""Log-probabilities of response tokens: the quantity SFT, the KL penalty, PPO and DPO all use.

A causal LM's logits at position t predict token t+1, so the log-prob of the response token at
column t is read from the logits at column t-1 (the "shift by one"):

    log π(y_t | x, y_<t) = log_softmax(logits[:, t-1] / τ)[y_t]

τ is the sampling temperature: PPO must score a sample under the distribution it was drawn
from, otherwise the KL to the reference grows faster than it should (N+ implementation details).
"""
from __future__ import annotations

import torch


def gather_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[labels]: logits (B, T, V), labels (B, T) -> (B, T)."""
    return torch.gather(logits.log_softmax(-1), 2, labels.unsqueeze(-1)).squeeze(-1)


def response_logits(model, input_ids, attention_mask, response_start: int,
                    temperature: float = 1.0) -> torch.Tensor:
    """Logits (B, N, V) that predicted each of the N response tokens input_ids[:, response_start:]."""
    logits, _ = model(input_ids, attention_mask)
    return logits[:, response_start - 1:-1] / temperature


def response_logprobs(model, input_ids, attention_mask, response_start: int,
                      temperature: float = 1.0) -> torch.Tensor:
    """log π(y_t | x, y_<t) for each response token: (B, N). Padding columns hold garbage: mask them."""
    logits = response_logits(model, input_ids, attention_mask, response_start, temperature)
    return gather_logprobs(logits, input_ids[:, response_start:])


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = -Σ_v p_v log p_v per position: (B, T, V) -> (B, T)."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)
