"""The RLHF training loop: roll out, score, compute advantages, update with PPO.

One PPO step:
  1. sample responses y ~ π_θ(·|x) for a batch of prompts (KV-cache generation);
  2. score them: log π_old, log π_ref, values V(s_t), reward-model score r_RM(x, y)
     (a response that never ends gets a fixed low score instead: the "EOS trick");
  3. per-token rewards r_t = −β·k1_t, plus r_RM on the last token; GAE advantages, whitened;
  4. several epochs of minibatches of the clipped policy loss and the clipped value loss;
  5. adapt β if the controller is adaptive.
The maths of steps 3–4 is in ppo.py; `functions` lets an exercise swap in its own versions.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from . import ppo
from .generate import generate
from .kl import AdaptiveKLController, FixedKLController, kl_k3
from .labelers import gold_score
from .logprobs import entropy_from_logits, gather_logprobs, masked_mean, response_logits, response_logprobs
from .reward import RewardModel
from .tokenizer import encode_prompts
from .training import check_finite, lm_loss, make_optimizer, pad_right, set_seed


@dataclass(frozen=True)
class PPOConfig:
    steps: int = 60                  # rollouts (one PPO update each)
    batch_size: int = 64             # prompts per rollout
    minibatch_size: int = 16
    epochs: int = 4                  # passes over each rollout (InstructGPT, lm-human-preferences)
    max_new_tokens: int = 24
    temperature: float = 1.0
    lr: float = 3e-5
    value_lr: float = 1e-4
    kl_coef: float = 0.2             # β; 0 switches the penalty off
    adaptive_kl: bool = False
    kl_target: float = 1.0           # nats per response, for the adaptive controller
    kl_horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    no_end_score: float | None = -1.0  # score of a response that never ends (None: use the RM's)
    whiten_advantages: bool = True
    freeze_layers: int = 0           # freeze embeddings and the lowest N blocks ("grey neurons")
    ptx_coef: float = 0.0            # InstructGPT's PPO-ptx: mix in the pretraining loss
    grad_clip: float = 1.0


DEFAULT_FUNCTIONS = {"per_token_rewards": ppo.per_token_rewards, "gae": ppo.gae,
                     "policy_loss": ppo.policy_loss, "value_loss": ppo.value_loss}


def value_model_from_reward_model(rm: RewardModel) -> RewardModel:
    """A separate value model, initialised from the reward model (lm-human-preferences, N+ paper).

    A separate model rather than a head on the policy: the value loss then cannot pull the
    policy's features around, and V starts from a network that already knows what is good.
    Its head is rescaled so V(s) speaks the normalised reward's scale from the start.
    """
    value = RewardModel(rm.config).to(rm.device)
    value.load_state_dict(rm.state_dict())
    with torch.no_grad():
        value.head.weight /= rm.norm_std
        value.head.bias.sub_(rm.norm_mean).div_(rm.norm_std)
    return value


def freeze_lower_layers(model, n: int) -> None:
    """Train only the top blocks: embeddings and the lowest `n` blocks stay as SFT left them."""
    if n < 0 or n > model.config.n_layer:
        raise ValueError(f"freeze_layers must be in [0, {model.config.n_layer}], got {n}")
    if n == 0:
        return
    for p in [*model.tok_emb.parameters(), *model.pos_emb.parameters()]:
        p.requires_grad_(False)
    for block in model.blocks[:n]:
        for p in block.parameters():
            p.requires_grad_(False)


def _loss(out):
    """Accept either `loss` or `(loss, stats)` from a (student's) loss function."""
    return out if isinstance(out, tuple) else (out, {})


@torch.no_grad()
def rollout(policy, ref_model, reward_model, value_model, tokenizer, requests, cfg: PPOConfig,
            kl_coef: float, generator: torch.Generator, functions: dict) -> dict:
    """Sample and score one batch. Every tensor is (B, N) over response tokens unless noted."""
    device = policy.device
    enc = encode_prompts(tokenizer, [r.prompt for r in requests])
    gen = generate(policy, enc["input_ids"].to(device), enc["attention_mask"].to(device),
                   cfg.max_new_tokens, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   temperature=cfg.temperature, generator=generator)
    ids, attn, P, mask = gen.input_ids, gen.attention_mask, gen.response_start, gen.response_mask
    # log π_old is recomputed with the same forward pass training uses, so that the first
    # minibatch's ratio is 1 (sampling-time log-probs differ by KV-cache rounding)
    logp = response_logprobs(policy, ids, attn, P, cfg.temperature)
    ref_logp = response_logprobs(ref_model, ids, attn, P, cfg.temperature)
    values = value_model.values(ids, attn)[:, P - 1:-1] * mask   # V(s_t): the state before y_t
    rm_score = reward_model(ids, attn)                            # (B,) read at the last real token
    score = rm_score
    if cfg.no_end_score is not None:
        score = torch.where(gen.ended, rm_score, torch.full_like(rm_score, cfg.no_end_score))
    rewards, kl = functions["per_token_rewards"](score, logp * mask, ref_logp * mask, mask, kl_coef)
    advantages, returns = functions["gae"](rewards, values, mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = ppo.whiten(advantages, mask)
    texts = [tokenizer.decode(r[m.bool()], skip_special_tokens=True)
             for r, m in zip(gen.response_ids, gen.response_mask)]
    return dict(ids=ids, attn=attn, P=P, response_ids=gen.response_ids, mask=mask, logp=logp,
                ref_logp=ref_logp, values=values, advantages=advantages, returns=returns,
                rm_score=rm_score, kl=kl, ended=gen.ended, texts=texts)


def train_ppo(policy, ref_model, reward_model, value_model, tokenizer, requests, cfg: PPOConfig,
              seed: int = 0, functions: dict | None = None, ptx_examples=None,
              desc: str = "ppo") -> list[dict]:
    """Optimise `policy` (in place) against `reward_model` with PPO; returns one log dict per step.

    `requests` are `world.Request`s (their prompts are the RL prompts; the gold labeler uses the
    rest only to log the gold score). `functions` overrides entries of DEFAULT_FUNCTIONS.
    `ptx_examples` (pretraining examples) are needed when cfg.ptx_coef > 0.
    """
    functions = {**DEFAULT_FUNCTIONS, **(functions or {})}
    if cfg.ptx_coef > 0 and not ptx_examples:
        raise ValueError("ptx_coef > 0 needs ptx_examples (pretraining documents, see pretrain.document_examples)")
    if cfg.batch_size % cfg.minibatch_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of minibatch_size={cfg.minibatch_size}")
    gen = set_seed(seed)
    rng = random.Random(seed)
    device = policy.device
    # sampling on a GPU needs a generator that lives there; on the CPU one stream serves all
    sample_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    freeze_lower_layers(policy, cfg.freeze_layers)
    for m in (policy, ref_model, reward_model, value_model):
        m.eval()  # dropout off everywhere: log-probs must be reproducible
    ref_model.requires_grad_(False)
    reward_model.requires_grad_(False)
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.kl_coef))
    opt = make_optimizer(policy.parameters(), cfg.lr)
    value_opt = make_optimizer(value_model.parameters(), cfg.value_lr)
    history = []
    for step in tqdm(range(cfg.steps), desc=desc, mininterval=1.0):
        batch = [requests[i] for i in torch.randint(len(requests), (cfg.batch_size,), generator=gen)]
        ro = rollout(policy, ref_model, reward_model, value_model, tokenizer, batch, cfg,
                     kl_ctl.value, sample_gen, functions)
        stats: dict[str, list[float]] = {}
        for epoch in range(cfg.epochs):
            order = torch.randperm(cfg.batch_size, generator=gen)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size].to(device)
                mask = ro["mask"][idx]
                logits = response_logits(policy, ro["ids"][idx], ro["attn"][idx], ro["P"], cfg.temperature)
                logp = gather_logprobs(logits, ro["response_ids"][idx])
                pl, pstats = _loss(functions["policy_loss"](logp, ro["logp"][idx], ro["advantages"][idx],
                                                            mask, cfg.clip))
                loss = pl
                if cfg.ptx_coef > 0:
                    docs = rng.sample(ptx_examples, len(idx))
                    pids, pattn = pad_right([d[0] for d in docs], tokenizer.pad_token_id)
                    loss = loss + cfg.ptx_coef * lm_loss(policy, pids.to(device), pattn.to(device), pattn.to(device))
                check_finite(loss, "policy loss", step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                opt.step()

                values = value_model.values(ro["ids"][idx], ro["attn"][idx])[:, ro["P"] - 1:-1] * mask
                vl, vstats = _loss(functions["value_loss"](values, ro["values"][idx], ro["returns"][idx],
                                                           mask, cfg.value_clip))
                check_finite(vl, "value loss", step)
                value_opt.zero_grad(set_to_none=True)
                vl.backward()
                torch.nn.utils.clip_grad_norm_(value_model.parameters(), cfg.grad_clip)
                value_opt.step()

                with torch.no_grad():
                    entropy = masked_mean(entropy_from_logits(logits), mask)
                for k, v in {"policy_loss": pl.item(), "value_loss": vl.item(), "entropy": entropy.item(),
                             **pstats, **vstats}.items():
                    stats.setdefault(k, []).append(v)
                if epoch == 0 and start == 0:
                    stats["first_approx_kl"] = [masked_mean(kl_k3(ro["logp"][idx], logp.detach()), mask).item()]
        seq_kl = ro["kl"].sum(1).mean().item()
        golds = [gold_score(r, t, bool(e)) for r, t, e in zip(batch, ro["texts"], ro["ended"])]
        history.append({
            "step": step, "rm_score": ro["rm_score"].mean().item(), "gold_score": sum(golds) / len(golds),
            "kl": seq_kl, "kl_coef": kl_ctl.value, "kl_reward": -kl_ctl.value * seq_kl,
            "response_len": ro["mask"].sum(1).float().mean().item(),
            "ended": ro["ended"].float().mean().item(),
            "explained_variance": ppo.explained_variance(ro["values"], ro["returns"], ro["mask"]),
            **{k: sum(v) / len(v) for k, v in stats.items()}})
        kl_ctl.update(seq_kl, cfg.batch_size)
    policy.requires_grad_(True)
    return history
