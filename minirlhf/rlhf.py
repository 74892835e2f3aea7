"""The RLHF training loop: roll out, score, compute advantages, update with PPO.

One PPO step:
  1. sample responses y ~ π_θ(·|x) for a batch of prompts (KV-cache generation);
  2. score them: log π_old, log π_ref, reward-model score r_RM(x, y)
     (a response that never ends gets a fixed low score instead: the "EOS trick");
  3. values V(s_t); per-token rewards r_t = −β·k1_t, plus r_RM on the last token; GAE advantages, whitened;
  4. several epochs of minibatches of the clipped policy loss and the clipped value loss;
  5. adapt β if the controller is adaptive.
Steps 1–2 are rollout.py (shared by every RL algorithm), step 3 is `ppo_targets`, the maths of
steps 3–4 is in ppo.py; `functions` lets an exercise swap in its own versions. `ppo_stage` is the
whole recipe of the stage.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from . import ppo
from .kl import AdaptiveKLController, FixedKLController, kl_k3
from .heldout import HeldoutCurve
from .labelers import gold_score
from .logprobs import entropy_from_logits, gather_logprobs, response_logits
from .masks import masked_mean, pad_right
from .pretrain import document_examples
from .reward import RewardModel
from .rollout import Rollout, rollout
from .training import check_finite, lm_loss, make_optimizer, set_lr, set_seed


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
    freeze_layers: int = 0           # freeze the lowest N transformer blocks ("grey neurons")
    freeze_embeddings: bool = False  # freeze the token and position embeddings too (the token embedding is
                                     # tied to the output head: freezing one freezes both)
    ptx_coef: float = 0.0            # InstructGPT's PPO-ptx: mix in the pretraining loss
    ptx_docs: int = 5000             # pretraining documents PPO-ptx draws from
    grad_clip: float = 1.0
    anneal_lr: bool = True           # lr (and value_lr) fall linearly towards 0 over the steps (ppo.linear_decay)


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


def freeze_lower_layers(model, n: int, embeddings: bool = False) -> int:
    """Train only the top blocks: the lowest `n` blocks (and with `embeddings`, the token and position
    embeddings, hence the tied output head) stay as SFT left them. Returns the trainable parameter count."""
    if n < 0 or n > model.config.n_layer:
        raise ValueError(f"freeze_layers must be in [0, {model.config.n_layer}], got {n}")
    frozen = [*model.blocks[:n]] + ([model.tok_emb, model.pos_emb] if embeddings else [])
    for module in frozen:
        module.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _functions(functions: dict | None) -> dict:
    """DEFAULT_FUNCTIONS with an exercise's versions swapped in; a misspelt name is an error, not ignored."""
    unknown = set(functions or {}) - set(DEFAULT_FUNCTIONS)
    if unknown:
        raise ValueError(f"unknown functions {sorted(unknown)}: train_ppo can swap in {sorted(DEFAULT_FUNCTIONS)}")
    return {**DEFAULT_FUNCTIONS, **(functions or {})}


def _loss(out):
    """Accept either `loss` or `(loss, stats)` from a (student's) loss function."""
    return out if isinstance(out, tuple) else (out, {})


@dataclass
class PPOTargets:
    """What PPO adds to a rollout, per response token: all (B, N), 0 on padding."""
    values: torch.Tensor       # V(s_t): the value model's estimate of the state before y_t, at rollout time
    rewards: torch.Tensor      # r_t = −β·k1_t, plus the score on the last real token
    kl: torch.Tensor           # k1_t = log π_old(y_t) − log π_ref(y_t)
    advantages: torch.Tensor   # GAE advantages (whitened over real tokens when cfg.whiten_advantages)
    returns: torch.Tensor      # the value targets R_t = A_t + V(s_t)


