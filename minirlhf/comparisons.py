"""Comparison data for the reward model: K sampled answers per prompt, ranked by labelers.

Labelers are cheap compared with writing demonstrations: ranking K answers takes seconds, and
one ranking gives K(K−1)/2 comparisons (InstructGPT uses K = 4…9).

Two identical answers teach nothing: a labeler can only order them at random, and the reward model
would learn that noise. So every ranking holds K *distinct* answers. The policy answers K times; the
prompts still short of K distinct answers are asked again, K more times, up to `max_rounds` rounds in
all. A prompt that still has fewer (a policy sure of its one answer, e.g. to "hello !") is ranked
with the distinct answers it has, and left out when it has a single one: the stage logs how many.
"""
from __future__ import annotations

import random

from datasets import Dataset

from .labelers import GOLD, Labeler
from .sampling import sample_responses
from .world import Request

RESAMPLE_SEED_STRIDE = 1000   # round r samples with seed + r·1000: a stream of its own


def distinct_answers(model, tokenizer, requests: list[Request], k: int, max_new_tokens: int, seed: int,
                     max_rounds: int = 4) -> list[list[dict]]:
    """Up to k sampled rows (see `sample_responses`) with distinct (response, ended) per request."""
    groups: list[list[dict]] = [[] for _ in requests]
    seen: list[set] = [set() for _ in requests]   # the (response, ended) of each group
    short = list(range(len(requests)))
    for r in range(max_rounds):
        if not short:
            break
        rows = sample_responses(model, tokenizer, [requests[i] for i in short], n_samples=k,
                                max_new_tokens=max_new_tokens, seed=seed + r * RESAMPLE_SEED_STRIDE)
        for j, i in enumerate(short):
            for row in rows[j * k:(j + 1) * k]:
                if len(groups[i]) < k and (row["response"], row["ended"]) not in seen[i]:
                    seen[i].add((row["response"], row["ended"]))
                    groups[i].append(row)
        short = [i for i in short if len(groups[i]) < k]
    return groups


def collect_comparisons(model, tokenizer, requests: list[Request], n_rankings: int, k: int = 4,
                        labeler: Labeler = GOLD, max_new_tokens: int = 24, seed: int = 0,
                        max_rounds: int = 4) -> Dataset:
    """Rankings of distinct answers, cycling through `requests` for `n_rankings` prompts.

    Columns: kind, prompt, responses (2…K distinct str), ended (bool each), ranking (indices, best
    first), gold (noiseless gold scores, for measuring the reward model; a real project has no such
    column). Prompts with a single distinct answer after `max_rounds` rounds are left out, so the
    data set can hold fewer than `n_rankings` rows.
    """
    if k < 2:
        raise ValueError(f"a ranking needs at least 2 responses, got k={k}")
    reqs = [requests[i % len(requests)] for i in range(n_rankings)]
    groups = distinct_answers(model, tokenizer, reqs, k, max_new_tokens, seed, max_rounds)
    rng = random.Random(seed)
    out = {"kind": [], "prompt": [], "responses": [], "ended": [], "ranking": [], "gold": []}
    for req, group in zip(reqs, groups):
        if len(group) < 2:
            continue
        responses, ended = [r["response"] for r in group], [r["ended"] for r in group]
        out["kind"].append(req.kind)
        out["prompt"].append(req.prompt)
        out["responses"].append(responses)
        out["ended"].append(ended)
        out["ranking"].append(labeler.rank(req, responses, ended, rng))
        out["gold"].append([r["gold"] for r in group])
    return Dataset.from_dict(out)
