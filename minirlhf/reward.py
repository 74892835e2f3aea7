"""The reward model: a GPT backbone with a scalar head, trained on ranked comparisons.

    r(x, y) = w · h_last + b         h_last: the last layer's state at the last real token of y

Labelers rank K responses to a prompt; each ranking gives K(K−1)/2 pairs (y_w preferred to y_l),
and the Bradley–Terry model P(y_w ≻ y_l) = σ(r(x, y_w) − r(x, y_l)) gives the loss

    L = −E_{(x, y_w, y_l)} [ log σ(r(x, y_w) − r(x, y_l)) ]

All pairs of one prompt go into the same batch (InstructGPT): the K responses are scored once and
the prompt's pairs do not overfit across batches.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import load_checkpoint, load_weights, save_checkpoint
from .model import GPT, GPTConfig
from .ppo import last_index


def ranking_to_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """A ranking (indices, best first) -> every (winner, loser) pair: K(K−1)/2 of them."""
    return [(ranking[i], ranking[j]) for i, j in itertools.combinations(range(len(ranking)), 2)]


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """−mean log σ(r_w − r_l) over pairs; r_chosen, r_rejected: (P,)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(nn.Module):
    """GPT backbone + scalar head. Also serves as the PPO value model (one value per token).

    `forward` returns the normalised score r(x, y) (B,); `values` returns the head on every
    position (B, T). The score is normalised, (raw − mean) / std, so that samples of the SFT
    policy score mean 0 and std 1 (lm-human-preferences): β then means the same thing whatever
    the reward model's scale.
    """
    model_type = "minirlhf-reward"

    def __init__(self, config: GPTConfig, backbone: GPT | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else GPT(config)
        self.config = self.backbone.config
        self.head = nn.Linear(self.config.n_embd, 1)
        # N(0, 1/sqrt(d+1)) as in lm-human-preferences: initial scores of order 1
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(self.config.n_embd + 1))
        nn.init.zeros_(self.head.bias)
        self.register_buffer("norm_mean", torch.zeros(()))
        self.register_buffer("norm_std", torch.ones(()))

    @classmethod
    def from_language_model(cls, lm: GPT) -> "RewardModel":
        """Start from a trained LM (the SFT model): it already understands the world."""
        backbone = GPT(lm.config)
        backbone.load_state_dict(lm.state_dict())
        return cls(lm.config, backbone).to(lm.device)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def values(self, input_ids, attention_mask) -> torch.Tensor:
        """Raw head output at every position: (B, T)."""
        h, _ = self.backbone.hidden_states(input_ids, attention_mask)
        return self.head(h).squeeze(-1)

    def raw_score(self, input_ids, attention_mask) -> torch.Tensor:
        """Unnormalised score at the last real token (whatever the padding): (B,)."""
        v = self.values(input_ids, attention_mask)
        return v.gather(1, last_index(attention_mask)[:, None]).squeeze(1)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        return (self.raw_score(input_ids, attention_mask) - self.norm_mean) / self.norm_std

    def set_normalization(self, raw_scores: torch.Tensor) -> None:
        """Make these raw scores (from SFT samples) come out with mean 0 and std 1."""
        self.norm_mean.fill_(raw_scores.mean().item())
        self.norm_std.fill_(raw_scores.std().clamp(min=1e-6).item())

    def save_pretrained(self, path) -> None:
        save_checkpoint(path, {"model_type": self.model_type, **asdict(self.config)},
                        {k: v for k, v in self.state_dict().items()
                         if k != "backbone.lm_head.weight" or not self.config.tie_weights})

    @classmethod
    def from_pretrained(cls, path, device="cpu") -> "RewardModel":
        config, tensors = load_checkpoint(path, cls.model_type)
        model = cls(GPTConfig(**config))
        load_weights(model, tensors, path, tied={"backbone.lm_head.weight"} if model.config.tie_weights else set())
        return model.to(device)
