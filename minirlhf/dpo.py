"""Direct Preference Optimization (Rafailov et al. 2023): learn from the comparisons, no RL loop.

RLHF's objective max_π E[r(x, y)] − β KL(π ‖ π_ref) has the optimum π*(y|x) ∝ π_ref(y|x) e^{r(x,y)/β}, so
r(x, y) = β log π*(y|x)/π_ref(y|x) + β log Z(x). Put that reward into the Bradley–Terry loss of reward.py
and Z(x) cancels between the two answers to one prompt:

    L_DPO = −E_{(x, y_w, y_l)} [ log σ( β log π_θ(y_w|x)/π_ref(y_w|x) − β log π_θ(y_l|x)/π_ref(y_l|x) ) ]

The policy is its own reward model, r̂(x, y) = β log π_θ(y|x)/π_ref(y|x) (the "implicit reward").
The KL is nowhere in the loss and nothing is sampled: β alone sets how far π may move from π_ref.
The data are the reward model's: every pair of every ranking, all pairs of a prompt in one batch.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

import torch
from tqdm.auto import tqdm

from .heldout import HeldoutCurve
from .logprobs import response_logprobs
from .masks import check_same_shape
from .reward import bradley_terry_loss, encode_dialogues, ranking_to_pairs
from .tokenizer import encode_prompts
from .training import check_finite, make_optimizer, set_seed


TIE_NATS = 1e-4   # two log-ratios closer than this are a tie, not an order (see dpo_loss)


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1             # β: the implicit KL coefficient (larger: stay nearer π_ref)
    epochs: int = 1
    prompts_per_batch: int = 8    # rankings per step; each gives K(K−1)/2 pairs
    lr: float = 1e-4
    grad_clip: float = 1.0


def dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float):
    """L_DPO on P pairs; each argument (P,) is log π(y|x) summed over the answer's tokens.

    Returns the loss and detached stats: the implicit rewards' accuracy (r̂_w > r̂_l; a tie counts half, as in
    the reward model's accuracy: at the first step the policy is the reference and every pair ties) and mean margin.
    A tie is |r̂_w − r̂_l| ≤ β·TIE_NATS, two log-ratios within TIE_NATS nats: π_θ and π_ref read one answer in
    batches of different sizes, and their float32 sums then differ by rounding alone (up to 8e-6 nats measured
    on the fast setting's answers).
    """
    check_same_shape(chosen_logps=chosen_logps, rejected_logps=rejected_logps, ref_chosen_logps=ref_chosen_logps,
                     ref_rejected_logps=ref_rejected_logps)
    chosen = beta * (chosen_logps - ref_chosen_logps)          # r̂(x, y_w)
    rejected = beta * (rejected_logps - ref_rejected_logps)    # r̂(x, y_l)
    loss = bradley_terry_loss(chosen, rejected)
    with torch.no_grad():
        tie = (chosen - rejected).abs() <= beta * TIE_NATS
        right = (chosen > rejected) & ~tie
        stats = {"reward_accuracy": (right.float() + 0.5 * tie.float()).mean().item(),
                 "reward_margin": (chosen - rejected).mean().item()}
    return loss, stats


def sequence_logprobs(model, tokenizer, rows) -> torch.Tensor:
    """log π(y|x) = Σ_t log π(y_t | x, y_<t) of every answer of every ranking in `rows`, flattened: (N,).

    Each answer is encoded as the reward model reads it (reward.encode_dialogues: the left-padded prompt,
    then the right-padded answer, its end token where it ended), so every answer starts in one column.
    """
    prompts = [r["prompt"] for r in rows for _ in r["responses"]]
    ids, attn = encode_dialogues(tokenizer, prompts, [y for r in rows for y in r["responses"]],
                                 [e for r in rows for e in r["ended"]])
    start = encode_prompts(tokenizer, prompts)["input_ids"].shape[1]
    ids, attn = ids.to(model.device), attn.to(model.device)
    return (response_logprobs(model, ids, attn, start) * attn[:, start:]).sum(1)


def train_dpo(policy, reference, tokenizer, comparisons, cfg: DPOConfig, seed: int = 0,
              desc: str = "dpo", after_step=None) -> list[dict]:
    """Optimise `policy` (in place) with the DPO loss on ranked comparisons; returns one log dict per step.
    `after_step(n, policy)`, if given, is called after each step with the number of steps done."""
    gen = set_seed(seed)
    rows = comparisons.to_list()
    reference.eval().requires_grad_(False)
    with torch.no_grad():   # π_ref never changes: its log-probs are computed once
        ref = [sequence_logprobs(reference, tokenizer, rows[i:i + 64]) for i in range(0, len(rows), 64)]
    ref = torch.cat(ref)
    first = list(itertools.accumulate([len(r["responses"]) for r in rows], initial=0))   # row -> its first answer
    opt = make_optimizer(policy.parameters(), cfg.lr)
    policy.eval()   # no dropout: the log-probs of π_θ and π_ref must be comparable
    steps_per_epoch = n_steps(rows, replace(cfg, epochs=1))
    history = []
    for step in tqdm(range(cfg.epochs * steps_per_epoch), desc=desc, mininterval=1.0):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(rows), generator=gen).tolist()
        batch = order[(step % steps_per_epoch) * cfg.prompts_per_batch:][:cfg.prompts_per_batch]
        logps = sequence_logprobs(policy, tokenizer, [rows[i] for i in batch])   # (N,) this batch's answers
        ref_logps = torch.cat([ref[first[i]:first[i + 1]] for i in batch]).to(logps.device)
        starts = list(itertools.accumulate([len(rows[i]["responses"]) for i in batch], initial=0))
        w, l = (list(x) for x in zip(*[(s + w, s + l) for s, i in zip(starts, batch)
                                       for w, l in ranking_to_pairs(rows[i]["ranking"])]))
        loss, stats = dpo_loss(logps[w], logps[l], ref_logps[w], ref_logps[l], cfg.beta)
        check_finite(loss, "DPO loss", step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        opt.step()
        # log π of the preferred and the rejected answers: DPO often lowers both (the margin still grows)
        history.append({"step": step, "loss": loss.item(), **stats,
                        "logp_chosen": logps[w].mean().item(), "logp_rejected": logps[l].mean().item()})
        if after_step is not None:
            after_step(step + 1, policy)
    return history


def n_steps(comparisons, cfg: DPOConfig) -> int:
    return cfg.epochs * max(1, len(comparisons) // cfg.prompts_per_batch)


def dpo_stage(policy, reference, comparisons, tokenizer, cfg: DPOConfig, seed: int = 0, desc: str = "dpo",
              reward_model=None, heldout_requests=(), heldout_checkpoints: int = 0, heldout_samples: int = 8,
              max_new_tokens: int = 24, no_end_score: float | None = -1.0) -> dict:
    """The DPO stage: `policy` (the SFT model) trained on `comparisons` (the reward model's rankings) with
    `reference` (the SFT model) as π_ref. With `heldout_checkpoints` > 0 the policy answers the held-out
    prompts along training (heldout.HeldoutCurve; `reward_model` scores them as RL would, `no_end_score` for
    an answer that never ends; DPO never sees these scores).
    Returns {"model": the policy, "log": {"history", "dpo", "heldout_history"?}}."""
    curve = HeldoutCurve(reward_model, reference, tokenizer, heldout_requests, n_steps(comparisons, cfg),
                         heldout_checkpoints, heldout_samples, max_new_tokens, no_end_score, seed)
    curve(0, policy)
    history = train_dpo(policy, reference, tokenizer, comparisons, cfg, seed, desc, after_step=curve)
    log = {"history": history, "dpo": asdict(cfg)}
    if curve.history:
        log["heldout_history"] = curve.history
    return {"model": policy, "log": log}
