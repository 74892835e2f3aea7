"""A GPT as small and readable as nanoGPT's, made ready for RLHF.

What RLHF needs beyond nanoGPT:
  * `attention_mask` and `position_ids`, so a left-padded batch gives the same logits for the
    real tokens as the unpadded sequences (position_ids = mask.cumsum(1) - mask);
  * `hidden_states`, so a reward or value head can read the last layer;
  * a KV cache, so sampling a response costs one token's work per step (see generate.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import SavesPretrained
from .packing import pack, unpack


@dataclass
class GPTConfig:
    vocab_size: int = 256
    block_size: int = 64      # longest sequence (prompt + response) in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0      # RLHF wants dropout off: log-probs must be reproducible
    tie_weights: bool = True  # share the token embedding with the output layer

    def __post_init__(self):
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head, self.n_embd) < 1:
            raise ValueError(f"GPTConfig sizes must all be positive, got {self}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head} "
                             "(each head gets n_embd // n_head dimensions)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def default_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) positions that start at 0 on the first real token, whatever the left padding."""
    return (attention_mask.long().cumsum(1) - attention_mask.long()).clamp(min=0)


def attention_allowed(key_mask: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, T, S) bool: which keys each of the last T queries may attend to; key_mask (B, S).

    key_mask is 0 on padding and otherwise the sequence a token belongs to: 1 in a padded batch, 1, 2, …
    in a packed row (packing.py). Query i sits at column S - T + i: it sees the earlier keys of its own
    sequence, and always itself (so a padding query attends to something and softmax never sees an
    empty row).
    """
    S = key_mask.shape[1]
    qpos = torch.arange(S - T, S, device=key_mask.device)[:, None]
    kpos = torch.arange(S, device=key_mask.device)[None, :]
    same = (key_mask[:, None, :] == key_mask[:, S - T:, None]) & (key_mask[:, None, :] != 0)   # (B, T, S)
    allowed = ((kpos <= qpos)[None] & same) | (kpos == qpos)[None]
    return allowed[:, None]


class KVCache:
    """The keys and values of every layer for up to `max_len` tokens, allocated once.

    Sampling appends one token per step: writing it into a preallocated buffer costs one token's
    copy, where `torch.cat` would copy the whole cache again at every step and layer.
    """

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (cfg.n_layer, batch_size, cfg.n_head, max_len, cfg.n_embd // cfg.n_head)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0   # tokens cached so far; the model advances it after its last layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new (B, H, T, D) keys and values of `layer`; return all of them so far, (B, H, S, D)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[3]:
            raise ValueError(f"the KV cache holds {self.k.shape[3]} tokens; {end} were asked for")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.n_head, self.layer = cfg.n_head, layer
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x, allowed, cache: KVCache | None = None):
        """x: (B, T, C); allowed: (B, 1, T, S) from `attention_allowed`, S = cached + new tokens."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)   # (B, H, S, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, allowed, cache=None):
        x = x + self.attn(self.ln1(x), allowed, cache)
        return x + self.mlp(self.ln2(x))


class GPT(SavesPretrained, nn.Module):
    model_type, config_class, tied_weight = "minirlhf-gpt", GPTConfig, "lm_head.weight"

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hidden_states(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None):
        """Last-layer states (B, T, C) and the cache (None without one), to which the new tokens' keys
        and values are added.

        `attention_mask` is (B, S): 1 for real tokens, 0 for padding, over cached and new tokens. A padded
        batch without a cache is packed first (packing.py: the same outputs up to rounding, for the
        compute of its real tokens only); its states come back in the padded layout, 0 on padding.
        """
        B, T = input_ids.shape
        past_len = 0 if cache is None else cache.length
        if attention_mask is None:
            attention_mask = torch.ones(B, past_len + T, dtype=torch.long, device=input_ids.device)
        if attention_mask.shape != (B, past_len + T):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                             f"{(B, past_len + T)} (batch, cached + new tokens)")
        real = attention_mask.bool()
        # packed rows come back here with their segment numbers as the mask and their own positions, so
        # they are not packed again (a mask of segment numbers needs those positions)
        if cache is None and position_ids is None and not real.all() and real.any(1).all():
            p = pack(input_ids, attention_mask)
            h, _ = self.hidden_states(p.input_ids, p.segments, p.position_ids)
            return unpack(h, p), None
        if position_ids is None:
            position_ids = default_position_ids(attention_mask)[:, past_len:]
        if past_len + T > self.config.block_size or int(position_ids.max()) >= self.config.block_size:
            raise ValueError(f"sequence of {past_len + T} tokens is longer than block_size="
                             f"{self.config.block_size}: shorten the input or max_new_tokens")
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(position_ids))
        allowed = attention_allowed(attention_mask, T)   # (B, 1, T, S), the same for every layer
        for block in self.blocks:
            x = block(x, allowed, cache)
        if cache is not None:
            cache.length += T
        return self.ln_f(x), cache

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache: KVCache | None = None):
        """Logits (B, T, V) for the next token at every position, and the cache (see hidden_states)."""
        h, cache = self.hidden_states(input_ids, attention_mask, position_ids, cache)
        return self.lm_head(h), cache
