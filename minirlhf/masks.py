"""Padding and masks: where the off-by-one bugs of RLHF hide.

Prompts are left-padded (so every response starts in the same column), responses right-padded
(after the end token). Every average over tokens must skip the padding, and every per-sequence
quantity (the reward, the last value) is read at the last *real* token, not the last column.
"""
from __future__ import annotations

import torch


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists to (B, T) ids and mask."""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([list(s) + [pad_id] * (T - len(s)) for s in seqs], dtype=torch.long)
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs], dtype=torch.long)
    return ids, mask


def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to (B, T) ids and mask: every sequence ends in the last column."""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (T - len(s)) + list(s) for s in seqs], dtype=torch.long)
    mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long)
    return ids, mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of x over positions where the (0/1) mask is 1: padding never counts, not even a NaN or Inf
    there (`torch.where`, not a multiplication by the mask, because 0 · NaN is NaN)."""
    x = torch.where(mask.bool(), x, torch.zeros_like(x))
    count = mask.to(x.dtype)
    if dim is None:
        return x.sum() / count.sum().clamp(min=1)
    return x.sum(dim) / count.sum(dim).clamp(min=1)


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) column of the last 1 in each row of a (B, T) mask (left or right padding alike)."""
    T = mask.shape[1]
    return T - 1 - mask.long().flip(1).argmax(1)
