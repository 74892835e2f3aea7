"""The reward model: a GPT backbone with a scalar head, trained on ranked comparisons.

    r(x, y) = w · h_last + b         h_last: the last layer's state at the last real token of y

Labelers rank K responses to a prompt; each ranking gives K(K−1)/2 pairs (y_w preferred to y_l),
and the Bradley–Terry model P(y_w ≻ y_l) = σ(r(x, y_w) − r(x, y_l)) gives the loss

    L = −E_{(x, y_w, y_l)} [ log σ(r(x, y_w) − r(x, y_l)) ]

All pairs of one prompt go into the same batch (InstructGPT): the K responses are scored once and
the prompt's pairs do not overfit across batches.

`reward_stage` is the whole recipe: rank answers, fit the model, normalise it. Iterated RLHF
(InstructGPT, Anthropic's HH) runs it again with the current policy writing the answers and the
comparisons of every earlier round kept.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from datasets import concatenate_datasets
from tqdm.auto import tqdm

from .checkpoint import SavesPretrained
from .comparisons import collect_comparisons
from .labelers import PERSONAS
from .masks import check_same_shape, last_index, pad_right
from .model import GPT, GPTConfig
from .sampling import sample_responses
from .tokenizer import encode_prompts
from .training import check_finite, make_optimizer, set_seed


def ranking_to_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """A ranking (indices, best first) -> every (winner, loser) pair: K(K−1)/2 of them."""
    return [(ranking[i], ranking[j]) for i, j in itertools.combinations(range(len(ranking)), 2)]


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """−mean log σ(r_w − r_l) over pairs; r_chosen, r_rejected: (P,)."""
    check_same_shape(r_chosen=r_chosen, r_rejected=r_rejected)
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(SavesPretrained, nn.Module):
    """GPT backbone + scalar head. Also serves as the PPO value model (one value per token).

    `forward` returns the normalised score r(x, y) (B,); `values` returns the head on every
    position (B, T). The score is normalised, (raw − mean) / std, so that samples of the SFT
    policy score mean 0 and std 1 (lm-human-preferences): β then means the same thing whatever
    the reward model's scale.
    """
    model_type, config_class, tied_weight = "minirlhf-reward", GPTConfig, "backbone.lm_head.weight"

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
        if raw_scores.numel() < 2 or not torch.isfinite(raw_scores).all():
            raise ValueError(f"set_normalization needs at least 2 finite scores to measure a spread, got "
                             f"{raw_scores.numel()} ({raw_scores.flatten()[:4].tolist()}...)")
        self.norm_mean.fill_(raw_scores.mean().item())
        self.norm_std.fill_(raw_scores.std().clamp(min=1e-6).item())


# ---------------------------------------------------------------------------------------
# Training on rankings
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RewardConfig:
    k: int = 4                    # responses ranked per prompt
    n_rankings: int = 1200        # rankings collected (prompts are cycled)
    prompts_per_batch: int = 8    # all K(K-1)/2 pairs of each prompt go in the same batch
    epochs: int = 4
    lr: float = 3e-4
    center_coef: float = 0.0      # optional penalty c·E[r²] that keeps scores centred on 0
    grad_clip: float = 1.0
    norm_samples_per_prompt: int = 2   # policy answers per RL prompt that set the normalisation
    heldout_rankings_per_prompt: int = 4   # rankings of each held-out prompt the accuracies are measured on


def encode_dialogues(tokenizer, prompts: list[str], responses: list[str], ended: list[bool]):
    """Left-padded prompt + right-padded response, as generation produced them: (B, T) ids and mask.

    The end token is appended only where the response ended, so the reward model sees exactly
    what the policy wrote.
    """
    enc = encode_prompts(tokenizer, prompts)
    words = tokenizer(list(responses), add_special_tokens=False)["input_ids"]   # one call for the batch: fast
    resp = [ids + ([tokenizer.eos_token_id] if e else []) for ids, e in zip(words, ended)]
    r_ids, r_mask = pad_right(resp, tokenizer.pad_token_id)
    return torch.cat([enc["input_ids"], r_ids], 1), torch.cat([enc["attention_mask"], r_mask], 1)


def _score_flat(rm, tokenizer, rows) -> tuple[torch.Tensor, list[int]]:
    """Raw scores of every response of every row, flattened: (N,), and where each row starts in it."""
    prompts = [row["prompt"] for row in rows for _ in row["responses"]]
    responses = [r for row in rows for r in row["responses"]]
    ended = [e for row in rows for e in row["ended"]]
    ids, attn = encode_dialogues(tokenizer, prompts, responses, ended)
    starts = list(itertools.accumulate([len(row["responses"]) for row in rows[:-1]], initial=0))
    return rm.raw_score(ids.to(rm.device), attn.to(rm.device)), starts


def train_reward_model(rm: RewardModel, tokenizer, comparisons, cfg: RewardConfig, seed: int = 0) -> list[float]:
    """Bradley–Terry training on ranked comparisons; returns the loss of every step."""
    gen = set_seed(seed)
    opt = make_optimizer(rm.parameters(), cfg.lr)
    rows = comparisons.to_list()
    steps_per_epoch = max(1, len(rows) // cfg.prompts_per_batch)
    losses = []
    rm.train()
    for step in tqdm(range(cfg.epochs * steps_per_epoch), desc="reward model", mininterval=1.0):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(rows), generator=gen).tolist()
        start = (step % steps_per_epoch) * cfg.prompts_per_batch
        batch = [rows[i] for i in order[start:start + cfg.prompts_per_batch]]
        scores, starts = _score_flat(rm, tokenizer, batch)  # (N,) every response of the batch's prompts
        w, l = zip(*[(s + w, s + l) for s, row in zip(starts, batch) for w, l in ranking_to_pairs(row["ranking"])])
        loss = bradley_terry_loss(scores[list(w)], scores[list(l)]) + cfg.center_coef * (scores ** 2).mean()
        check_finite(loss, "reward model loss", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
    rm.eval()
    return losses


def _agreement(a: float, b: float) -> float:
    """1 if a > b, ½ on a tie (the order cannot be told: a coin flip), 0 otherwise."""
    return 1.0 if a > b else 0.5 if a == b else 0.0


@torch.no_grad()
def pair_agreements(rm: RewardModel, tokenizer, comparisons) -> list[dict]:
    """Every pair of every ranking, with how the reward model's order agrees with two references:

      labels    agreement with the labeler's (noisy) order: 1, ½ on a reward-model tie, 0
      ceiling   the gold score's own agreement with that order (½ on a gold tie)
      gold      agreement with the gold order; None where gold scores a tie (no preference stated)
    Each row also has the ranking's prompt and kind.
    """
    rows = comparisons.to_list()
    out = []
    for start in range(0, len(rows), 64):
        chunk = rows[start:start + 64]
        scores, starts = _score_flat(rm, tokenizer, chunk)
        scores = scores.tolist()
        for row, s0 in zip(chunk, starts):
            s = scores[s0:s0 + len(row["responses"])]
            for w, l in ranking_to_pairs(row["ranking"]):
                gw, gl = row["gold"][w], row["gold"][l]
                gold = None if abs(gw - gl) <= 1e-9 else _agreement(s[w], s[l]) if gw > gl else _agreement(s[l], s[w])
                out.append({"prompt": row["prompt"], "kind": row["kind"], "labels": _agreement(s[w], s[l]),
                            "ceiling": _agreement(gw, gl), "gold": gold})
    return out


def pairwise_accuracy(rm: RewardModel, tokenizer, comparisons) -> dict:
    """How often the reward model orders the pairs of some rankings right, against two references.

      accuracy_gold       its target: agreement with the gold order, on the pairs gold does not
                          score as a tie (a tie states no preference); also by request kind
      accuracy_labelers   agreement with the noisy labels; to be read against
      labelers_ceiling    gold's own agreement with the same labels: what even a perfect reward
                          model would reach, since labelers flip close pairs
    A reward-model tie (equal scores) counts ½, and so does a gold tie in the ceiling.
    """
    pairs = pair_agreements(rm, tokenizer, comparisons)
    decisive = [p for p in pairs if p["gold"] is not None]
    kinds = sorted({p["kind"] for p in decisive})
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"accuracy_gold": mean([p["gold"] for p in decisive]),
            "accuracy_labelers": mean([p["labels"] for p in pairs]),
            "labelers_ceiling": mean([p["ceiling"] for p in pairs]),
            "n_pairs": len(pairs), "n_gold_pairs": len(decisive),
            "accuracy_gold_by_kind": {k: mean([p["gold"] for p in decisive if p["kind"] == k]) for k in kinds},
            "n_gold_pairs_by_kind": {k: sum(p["kind"] == k for p in decisive) for k in kinds}}


# ---------------------------------------------------------------------------------------
# The stage: rankings → a trained, normalised reward model
# ---------------------------------------------------------------------------------------

# three samplings, three random streams: training rankings, held-out rankings, normalisation
HELDOUT_SEED_OFFSET, NORMALISATION_SEED_OFFSET = 1, 2


def reward_stage(sft_model: GPT, tokenizer, train_requests, heldout_requests, norm_requests, cfg: RewardConfig,
                 labeler: str = "gold", max_new_tokens: int = 24, seed: int = 0, policy: GPT | None = None,
                 previous_comparisons=(), previous_reward_model: RewardModel | None = None) -> dict:
    """The reward-model stage.

      1. `policy` (default: the SFT model) answers K times to each training and held-out prompt, and
         the labeler persona (labelers.PERSONAS; "gold" is the average person) ranks the answers;
      2. a reward model initialised from the SFT model learns these rankings and `previous_comparisons`
         (Bradley–Terry);
      3. it is normalised so `policy`'s answers to `norm_requests` score mean 0, std 1.
    Iterated RLHF passes the current policy, the comparisons of earlier rounds and the reward model they
    trained, whose held-out accuracy on the new answers is logged beside the new one's.

    Returns {"model", "comparisons" (this round's), "comparisons_heldout", "log"}.
    """
    policy = sft_model if policy is None else policy
    persona = PERSONAS[labeler]
    new = collect_comparisons(policy, tokenizer, train_requests, cfg.n_rankings, cfg.k, persona, max_new_tokens, seed)
    heldout = collect_comparisons(policy, tokenizer, heldout_requests,
                                  cfg.heldout_rankings_per_prompt * len(heldout_requests), cfg.k, persona,
                                  max_new_tokens, seed + HELDOUT_SEED_OFFSET)
    comparisons = concatenate_datasets([*previous_comparisons, new]) if previous_comparisons else new
    set_seed(seed)
    rm = RewardModel.from_language_model(sft_model)
    losses = train_reward_model(rm, tokenizer, comparisons, cfg, seed)
    rows = sample_responses(policy, tokenizer, norm_requests, cfg.norm_samples_per_prompt, max_new_tokens,
                            seed=seed + NORMALISATION_SEED_OFFSET)
    ids, attn = encode_dialogues(tokenizer, [r["prompt"] for r in rows], [r["response"] for r in rows],
                                 [r["ended"] for r in rows])
    with torch.no_grad():
        rm.set_normalization(rm.raw_score(ids.to(rm.device), attn.to(rm.device)))
    log = {"losses": losses, "n_comparisons": len(comparisons),
           "rankings": {"asked": cfg.n_rankings, "kept": len(new),
                        "short_of_k": sum(len(r) < cfg.k for r in new["responses"])},
           "train": pairwise_accuracy(rm, tokenizer, comparisons), "heldout": pairwise_accuracy(rm, tokenizer, heldout)}
    if previous_reward_model is not None:
        log["heldout_previous_reward_model"] = pairwise_accuracy(previous_reward_model, tokenizer, heldout)
    return {"model": rm, "comparisons": new, "comparisons_heldout": heldout, "log": log}
