"""Sampling responses with a KV cache: temperature, top-k, stop at end-of-turn.

Each step feeds only the newest token and reuses the keys and values of everything before it,
so a response of N tokens costs N small forward passes instead of N growing ones. The cache and
the attention mask are allocated once, for the prompt plus N tokens, and filled as tokens come.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import KVCache, default_position_ids


@dataclass
class Generation:
    """A batch of sampled responses. Shapes: prompts (B, P), responses (B, N)."""
    prompt_ids: torch.Tensor       # (B, P) left-padded
    prompt_mask: torch.Tensor      # (B, P)
    response_ids: torch.Tensor     # (B, N) right-padded with pad after the end token
    response_mask: torch.Tensor    # (B, N) 1 for real response tokens, the end token included
    logprobs: torch.Tensor         # (B, N) log π(y_t | x, y_<t) at the sampling temperature, 0 on padding
    ended: torch.Tensor            # (B,) True where the response emitted the end token

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    @property
    def response_start(self) -> int:
        return self.prompt_ids.shape[1]


@torch.no_grad()
def generate(model, input_ids, attention_mask, max_new_tokens: int, eos_token_id: int,
             pad_token_id: int, temperature: float = 1.0, top_k: int | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True) -> Generation:
    """Sample up to `max_new_tokens` per prompt. temperature=0 is greedy.

    The returned log-probs come from logits / temperature over the whole vocabulary (top-k only
    restricts what is sampled), which is what `response_logprobs` recomputes for training.
    """
    B = input_ids.shape[0]
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0:   # NaN too
        raise ValueError(f"temperature must be 0 (greedy) or above, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None for the whole vocabulary), got {top_k}")
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape or input_ids.numel() == 0:
        raise ValueError(f"input_ids and attention_mask must be one (B, P) shape with B, P ≥ 1, got "
                         f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}: encode at least one prompt")
    if input_ids.shape[1] + max_new_tokens > model.config.block_size:
        raise ValueError(f"prompt ({input_ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) "
                         f"exceeds block_size={model.config.block_size}; lower max_new_tokens")
    was_training = model.training
    model.eval()
    P = input_ids.shape[1]
    mask = torch.zeros(B, P + max_new_tokens, dtype=attention_mask.dtype, device=input_ids.device)
    mask[:, :P] = attention_mask   # (B, P + N): the columns of the response are set as it is sampled
    cache = (KVCache(model.config, B, P + max_new_tokens, input_ids.device, model.tok_emb.weight.dtype)
             if use_cache else None)
    ids = input_ids
    logits, _ = model(ids, attention_mask, cache=cache)
    position = default_position_ids(attention_mask)[:, -1:]  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=ids.device)
    tokens, logps, reals = [], [], []
    for t in range(max_new_tokens):
        last = logits[:, -1]  # (B, V)
        scaled = last / (temperature if temperature > 0 else 1.0)
        if temperature == 0:
            tok = scaled.argmax(-1)
        else:
            filtered = scaled
            if top_k is not None:
                kth = torch.topk(scaled, min(top_k, scaled.shape[-1])).values[:, -1:]
                filtered = scaled.masked_fill(scaled < kth, float("-inf"))
            tok = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)
        logp = scaled.log_softmax(-1).gather(1, tok[:, None]).squeeze(1)
        real = ~finished
        tok = torch.where(real, tok, torch.full_like(tok, pad_token_id))
        tokens.append(tok)
        logps.append(torch.where(real, logp, torch.zeros_like(logp)))
        reals.append(real)
        finished = finished | (tok == eos_token_id)
        if t == max_new_tokens - 1 or finished.all():
            break   # the last token's logits would never be used: no forward pass for them
        mask[:, P + t] = real
        position = position + 1
        if use_cache:
            logits, _ = model(tok[:, None], mask[:, :P + t + 1], position, cache)
        else:
            ids = torch.cat([ids, tok[:, None]], dim=1)
            logits, _ = model(ids, mask[:, :P + t + 1])
    model.train(was_training)
    return Generation(prompt_ids=input_ids, prompt_mask=attention_mask,
                      response_ids=torch.stack(tokens, 1), response_mask=torch.stack(reals, 1).long(),
                      logprobs=torch.stack(logps, 1), ended=finished)