@torch.no_grad()
def ppo_targets(ro: Rollout, value_model, cfg: PPOConfig, kl_coef: float,
                functions: dict | None = None) -> PPOTargets:
    """Values, per-token rewards, GAE advantages and returns for one rollout."""
    functions = _functions(functions)
    P = ro.response_start
    values = value_model.values(ro.input_ids, ro.attention_mask)[:, P - 1:-1] * ro.mask  # V(s_t): before y_t
    rewards, kl = functions["per_token_rewards"](ro.score, ro.logp, ro.ref_logp, ro.mask, kl_coef)
    advantages, returns = functions["gae"](rewards, values, ro.mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = ppo.whiten(advantages, ro.mask)
    return PPOTargets(values=values, rewards=rewards, kl=kl, advantages=advantages, returns=returns)


def starts_from(value_model, reward_model) -> bool:
    """Whether the value model is the reward model (value_model_from_reward_model): the same backbone, and a
    head that differs only by the reward's normalisation (parallel weights)."""
    with torch.no_grad():
        backbone = all(torch.equal(p, q) for p, q in zip(value_model.backbone.state_dict().values(),
                                                         reward_model.backbone.state_dict().values()))
        v, r = value_model.head.weight.flatten(), reward_model.head.weight.flatten()
        return backbone and torch.nn.functional.cosine_similarity(v, r, dim=0).item() > 1 - 1e-6


def train_ppo(policy, ref_model, reward_model, value_model, tokenizer, requests, cfg: PPOConfig,
              seed: int = 0, functions: dict | None = None, ptx_examples=None,
              desc: str = "ppo", after_step=None) -> list[dict]:
    """Optimise `policy` (in place) against `reward_model` with PPO; returns one log dict per step.

    `requests` are `world.Request`s (their prompts are the RL prompts; the gold labeler uses the
    rest only to log the gold score). `functions` overrides entries of DEFAULT_FUNCTIONS.
    `ptx_examples` (pretraining examples) are needed when cfg.ptx_coef > 0. `after_step(n, policy)`,
    if given, is called after each step with the number of steps done (to measure checkpoints).
    """
    functions = _functions(functions)
    if policy is ref_model:
        raise ValueError("the policy and the reference are one model object: PPO would move both, and the KL "
                         "between them would stay 0. Load the SFT model twice (pipe.model('sft') gives a fresh copy)")
    if cfg.ptx_coef > 0 and not ptx_examples:
        raise ValueError("ptx_coef > 0 needs ptx_examples (pretraining documents, see pretrain.document_examples)")
    if cfg.batch_size % cfg.minibatch_size:
        raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of minibatch_size={cfg.minibatch_size}")
    gen = set_seed(seed)
    rng = random.Random(seed)
    device = policy.device
    # sampling on a GPU needs a generator that lives there; on the CPU one stream serves all
    sample_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)
    freeze_lower_layers(policy, cfg.freeze_layers, cfg.freeze_embeddings)
    for m in (policy, ref_model, reward_model, value_model):
        m.eval()  # dropout off everywhere: log-probs must be reproducible
    ref_model.requires_grad_(False)
    reward_model.requires_grad_(False)
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
              else FixedKLController(cfg.kl_coef))
    opt = make_optimizer(policy.parameters(), cfg.lr)
    value_opt = make_optimizer(value_model.parameters(), cfg.value_lr)
    history = []
    value_from_rm = starts_from(value_model, reward_model)
    for step in tqdm(range(cfg.steps), desc=desc, mininterval=1.0):
        if cfg.anneal_lr:
            set_lr(opt, ppo.linear_decay(step, cfg.steps, cfg.lr))
            set_lr(value_opt, ppo.linear_decay(step, cfg.steps, cfg.value_lr))
        batch = [requests[i] for i in torch.randint(len(requests), (cfg.batch_size,), generator=gen)]
        ro = rollout(policy, ref_model, reward_model, tokenizer, [r.prompt for r in batch], cfg.max_new_tokens,
                     cfg.temperature, cfg.no_end_score, sample_gen)
        tg = ppo_targets(ro, value_model, cfg, kl_ctl.value, functions)
        stats: dict[str, list[float]] = {}
        for epoch in range(cfg.epochs):
            order = torch.randperm(cfg.batch_size, generator=gen)
            for start in range(0, cfg.batch_size, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size].to(device)
                mask, ids, attn = ro.mask[idx], ro.input_ids[idx], ro.attention_mask[idx]
                logits = response_logits(policy, ids, attn, ro.response_start, cfg.temperature)
                logp = gather_logprobs(logits, ro.response_ids[idx])
                pl, pstats = _loss(functions["policy_loss"](logp, ro.logp[idx], tg.advantages[idx], mask, cfg.clip))
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

                values = value_model.values(ids, attn)[:, ro.response_start - 1:-1] * mask
                vl, vstats = _loss(functions["value_loss"](values, tg.values[idx], tg.returns[idx], mask,
                                                           cfg.value_clip))
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
                    stats["first_approx_kl"] = [masked_mean(kl_k3(ro.logp[idx], logp.detach()), mask).item()]
        seq_kl = tg.kl.sum(1).mean().item()
        golds = [gold_score(r, t, bool(e)) for r, t, e in zip(batch, ro.texts, ro.ended)]
        history.append({
            "step": step, "rm_score": ro.rm_score.mean().item(), "gold_score": sum(golds) / len(golds),
            "kl": seq_kl, "kl_coef": kl_ctl.value, "kl_reward": -kl_ctl.value * seq_kl,
            "response_len": ro.mask.sum(1).float().mean().item(),
            "ended": ro.ended.float().mean().item(),
            "explained_variance": ppo.explained_variance(tg.values, tg.returns, ro.mask),
            **{k: sum(v) / len(v) for k, v in stats.items()},
            **({"value_from_reward_model": float(value_from_rm)} if step == 0 else {})})
        kl_ctl.update(seq_kl, cfg.batch_size)
        if after_step is not None:
            after_step(step + 1, policy)
    policy.requires_grad_(True)
    return history


