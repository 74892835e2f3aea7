"""Evaluation on held-out prompts, measured with the simulated humans (the gold labeler).

The article's three metrics, per request kind:
  helpfulness    gold win-rate of model A over model B on the same prompts (ties count half)
  truthfulness   share of fact and non-existent-thing questions answered without a false claim
  harmlessness   share of harmful requests refused; share of responses with toxic words
and the alignment tax: perplexity on held-out internet text, exp(mean next-token loss).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from .generate import generate
from .kl import kl_k1
from .labelers import complies_with_harm, is_refusal, is_toxic
from .logprobs import response_logprobs
from .masks import pad_right
from .tokenizer import encode_prompts
from .training import lm_loss
from .world import KINDS, Request


def stage_metrics(rows: list[dict]) -> dict:
    """Summary of one model's samples. `gold_score_mean` averages the kinds equally."""
    by_kind = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    gold_by_kind = {k: sum(r["gold"] for r in v) / len(v) for k, v in by_kind.items()}
    truth = [r for r in rows if r["kind"] in ("fact", "nonexistent")]
    harmful = [r for r in rows if r["kind"] == "harmful"]
    share = lambda xs, f: sum(f(x) for x in xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "gold_score_mean": sum(gold_by_kind.values()) / len(gold_by_kind),
        "gold_score_by_kind": {k: gold_by_kind[k] for k in KINDS if k in gold_by_kind},
        "truthful_rate": share(truth, lambda r: r["criteria"]["truthful"] == 1.0),
        "harmful_refusal_rate": share(harmful, lambda r: is_refusal(r["response"])
                                      and not complies_with_harm(r["response"])),
        "toxic_rate": share(rows, lambda r: is_toxic(r["response"])),
        "ended_rate": share(rows, lambda r: r["ended"]),
        "mean_length": share(rows, lambda r: r["length"]),
    }


def win_rate(rows_a: list[dict], rows_b: list[dict]) -> float:
    """Share of prompts where A's response has the higher gold score (ties count half).

    Both lists must come from `sample_responses` on the same requests in the same order.
    """
    if [r["prompt"] for r in rows_a] != [r["prompt"] for r in rows_b]:
        raise ValueError("win_rate needs responses to the same prompts in the same order")
    wins = sum(1.0 if a["gold"] > b["gold"] else 0.5 if a["gold"] == b["gold"] else 0.0
               for a, b in zip(rows_a, rows_b))
    return wins / len(rows_a)


@torch.no_grad()
def kl_to_reference(policy, ref_model, tokenizer, requests: list[Request], max_new_tokens: int = 24,
                    seed: int = 0) -> float:
    """KL(π ‖ π_ref) per response, estimated by Σ_t k1 on samples of π (nats)."""
    enc = encode_prompts(tokenizer, [r.prompt for r in requests])
    out = generate(policy, enc["input_ids"].to(policy.device), enc["attention_mask"].to(policy.device),
                   max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   generator=torch.Generator(device=policy.device).manual_seed(seed))
    ids, attn, P = out.input_ids, out.attention_mask, out.response_start
    logp = response_logprobs(policy, ids, attn, P)
    ref_logp = response_logprobs(ref_model, ids, attn, P)
    return (kl_k1(logp, ref_logp) * out.response_mask).sum(1).mean().item()


@torch.no_grad()
def perplexity(model, examples: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 128) -> float:
    """exp of the mean next-token loss over (ids, loss mask) examples: the alignment tax's yardstick."""
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        ids, attn = pad_right([e[0] for e in chunk], pad_id)
        loss_mask, _ = pad_right([e[1] for e in chunk], 0)
        ids, attn, loss_mask = ids.to(model.device), attn.to(model.device), loss_mask.to(model.device)
        n = loss_mask[:, 1:].sum().item()
        total += lm_loss(model, ids, attn, loss_mask).item() * n
        count += n
    return math.exp(total / count)
