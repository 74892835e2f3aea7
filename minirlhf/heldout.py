"""A policy watched on held-out prompts while it trains: the curves of over-optimisation and of the frontier.

At step 0 and C more steps, halving back from the last (steps, steps/2, steps/4, …: the policy moves
most at the start), the policy answers every held-out prompt S times, always with the same random
stream, and each answer gets
    gold      the simulated humans' score (labelers.gold_score)
    reward    the score RL optimises: r_RM(x, y), or no_end_score where y never ended
    kl        Σ_t log π(y_t|·) − log π_ref(y_t|·), the k1 estimate of KL(π ‖ π_ref) on this answer (nats)
Every RL stage (PPO, RLOO, GRPO) passes a `HeldoutCurve` as its `after_step`; DPO has no steps that
sample, and best-of-n no training: their frontier points come from varying β and n instead.
"""
from __future__ import annotations

import torch

from .evaluate import response_kls
from .reward import encode_dialogues
from .sampling import sample_responses

HELDOUT_SEED_OFFSET = 10   # held-out answers: the stage's seed + 10, a stream its training does not use
BATCH = 128


@torch.no_grad()
def score_answers(reward_model, tokenizer, rows: list[dict], no_end_score: float | None) -> list[float]:
    """The score RL gives answers (rows of `sample_responses`): r_RM(x, y), or no_end_score where y
    never ended (None: the reward model's score everywhere), as `rollout` scores them."""
    ids, attn = encode_dialogues(tokenizer, [r["prompt"] for r in rows], [r["response"] for r in rows],
                                 [r["ended"] for r in rows])
    reward = reward_model(ids.to(reward_model.device), attn.to(reward_model.device)).tolist()
    if no_end_score is None:
        return reward
    return [x if r["ended"] else no_end_score for x, r in zip(reward, rows)]


def heldout_answers(policy, reward_model, tokenizer, requests, n_samples: int, max_new_tokens: int,
                    no_end_score: float | None, seed: int, reference=None) -> dict:
    """The policy's answers to held-out prompts, n_samples each: gold and reward-model scores, and the KL
    to `reference` when one is given (rows in the order of `requests`, each request's samples together)."""
    rows = sample_responses(policy, tokenizer, requests, n_samples, max_new_tokens, seed=seed, batch_size=BATCH)
    out = {"gold": [r["gold"] for r in rows], "reward": score_answers(reward_model, tokenizer, rows, no_end_score)}
    if reference is not None:
        # the same random stream and batches sample the same answers again, as token ids: the KL must be read
        # on the ids the policy sampled (decoded text does not always re-encode to the same tokens)
        out["kl"] = response_kls(policy, reference, tokenizer, requests, n_samples, max_new_tokens, seed, BATCH).tolist()
    return out


class HeldoutCurve:
    """`curve(step, policy)` measures at the checkpoint steps; `curve.history` is the list of measurements."""

    def __init__(self, reward_model, reference, tokenizer, requests, steps: int, checkpoints: int, n_samples: int,
                 max_new_tokens: int, no_end_score: float | None, seed: int):
        # step 0, then steps/2^(C−1), …, steps/4, steps/2, steps: the KL moves fastest at the start
        self.steps = sorted({0} | {max(1, round(steps / 2 ** i)) for i in range(checkpoints)} if checkpoints else [])
        self.args = (reward_model, tokenizer, requests, n_samples, max_new_tokens, no_end_score,
                     seed + HELDOUT_SEED_OFFSET, reference)
        self.history: list[dict] = []

    def __call__(self, step: int, policy) -> None:
        if step in self.steps:
            self.history.append({"step": step, **heldout_answers(policy, *self.args)})
