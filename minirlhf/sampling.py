"""Sampling answers to requests and scoring them with the simulated humans.

Every evaluation, every set of comparisons for the reward model and best-of-n start here: a row
per sampled answer, with its text, whether it ended, its length and what the gold labeler thinks.
"""
from __future__ import annotations

import torch

from .generate import generate
from .labelers import criteria_scores, gold_score
from .tokenizer import encode_prompts
from .world import Request


@torch.no_grad()
def sample_responses(model, tokenizer, requests: list[Request], n_samples: int = 1,
                     max_new_tokens: int = 24, temperature: float = 1.0, seed: int = 0,
                     batch_size: int = 128) -> list[dict]:
    """Sample `n_samples` responses per request (each request's together); each row carries its gold
    score and criteria, its length and its log-probability."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    rows = []
    reqs = [r for r in requests for _ in range(n_samples)]
    for start in range(0, len(reqs), batch_size):
        chunk = reqs[start:start + batch_size]
        enc = encode_prompts(tokenizer, [r.prompt for r in chunk])
        out = generate(model, enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device),
                       max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                       temperature=temperature, generator=gen)
        for i, req in enumerate(chunk):
            ids = out.response_ids[i][out.response_mask[i].bool()]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            ended = bool(out.ended[i])
            rows.append({"kind": req.kind, "prompt": req.prompt, "response": text, "ended": ended,
                         "gold": gold_score(req, text, ended), "criteria": criteria_scores(req, text, ended),
                         "length": int(out.response_mask[i].sum()),
                         # log π(y|x) of the whole answer (its end token included) at this temperature
                         "logprob": float((out.logprobs[i] * out.response_mask[i]).sum())})
    return rows
