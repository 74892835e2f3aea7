"""PPO for language models: per-token rewards, GAE, and the clipped losses.

Notation (the same in notebook 05): a response y_1..y_N to prompt x, π_θ the policy, π_ref the
frozen SFT model, V the value model, r_RM the reward model's score, β the KL coefficient.
The training loop that calls these lives in `rlhf.py`.
"""
from __future__ import annotations

import torch

from .masks import check_same_shape, last_index, masked_mean


def per_token_rewards(score, logp, ref_logp, mask, kl_coef: float):
    """r_t = −β (log π(y_t) − log π_ref(y_t)), plus r_RM(x, y) on the last real token.

    score (B,), logp/ref_logp/mask (B, N). Returns rewards (B, N) and the k1 KL (B, N), both 0 on padding.
    """
    check_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    kl = torch.where(mask.bool(), logp - ref_logp, 0.0)   # not `* mask`: 0 · NaN is NaN
    rewards = -kl_coef * kl
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last_index(mask)] += score
    return rewards, kl


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalized Advantage Estimation (Schulman et al. 2016), per token of the response.

        δ_t = r_t + γ V(s_{t+1}) − V(s_t)           V(s_{t+1}) = 0 after the last real token
        A_t = δ_t + γ λ A_{t+1}
        R_t = A_t + V(s_t)                           (the value target)

    rewards, values, mask: (B, N). Returns advantages and returns (B, N), 0 on padding (whatever is there,
    NaN included: padding is cleared with torch.where, since 0 · NaN is NaN).
    """
    check_same_shape(rewards=rewards, values=values, mask=mask)
    real = mask.bool()
    N = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_adv = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(N)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = torch.where(real[:, t], delta + gamma * lam * next_adv, 0.0)
        advantages[:, t] = next_adv
        # padding after the end token is "done": nothing flows back from it
        next_value = torch.where(real[:, t], values[:, t], 0.0)
    return advantages, torch.where(real, advantages + values, 0.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over real tokens only; padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return torch.where(mask.bool(), (x - mean) * torch.rsqrt(var + eps), 0.0)


def policy_loss(logp, old_logp, advantages, mask, clip: float = 0.2):
    """The clipped surrogate objective, as a loss to minimise:

        ρ_t = π_θ(y_t) / π_old(y_t)
        L = −E_t[ min(ρ_t A_t, clip(ρ_t, 1 − ε, 1 + ε) A_t) ]

    All inputs (B, N). Returns the loss and detached stats: the clip fraction and approx-KL
    (k3 between π_old and π_θ, which is exactly 0 on the first minibatch).
    """
    check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(ratio - 1 - log_ratio, mask)
    return loss, {"clipfrac": clipfrac.item(), "approx_kl": approx_kl.item()}


def value_loss(values, old_values, returns, mask, clip: float = 0.2):
    """The clipped value loss (lm-human-preferences):

        V_clip = V_old + clip(V − V_old, −ε, ε)
        L_V = ½ E_t[ max((V − R)², (V_clip − R)²) ]
    """
    check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    v_clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)
    with torch.no_grad():
        clipfrac = masked_mean(((v_clipped - returns) ** 2 > (values - returns) ** 2).float(), mask)
    return loss, {"value_clipfrac": clipfrac.item()}


def linear_decay(step: int, total: int, lr: float) -> float:
    """lr·(1 − step/total): from `lr` at the first step towards 0 at the last (CleanRL's PPO, the linear schedule of
    TRL's trainers). Each step learns from answers the policy just sampled, so the updates never average out: at a
    constant rate the last policy is wherever the last few noisy steps left it."""
    return lr * (1 - step / total)


def explained_variance(values, returns, mask) -> float:
    """1 − Var(R − V) / Var(R) over real tokens: 1 is a perfect critic, ≤ 0 a useless one."""
    var_r = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    diff = returns - values
    var_d = masked_mean((diff - masked_mean(diff, mask)) ** 2, mask)
    return float(1 - var_d / var_r) if var_r > 0 else float("nan")