def ppo_stage(policy, reference, reward_model: RewardModel, tokenizer, requests, cfg: PPOConfig, seed: int = 0,
              ptx_texts=(), desc: str = "ppo", heldout_requests=(), heldout_checkpoints: int = 0,
              heldout_samples: int = 8) -> dict:
    """The RLHF stage: PPO from `policy` (the SFT model; in iterated RLHF, the previous round's policy)
    against `reward_model`, with the KL penalty measured against `reference` (the SFT model).

    The value model starts from the reward model. `ptx_texts` (pretraining documents; the first
    cfg.ptx_docs are used) are needed for PPO-ptx (cfg.ptx_coef > 0). With `heldout_checkpoints` = C > 0,
    the policy answers every held-out request `heldout_samples` times at step 0 and C more steps (the last,
    its half, its quarter…), always with the same random stream: the log's "heldout_history" holds
    the gold and reward-model scores and the KL to `reference` of those answers (heldout.HeldoutCurve),
    the curve that shows over-optimisation on prompts PPO never saw.
    Returns {"model": the policy, "value_model": the trained value model, "log": {"history", "ppo", ...}}.
    """
    ptx = None
    if cfg.ptx_coef > 0:
        ptx = document_examples(tokenizer, list(ptx_texts[:cfg.ptx_docs]), policy.config.block_size)
    value_model = value_model_from_reward_model(reward_model)
    trainable = freeze_lower_layers(policy, cfg.freeze_layers, cfg.freeze_embeddings)   # what train_ppo trains
    curve = HeldoutCurve(reward_model, reference, tokenizer, heldout_requests, cfg.steps, heldout_checkpoints,
                         heldout_samples, cfg.max_new_tokens, cfg.no_end_score, seed)
    curve(0, policy)
    history = train_ppo(policy, reference, reward_model, value_model, tokenizer, requests, cfg, seed,
                        ptx_examples=ptx, desc=desc, after_step=curve)
    log = {"history": history, "ppo": asdict(cfg), "trainable_params": trainable,
           "params": sum(p.numel() for p in policy.parameters())}
    if curve.history:
        log["heldout_history"] = curve.history
    return {"model": policy, "value_model": value_model, "log": log}
