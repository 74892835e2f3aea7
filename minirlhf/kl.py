"""The KL penalty: per-token estimators of KL(π ‖ π_ref) and the coefficient β that weighs it.

For a sampled token y_t ~ π, with log r_t = log π_ref(y_t) − log π(y_t) (Schulman, "Approximating
KL divergence", 2020):

    k1 = −log r                 unbiased; high variance; negative on some tokens
    k2 = ½ (log r)²             biased (exact to second order when π ≈ π_ref); low variance; ≥ 0
    k3 = (r − 1) − log r        unbiased; low variance; ≥ 0 on every token

The reward uses k1 on each token (Ziegler et al., InstructGPT): its sum over a response is an
unbiased estimate of the sequence KL, and it is the quantity PPO's per-token credit assignment
expects. k3 is the better *monitor*: unbiased and never negative.
"""
from __future__ import annotations

import torch


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref, elementwise (any shape)."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (log π − log π_ref)², elementwise."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = (r − 1) − log r with r = π_ref / π, elementwise."""
    log_r = ref_logp - logp
    return torch.expm1(log_r) - log_r


ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


class FixedKLController:
    """β stays where it is put. β = 0 switches the penalty off (and invites reward hacking)."""

    def __init__(self, value: float):
        if value < 0:
            raise ValueError(f"the KL coefficient must be >= 0, got {value}")
        self.value = value

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. (2019): steer the observed KL towards a target.

        e = clip(KL / KL_target − 1, −0.2, 0.2)
        β ← β · (1 + e · n / horizon)

    n is the number of samples since the last update; the paper uses β₀ = 0.15 (their value in
    the GPT-2 scale of rewards), target 6 nats, horizon 10000.
    """

    def __init__(self, init: float, target: float, horizon: int):
        if init <= 0 or target <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs init, target and horizon > 0; got {init}, {target}, {horizon}")
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
