"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024).

For each prompt x, G answers y_1..y_G and their returns, the KL in the reward as PPO has it:

    R_i = r_RM(x, y_i) − β Σ_t log π_old(y_i,t)/π_ref(y_i,t)
    A_i = R_i − 1/(G−1) Σ_{j≠i} R_j            the mean of the *other* answers: a baseline that does not
                                                depend on y_i, so the gradient stays unbiased
        = G/(G−1) · (R_i − mean_j R_j)

Every token of y_i gets A_i; the policy is updated with the clipped surrogate of ppo.py, over the
epochs and minibatches of a PPO step (TRL's RLOOTrainer does the same). No value model.
"""
from __future__ import annotations

import torch

from .group_rl import group_rl_stage


def rloo_advantages(returns: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages: returns (P, G), G answers to each of P prompts -> (P, G)."""
    G = returns.shape[1]
    if G < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 answers per prompt, got {G}")
    others = (returns.sum(1, keepdim=True) - returns) / (G - 1)    # mean of the other G − 1 answers
    return returns - others


def rloo_stage(policy, reference, reward_model, tokenizer, requests, cfg, group_size: int = 4, seed: int = 0,
               desc: str = "rloo", heldout_requests=(), heldout_checkpoints: int = 0, heldout_samples: int = 8) -> dict:
    """RLOO from `policy` (the SFT model) against `reward_model`, β·KL to `reference` in the reward; `cfg` is
    the PPOConfig (same steps, answers per step, epochs, lr and β as PPO). Held-out curve: as rlhf.ppo_stage."""
    return group_rl_stage(policy, reference, reward_model, tokenizer, requests, cfg, rloo_advantages,
                          kl_in_loss=False, group_size=group_size, seed=seed, desc=desc, heldout_requests=heldout_requests,
                          heldout_checkpoints=heldout_checkpoints, heldout_samples=heldout_samples)
