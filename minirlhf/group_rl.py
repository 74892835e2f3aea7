"""RL without a value model: a group of G answers to each prompt is its own baseline (RLOO, GRPO).

One step, with the budget of a PPO step (cfg.batch_size answers = batch_size / G prompts × G answers):
  1. roll out G answers to each prompt and score them (rollout.py, as PPO);
  2. one number per answer, R_i: the score, minus β·KL(π_old ‖ π_ref) of the answer when the KL is in
     the reward (RLOO); the algorithm turns the group's R into advantages A_i (rloo.py, grpo.py);
  3. every token of answer i gets A_i, and the clipped surrogate of ppo.py is minimised over several
     epochs of minibatches, plus β·k3 per token when the KL is in the loss (GRPO).
No critic, no GAE: the other answers to the same prompt say what "better than expected" means.
The PPO settings (steps, batch, minibatch, epochs, lr, β, clip) are reused as they are: the same budget
(GRPO's β weighs a per-token average of the KL, PPO's and RLOO's a sum over the answer: see grpo.py).
"""
from __future__ import annotations

from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from . import ppo
from .heldout import HeldoutCurve
from .kl import kl_k3
from .labelers import gold_score
from .logprobs import entropy_from_logits, gather_logprobs, response_logits
from .masks import masked_mean
from .rollout import rollout
from .training import check_finite, make_optimizer, set_lr, set_seed


def train_group_rl(policy, ref_model, reward_model, tokenizer, requests, cfg, advantages, group_size: int,
                   kl_in_loss: bool, seed: int = 0, desc: str = "group", after_step=None) -> list[dict]:
    """Optimise `policy` in place; `cfg` is a PPOConfig, `advantages` maps R (P, G) to A (P, G).

    kl_in_loss False: R_i = score_i − β Σ_t k1_t (the penalty in the reward, as PPO and RLOO);
    True: R_i = score_i and the loss adds β·mean_t k3_t of π_θ against π_ref (GRPO's paper).
    Returns one log dict per step; `after_step(n, policy)` as in rlhf.train_ppo.
    """
    if cfg.batch_size % group_size or cfg.batch_size % cfg.minibatch_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of group_size={group_size} and of "
                         f"minibatch_size={cfg.minibatch_size}")
    if cfg.adaptive_kl or cfg.ptx_coef:
        raise ValueError("group-baseline RL here keeps β fixed and has no ptx term: set adaptive_kl=False, ptx_coef=0")
    gen = set_seed(seed)
    device = policy.device
    sample_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    for m in (policy, ref_model, reward_model):
        m.eval()   # no dropout: log-probs must be reproducible
    ref_model.requires_grad_(False)
    reward_model.requires_grad_(False)
    opt = make_optimizer(policy.parameters(), cfg.lr)
    beta, n_prompts = cfg.kl_coef, cfg.batch_size // group_size
    history = []
    for step in tqdm(range(cfg.steps), desc=desc, mininterval=1.0):
        if cfg.anneal_lr:
            set_lr(opt, ppo.linear_decay(step, cfg.steps, cfg.lr))
        batch = [requests[i] for i in torch.randint(len(requests), (n_prompts,), generator=gen)]
        batch = [r for r in batch for _ in range(group_size)]          # each prompt's G answers together
        ro = rollout(policy, ref_model, reward_model, tokenizer, [r.prompt for r in batch], cfg.max_new_tokens,
                     cfg.temperature, cfg.no_end_score, sample_gen)
        kl = ((ro.logp - ro.ref_logp) * ro.mask).sum(1)                 # (B,) Σ_t k1_t
        R = ro.score if kl_in_loss else ro.score - beta * kl            # (B,)
        Rg = R.view(n_prompts, group_size)                              # (P, G) each prompt's answers in a row
        A = advantages(Rg).reshape(-1)                                  # (B,)
        stats: dict[str, list[float]] = {}
        for epoch in range(cfg.epochs):
            order = torch.randperm(cfg.batch_size, generator=gen)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size].to(device)
                mask = ro.mask[idx]
                logits = response_logits(policy, ro.input_ids[idx], ro.attention_mask[idx], ro.response_start,
                                         cfg.temperature)
                logp = gather_logprobs(logits, ro.response_ids[idx])
                token_adv = A[idx, None] * mask                             # (b, N) A_i on every token of y_i
                loss, pstats = ppo.policy_loss(logp, ro.logp[idx], token_adv, mask, cfg.clip)
                if kl_in_loss:
                    kl_loss = masked_mean(kl_k3(logp, ro.ref_logp[idx]), mask)
                    loss = loss + beta * kl_loss
                    pstats["kl_loss"] = kl_loss.item()
                check_finite(loss, "policy loss", step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                opt.step()
                with torch.no_grad():
                    entropy = masked_mean(entropy_from_logits(logits), mask)
                for k, v in {"policy_loss": loss.item(), "entropy": entropy.item(), **pstats}.items():
                    stats.setdefault(k, []).append(v)
        golds = [gold_score(r, t, bool(e)) for r, t, e in zip(batch, ro.texts, ro.ended)]
        history.append({
            "step": step, "rm_score": ro.rm_score.mean().item(), "gold_score": sum(golds) / len(golds),
            "kl": kl.mean().item(), "kl_coef": beta, "response_len": ro.mask.sum(1).float().mean().item(),
            "ended": ro.ended.float().mean().item(),
            # answers whose group all scored alike get A = 0 (up to rounding): they teach nothing this step
            "zero_advantage": (Rg == Rg[:, :1]).all(1).float().mean().item(),
            **{k: sum(v) / len(v) for k, v in stats.items()}})
        if after_step is not None:
            after_step(step + 1, policy)
    policy.requires_grad_(True)
    return history


def group_rl_stage(policy, reference, reward_model, tokenizer, requests, cfg, advantages, kl_in_loss: bool,
                   group_size: int, seed: int, desc: str, heldout_requests, heldout_checkpoints: int,
                   heldout_samples: int) -> dict:
    """What rloo_stage and grpo_stage share: train, watching the held-out curve (heldout.HeldoutCurve)."""
    curve = HeldoutCurve(reward_model, reference, tokenizer, heldout_requests, cfg.steps, heldout_checkpoints,
                         heldout_samples, cfg.max_new_tokens, cfg.no_end_score, seed)
    curve(0, policy)
    history = train_group_rl(policy, reference, reward_model, tokenizer, requests, cfg, advantages, group_size,
                             kl_in_loss, seed, desc, after_step=curve)
    log = {"history": history, "ppo": asdict(cfg), "group_size": group_size}
    if curve.history:
        log["heldout_history"] = curve.history
    return {"model": policy, "log": log}
