"""Padding-free batches ("packing"): the sequences of a padded batch laid end to end in fewer rows.

A batch of prompts and responses is mostly padding: prompts are left-padded to the longest prompt and
responses right-padded to the longest response, and in a PPO minibatch of the default setting ~45% of
the cells are padding, on which a transformer spends as much as on a token. Packing moves each
sequence's real tokens into rows as long as the longest sequence, several sequences to a row (first
fit, in batch order), and tags every token with the number of its sequence within the row:

    padded (B=4, T=6)          packed (R=3, L=4)          segments
    . . a a a a                a a a a                    1 1 1 1
    . b b b . .                b b b c                    1 1 1 2
    c . . . . .                d d . .                    1 1 0 0
    . . d d . .

Attention stays inside a sequence (model.attention_allowed compares segments) and positions restart
at 0 for every sequence, so each real token gets the output the padded batch gives it, up to float
rounding (TRL's padding-free training and flash-attention's variable-length batches do the same).
A default PPO minibatch of seed 0's SFT answers needs about two thirds of its padded cells (0.685 over
200 minibatches); the time saved is measured by benchmarks/ppo_step_vs_commit.py (README).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packing:
    input_ids: torch.Tensor      # (R, L) the real tokens, sequence after sequence; 0 after a row's last one
    segments: torch.Tensor       # (R, L) 1, 2, … the sequence each token belongs to within its row; 0 on padding
    position_ids: torch.Tensor   # (R, L) each token's position within its own sequence
    cells: torch.Tensor          # (n,) where each real token of the padded batch went, as index r·L + l
    real: torch.Tensor           # (B, T) bool, the padded batch's real tokens (row by row, as `cells`)


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Packing:
    """Pack a padded batch: input_ids and attention_mask (B, T), 1 on real tokens, anywhere in a row."""
    real = attention_mask.bool()
    lengths = real.sum(1).tolist()
    L = max(lengths)
    used: list[int] = []                            # per row: columns taken so far
    rows, starts, segments = [], [], []             # per sequence: its row, first column, number in the row
    count: dict[int, int] = {}
    for n in lengths:
        r = next((r for r, u in enumerate(used) if u + n <= L), len(used))   # the first row it fits in
        if r == len(used):
            used.append(0)
        rows.append(r)
        starts.append(used[r])
        used[r] += n
        count[r] = count.get(r, 0) + 1
        segments.append(count[r])
    R, device = len(used), input_ids.device
    column = lambda values: torch.tensor(values, device=device)[:, None]    # (B, 1)
    rank = real.long().cumsum(1) - 1                                          # (B, T) position within its sequence
    cell = (column(rows) * L + column(starts) + rank)[real]                   # (n,) r·L + l of each real token

    def flat(values: torch.Tensor) -> torch.Tensor:   # (B, T) values -> (R, L), 0 where no token went
        return values.new_zeros(R * L).index_put_((cell,), values[real]).view(R, L)
    return Packing(input_ids=flat(input_ids), segments=flat(column(segments).expand_as(rank)),
                   position_ids=flat(rank), cells=cell, real=real)


def unpack(x: torch.Tensor, p: Packing) -> torch.Tensor:
    """Packed (R, L, ...) back to the padded layout (B, T, ...), zeros on padding (gradients flow through)."""
    R, L, *rest = x.shape
    B, T = p.real.shape
    tokens = x.reshape(R * L, *rest).index_select(0, p.cells)                      # (n, ...)
    where = p.real.flatten().nonzero().squeeze(1)                                  # (n,) b·T + t of each
    return x.new_zeros(B * T, *rest).index_copy(0, where, tokens).view(B, T, *rest)
