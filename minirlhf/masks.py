"""Padding and masks: where the off-by-one bugs of RLHF hide.

Prompts are left-padded (so every response starts in the same column), responses right-padded
(after the end token). Every average over tokens must skip the padding, and every per-sequence
quantity (the reward, the last value) is read at the last *real* token, not the last column.
"""
from __future__ import annotations

import torch


def check_same_shape(**tensors: torch.Tensor) -> None:
    """Refuse tensors of different shapes, which PyTorch would silently broadcast into a wrong answer (a (3, 1)
    and a (3,) make a (3, 3)), and empty ones, whose mean is NaN."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"expected tensors of one shape, got {shapes}: reshape them alike (no broadcasting here)")
    if any(t.numel() == 0 for t in tensors.values()):
        raise ValueError(f"expected at least one element, got empty tensors {shapes}: the mean of nothing is NaN")


def _check_batch(seqs) -> None:
    if len(seqs) == 0:
        raise ValueError("got an empty batch: pass at least one sequence")


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists to (B, T) ids and mask."""
    _check_batch(seqs)
    T = max(len(s) for s in seqs)
    ids = torch.tensor([list(s) + [pad_id] * (T - len(s)) for s in seqs], dtype=torch.long)
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs], dtype=torch.long)
    return ids, mask


def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to (B, T) ids and mask: every sequence ends in the last column."""
    _check_batch(seqs)
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
    """(B,) column of the last 1 in each row of a (B, T) mask (left or right padding alike). A row with no 1
    has no last token: refused (it would silently read a padding column)."""
    empty = (~mask.bool().any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty[:5]} of the mask have no real token: an empty sequence has no last token "
                         "(drop those rows)")
    T = mask.shape[1]
    return T - 1 - mask.long().flip(1).argmax(1)
