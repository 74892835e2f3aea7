"""Comparison data for the reward model: K sampled answers per prompt, ranked by labelers.

Labelers are cheap compared with writing demonstrations: ranking K answers takes seconds, and
one ranking gives K(K−1)/2 comparisons (InstructGPT uses K = 4…9).
"""
from __future__ import annotations

import random

from datasets import Dataset

from .labelers import GOLD, Labeler
from .sampling import sample_responses
from .world import Request


def collect_comparisons(model, tokenizer, requests: list[Request], n_rankings: int, k: int = 4,
                        labeler: Labeler = GOLD, max_new_tokens: int = 24, seed: int = 0) -> Dataset:
    """`n_rankings` rows, cycling through `requests`: prompt, K responses, and the labeler's ranking.

    Columns: kind, prompt, responses (K str), ended (K bool), ranking (K indices, best first),
    gold (K noiseless gold scores, for measuring the reward model; a real project has no such column).
    """
    if k < 2:
        raise ValueError(f"a ranking needs at least 2 responses, got k={k}")
    reqs = [requests[i % len(requests)] for i in range(n_rankings)]
    rows = sample_responses(model, tokenizer, reqs, n_samples=k, max_new_tokens=max_new_tokens, seed=seed)
    rng = random.Random(seed)
    out = {"kind": [], "prompt": [], "responses": [], "ended": [], "ranking": [], "gold": []}
    for i, req in enumerate(reqs):
        group = rows[i * k:(i + 1) * k]
        responses, ended = [r["response"] for r in group], [r["ended"] for r in group]
        out["kind"].append(req.kind)
        out["prompt"].append(req.prompt)
        out["responses"].append(responses)
        out["ended"].append(ended)
        out["ranking"].append(labeler.rank(req, responses, ended, rng))
        out["gold"].append([r["gold"] for r in group])
    return Dataset.from_dict(out)
