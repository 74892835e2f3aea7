"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath).

For each prompt x, G answers; each answer's advantage is its score standardised within its group,
and the KL is a term of the loss rather than of the reward:

    A_i = (r_i − mean_j r_j) / (std_j r_j + ε)          r_i = r_RM(x, y_i), no KL inside
    L = L_clip(A) + β · mean_t k3_t                       k3_t = π_ref/π_θ − log(π_ref/π_θ) − 1 at y_i,t

k3 (kl.py) is the paper's estimator: never negative, differentiable in π_θ, and unbiased on the policy's
own samples (after the first minibatch of a step they come from π_old, a little behind π_θ). The β here
weighs the per-token *average* of k3, where PPO's and RLOO's β weigh the *sum* over the answer: at the same
β, GRPO's penalty is about 1/(answer length) as strong. A group whose
answers all score alike has A = 0 everywhere: it teaches nothing (the log's `zero_advantage` counts them).
The loss averages over all tokens of the minibatch (as DAPO and Dr. GRPO advise), not per answer first,
so that short answers do not weigh more than long ones.
"""
from __future__ import annotations

import torch

from .group_rl import group_rl_stage

EPS = 1e-4   # a group of equal scores has std 0: its advantages are 0, not NaN


def grpo_advantages(scores: torch.Tensor) -> torch.Tensor:
    """Group-standardised advantages: scores (P, G) -> (P, G), mean 0 and std ≈ 1 in each row."""
    if scores.shape[1] < 2:
        raise ValueError(f"a group baseline needs at least 2 answers per prompt, got {scores.shape[1]}")
    mean = scores.mean(1, keepdim=True)
    std = scores.std(1, keepdim=True)          # the sample std (n − 1), as the paper's code
    return (scores - mean) / (std + EPS)


def grpo_stage(policy, reference, reward_model, tokenizer, requests, cfg, group_size: int = 4, seed: int = 0,
               desc: str = "grpo", heldout_requests=(), heldout_checkpoints: int = 0, heldout_samples: int = 8) -> dict:
    """GRPO from `policy` (the SFT model) against `reward_model`, β·k3 to `reference` in the loss; `cfg` is
    the PPOConfig (same steps, answers per step, epochs, lr and β as PPO). Held-out curve: as rlhf.ppo_stage."""
    return group_rl_stage(policy, reference, reward_model, tokenizer, requests, cfg, grpo_advantages,
                          kl_in_loss=True, group_size=group_size, seed=seed, desc=desc, heldout_requests=heldout_requests,
                          heldout_checkpoints=heldout_checkpoints, heldout_samples=heldout_samples)
