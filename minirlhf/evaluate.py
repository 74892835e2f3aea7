"""Evaluation on held-out prompts, measured with the simulated humans (the gold labeler).

The article's three metrics, per request kind:
  helpfulness    A against B on the same prompts: gold wins, ties and losses, and the win-rate
  truthfulness   share of fact and non-existent-thing questions answered without a false claim
  harmlessness   share of harmful requests refused; share of responses with toxic words
  over-refusal   share of borderline requests (risky but legitimate) given careful help
  bias           share of responses that pin a trait on a group of people (the stereotype probe is bias.py)
and the alignment tax: perplexity on held-out internet text, exp(mean next-token loss).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from .generate import generate
from .kl import kl_k1
from .labelers import complies_with_harm, is_refusal, is_toxic, pins_trait_on_group
from .logprobs import gather_logprobs, response_logprobs
from .masks import pad_right
from .tokenizer import encode_prompts
from .world import KINDS, Request


def stage_metrics(rows: list[dict]) -> dict:
    """Summary of one model's samples. `gold_score_mean` averages the kinds equally."""
    by_kind = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    gold_by_kind = {k: sum(r["gold"] for r in v) / len(v) for k, v in by_kind.items()}
    truth = [r for r in rows if r["kind"] in ("fact", "nonexistent")]
    harmful = [r for r in rows if r["kind"] == "harmful"]
    borderline = [r for r in rows if r["kind"] == "borderline"]
    share = lambda xs, f: sum(f(x) for x in xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "gold_score_mean": sum(gold_by_kind.values()) / len(gold_by_kind),
        "gold_score_by_kind": {k: gold_by_kind[k] for k in KINDS if k in gold_by_kind},
        "truthful_rate": share(truth, lambda r: r["criteria"]["truthful"] == 1.0),
        "harmful_refusal_rate": share(harmful, lambda r: is_refusal(r["response"])
                                      and not complies_with_harm(r["response"])),
        "borderline_help_rate": share(borderline, lambda r: r["criteria"]["helpful"] == 1.0),   # not over-refusing
        "toxic_rate": share(rows, lambda r: is_toxic(r["response"])),
        "group_remark_rate": share(rows, lambda r: pins_trait_on_group(r["response"])),
        "ended_rate": share(rows, lambda r: r["ended"]),
        "mean_length": share(rows, lambda r: r["length"]),
    }


def head_to_head(rows_a: list[dict], rows_b: list[dict]) -> dict:
    """A against B, answer by answer: the i-th answer of A is paired with the i-th of B (same prompt).

    wins, ties, losses   counts by gold score (equal scores tie)
    win_rate             (wins + ½ ties) / n, the usual headline
    untied_win_rate      wins / (wins + losses): who is better where they differ
    net                  (wins − losses) / n
    ceiling              1 − ½·P(B's answer is already ideal): the best win_rate any A can reach,
                         since an ideal answer can only be tied
    Both lists must come from `sample_responses` on the same requests in the same order.
    """
    if [r["prompt"] for r in rows_a] != [r["prompt"] for r in rows_b]:
        raise ValueError("head_to_head needs answers to the same prompts in the same order")
    wins = sum(a["gold"] > b["gold"] for a, b in zip(rows_a, rows_b))
    losses = sum(a["gold"] < b["gold"] for a, b in zip(rows_a, rows_b))
    n = len(rows_a)
    ties = n - wins - losses
    return {"wins": wins, "ties": ties, "losses": losses, "n": n, "win_rate": (wins + ties / 2) / n,
            "untied_win_rate": wins / max(wins + losses, 1), "net": (wins - losses) / n,
            "ceiling": 1 - sum(b["gold"] == 1.0 for b in rows_b) / (2 * n)}


def win_rate(rows_a: list[dict], rows_b: list[dict]) -> float:
    """Share of answers where A's has the higher gold score than B's to the same prompt (ties count half)."""
    return head_to_head(rows_a, rows_b)["win_rate"]


@torch.no_grad()
def response_kls(policy, ref_model, tokenizer, requests: list[Request], n_samples: int = 1,
                 max_new_tokens: int = 24, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """KL(π ‖ π_ref) of each sampled response, Σ_t k1 = Σ_t log π(y_t|·) − log π_ref(y_t|·) (nats): (N,),
    n_samples per request, each request's samples together. Its mean estimates the KL per response."""
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    reqs = [r for r in requests for _ in range(n_samples)]
    kls = []
    for start in range(0, len(reqs), batch_size):
        enc = encode_prompts(tokenizer, [r.prompt for r in reqs[start:start + batch_size]])
        out = generate(policy, enc["input_ids"].to(policy.device), enc["attention_mask"].to(policy.device),
                       max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id, generator=gen)
        ids, attn, P = out.input_ids, out.attention_mask, out.response_start
        logp = response_logprobs(policy, ids, attn, P)
        ref_logp = response_logprobs(ref_model, ids, attn, P)
        kls.append((kl_k1(logp, ref_logp) * out.response_mask).sum(1).cpu())
    return torch.cat(kls)


def kl_to_reference(policy, ref_model, tokenizer, requests: list[Request], max_new_tokens: int = 24,
                    seed: int = 0) -> float:
    """KL(π ‖ π_ref) per response, estimated by Σ_t k1 on one sample of π per request (nats)."""
    return response_kls(policy, ref_model, tokenizer, requests, 1, max_new_tokens, seed,
                        batch_size=max(1, len(requests))).mean().item()


@torch.no_grad()
def document_nlls(model, examples: list[tuple[list[int], list[int]]], pad_id: int,
                  batch_size: int = 128) -> list[tuple[float, int]]:
    """Each (ids, loss mask) example's summed next-token loss −Σ_t log π(x_t | x_<t) and its token count."""
    out = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        ids, attn = pad_right([e[0] for e in chunk], pad_id)
        loss_mask, _ = pad_right([e[1] for e in chunk], 0)
        ids, attn, loss_mask = ids.to(model.device), attn.to(model.device), loss_mask.to(model.device)
        logits, _ = model(ids, attn)
        logp = gather_logprobs(logits[:, :-1], ids[:, 1:])   # (B, T-1): logits at t predict token t + 1
        m = loss_mask[:, 1:].to(logp.dtype)
        out += list(zip((-(logp * m).sum(1)).tolist(), m.sum(1).long().tolist()))
    return out


def perplexity(model, examples: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 128) -> float:
    """exp of the mean next-token loss over (ids, loss mask) examples: the alignment tax's yardstick."""
    nlls = document_nlls(model, examples, pad_id, batch_size)
    return math.exp(sum(n for n, _ in nlls) / sum(c for _, c in nlls))
