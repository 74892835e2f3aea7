"""Best-of-n: draw n answers from the SFT policy π and keep the one the reward model scores highest.

Nothing is trained: the reward model is used when answering, n forward passes for one answer.
With F(y) = P(r(Y) ≤ r(y)) and F⁻(y) = P(r(Y) < r(y)) under π, best-of-n answers y with probability

    π_n(y) = (F(y)^n − F⁻(y)^n) · π(y) / (F(y) − F⁻(y))

(the first factor is the chance that the best of n scores r(y); answers the reward model ties are picked
among at random, in proportion to π; with no other answer at y's score it is F(y)^n − F⁻(y)^n)

and its KL to π is at most log n − (n−1)/n (approached when no two answers tie and the pool is large;
Beirami et al. 2024).
`exact_best_of_n` computes π_n exactly for the empirical distribution of a pool of M answers per
prompt, and from it best-of-n's expected gold, reward and KL for every n at once (Gao et al.'s
frontier: how much gold each nat of KL buys).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from .checkpoint import SavesPretrained
from .heldout import score_answers
from .model import GPT, GPTConfig
from .reward import RewardModel
from .sampling import sample_responses


def kl_bound(n: int) -> float:
    """log n − (n−1)/n: the bound on KL(π_n ‖ π), approached when no answers tie and the pool is large."""
    return math.log(n) - (n - 1) / n


def exact_best_of_n(share: np.ndarray, reward: np.ndarray, gold: np.ndarray, n: int) -> dict:
    """Best-of-n over one prompt's distinct answers: each one's probability under π (share, summing to 1),
    reward-model score and gold score, all (D,). Returns π_n's expected gold and reward and KL(π_n ‖ π)."""
    lower = np.array([share[reward < v].sum() for v in reward])    # F⁻(y)
    tied = np.array([share[reward == v].sum() for v in reward])    # F(y) − F⁻(y): y's block of ties
    pick = ((lower + tied) ** n - lower ** n) * share / tied       # π_n(y), a block's mass shared by share
    return {"gold": float(pick @ gold), "reward": float(pick @ reward),
            "kl": float((pick * np.log(np.maximum(pick, 1e-300) / share)).sum())}


def pool_frontier(rows: list[dict], reward: list[float], pool: int, ns) -> dict:
    """`exact_best_of_n` on each prompt's `pool` answers (rows of sample_responses, each prompt's together)
    for every n in `ns`: {"n": [...], "gold" / "reward" / "kl": (len(ns), P) lists, "distinct": (P,)}."""
    P = len(rows) // pool
    out = {k: np.zeros((len(ns), P)) for k in ("gold", "reward", "kl")}
    distinct = np.zeros(P)
    for p in range(P):
        answers = {}   # distinct answer -> [share, reward, gold]
        for row, r in zip(rows[p * pool:(p + 1) * pool], reward[p * pool:(p + 1) * pool]):
            answers.setdefault((row["response"], row["ended"]), [0.0, float(r), row["gold"]])[0] += 1 / pool
        share, r, g = (np.array(x) for x in zip(*answers.values()))
        distinct[p] = len(answers) / pool
        for a, n in enumerate(ns):
            for k, v in exact_best_of_n(share, r, g, n).items():
                out[k][a, p] = v
    return {"n": list(ns), **{k: v.tolist() for k, v in out.items()}, "distinct": distinct.tolist()}


def score_in_chunks(reward_model, tokenizer, rows: list[dict], no_end_score, chunk: int = 512) -> list[float]:
    """heldout.score_answers on `chunk` rows at a time: best-of-n scores n answers per answer it gives."""
    return [x for i in range(0, len(rows), chunk)
            for x in score_answers(reward_model, tokenizer, rows[i:i + chunk], no_end_score)]


@dataclass
class BestOfNConfig(GPTConfig):
    """The GPT's shape (both models share it) and how best-of-n answers."""
    n: int = 8
    no_end_score: float | None = -1.0   # as RL scores an answer that never ends


class BestOfN(SavesPretrained, nn.Module):
    """A policy made of the SFT model and the reward model: answers like π_n. Not a language model of its own
    (it has no forward pass and no perplexity): it answers through `sample_responses`."""
    model_type, config_class, tied_weight = "minirlhf-best-of-n", BestOfNConfig, "policy.lm_head.weight"

    def __init__(self, config: BestOfNConfig):
        super().__init__()
        self.config = config
        self.policy, self.reward_model = GPT(config), RewardModel(config)

    def _tied(self) -> set[str]:
        return {self.tied_weight, "reward_model.backbone.lm_head.weight"} if self.config.tie_weights else set()

    @classmethod
    def wrap(cls, policy: GPT, reward_model: RewardModel, n: int, no_end_score: float | None) -> "BestOfN":
        model = cls(BestOfNConfig(**asdict(policy.config), n=n, no_end_score=no_end_score))
        model.policy.load_state_dict(policy.state_dict())
        model.reward_model.load_state_dict(reward_model.state_dict())
        return model.to(policy.device).eval()

    @property
    def device(self) -> torch.device:
        return self.policy.device

    @torch.no_grad()
    def sample_responses(self, tokenizer, requests, n_samples: int = 1, max_new_tokens: int = 24,
                         seed: int = 0) -> list[dict]:
        """n_samples answers per request, as `sampling.sample_responses` gives them: each the best of n."""
        n = self.config.n
        rows = sample_responses(self.policy, tokenizer, requests, n_samples * n, max_new_tokens, seed=seed)
        reward = torch.tensor(score_in_chunks(self.reward_model, tokenizer, rows, self.config.no_end_score))
        best = reward.view(-1, n).argmax(1)                            # (R·n_samples,) the first best on a tie
        return [rows[i * n + int(b)] for i, b in enumerate(best)]


def best_of_n_stage(policy, reward_model, tokenizer, heldout_requests, n: int, ns, pool: int, max_new_tokens: int,
                    no_end_score: float | None, seed: int = 0) -> dict:
    """Best-of-n as a stage: the policy (SFT and the reward model, wrapped) and its frontier on the held-out
    prompts, exact for a pool of `pool` SFT answers per prompt, for every n in `ns`."""
    rows = sample_responses(policy, tokenizer, heldout_requests, pool, max_new_tokens, seed=seed)
    frontier = pool_frontier(rows, score_in_chunks(reward_model, tokenizer, rows, no_end_score), pool, ns)
    return {"model": BestOfN.wrap(policy, reward_model, n, no_end_score),
            "log": {"n": n, "pool": pool, "frontier": frontier, "kl_bound": [kl_bound(k) for k in ns]}}
