"""A rollout: sample responses from the policy and score them, the start of every RL step.

    1. sample y ~ π_θ(·|x) for a batch of prompts (KV-cache generation);
    2. log π_old(y_t) and log π_ref(y_t) for every response token, at the sampling temperature
       (otherwise the KL to the reference grows faster than it should: N+ implementation details);
    3. the reward model's score r_RM(x, y), read at the last real token; a response that never ends
       gets a fixed low score instead (the "EOS trick", lm-human-preferences).

Nothing here is specific to one algorithm: what PPO does with a rollout (values, GAE) is in
rlhf.py; a group-baseline method would group the same rollouts by prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .generate import generate
from .logprobs import response_logprobs
from .tokenizer import encode_prompts


@dataclass
class Rollout:
    """One batch of sampled and scored responses: B prompts, T = P + N columns, N response tokens."""
    input_ids: torch.Tensor        # (B, T) left-padded prompt, then the response right-padded
    attention_mask: torch.Tensor   # (B, T)
    response_start: int            # P: the column of the first response token
    response_ids: torch.Tensor     # (B, N)
    mask: torch.Tensor             # (B, N) 1 on real response tokens, the end token included
    logp: torch.Tensor             # (B, N) log π_old(y_t), 0 on padding
    ref_logp: torch.Tensor         # (B, N) log π_ref(y_t), 0 on padding
    rm_score: torch.Tensor         # (B,) the reward model's score r_RM(x, y)
    score: torch.Tensor            # (B,) the score RL optimises: r_RM, or no_end_score where y never ended
    ended: torch.Tensor            # (B,) True where the response emitted the end token
    texts: list[str]               # the B decoded responses


@torch.no_grad()
def rollout(policy, ref_model, reward_model, tokenizer, prompts: list[str], max_new_tokens: int,
            temperature: float = 1.0, no_end_score: float | None = -1.0,
            generator: torch.Generator | None = None) -> Rollout:
    """Sample one response per prompt from `policy` and score it (no_end_score=None: keep the RM's score)."""
    device = policy.device
    enc = encode_prompts(tokenizer, prompts)
    gen = generate(policy, enc["input_ids"].to(device), enc["attention_mask"].to(device), max_new_tokens,
                   tokenizer.eos_token_id, tokenizer.pad_token_id, temperature=temperature, generator=generator)
    ids, attn, P, mask = gen.input_ids, gen.attention_mask, gen.response_start, gen.response_mask
    # log π_old is recomputed with the same forward pass training uses, so that the first
    # minibatch's ratio is 1 (sampling-time log-probs differ by KV-cache rounding)
    logp = response_logprobs(policy, ids, attn, P, temperature) * mask
    ref_logp = response_logprobs(ref_model, ids, attn, P, temperature) * mask
    rm_score = reward_model(ids, attn)
    score = rm_score
    if no_end_score is not None:
        score = torch.where(gen.ended, rm_score, torch.full_like(rm_score, no_end_score))
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(gen.response_ids, mask)]
    return Rollout(input_ids=ids, attention_mask=attn, response_start=P, response_ids=gen.response_ids, mask=mask,
                   logp=logp, ref_logp=ref_logp, rm_score=rm_score, score=score, ended=gen.ended, texts=texts)
