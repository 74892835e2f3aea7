"""Iterated RLHF: new comparisons on the policy's own answers, a new reward model, another PPO round.

The first reward model was trained on rankings of *SFT* answers. After PPO the policy writes answers the
reward model has never seen (notebook 06), and that is where it is wrong. InstructGPT and its successors
therefore iterate: labelers rank answers of the *current* policy, a new reward model is trained on all
comparisons so far, and PPO continues from the current policy against it.

    rm = iterated_reward_model(pipe, 2)        # round 1 is pipe.reward_model(); round 2 learns from new rankings
    policy = iterated_policy(pipe, 2)          # round 1 is pipe.rlhf_model(); round 2 is one more PPO run
    iterated_reward_log(pipe, 2)["accuracy"]   # old vs new reward model on the round-1 policy's answers

Round r ≥ 2 is two cached stages (`<home>/<setting>/iterated-rm-r<r>-…` and `iterated-r<r>-…`):
  1. the round r−1 policy answers K times to the reward and RL prompts; the labeler ranks the answers;
  2. a reward model, initialised from SFT like the first, learns all comparisons of rounds 1..r
     (Bradley–Terry) and is normalised on the round r−1 policy's answers (mean 0, std 1); its log holds the
     accuracy of the old and of the new reward model on held-out comparisons of the round r−1 policy's
     answers (the old one was trained on another distribution, the new one on this one);
  3. PPO starts from the round r−1 policy; the reference of the KL penalty stays the SFT model, so β keeps
     measuring the distance from the answers people demonstrated.
Keyword arguments are PPOConfig overrides, the same for every round (e.g. kl_coef=0.0).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from pathlib import Path

import torch
from datasets import concatenate_datasets, load_from_disk

from .comparisons import collect_comparisons
from .evaluate import sample_responses
from .labelers import PERSONAS
from .model import GPT
from .reward import RewardModel, encode_dialogues, pairwise_accuracy, train_reward_model
from .rlhf import train_ppo, value_model_from_reward_model
from .training import set_seed


def round_dir(pipe, round: int, stage: str = "policy", labeler: str = "gold", **ppo_overrides) -> Path:
    """Where round `round` (≥ 2) is cached: stage "reward" (comparisons, reward model) or "policy" (PPO).
    The key covers every earlier stage, the PPO settings and this module's source."""
    if round < 2:
        raise ValueError(f"round {round}: round 1 is the ordinary pipeline (pipe.rlhf_model()); iterate from 2")
    if stage not in ("reward", "policy"):
        raise ValueError(f"stage must be 'reward' or 'policy', got {stage!r}")
    cfg = replace(pipe.settings.ppo, **ppo_overrides)
    recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    key = pipe._key(pipe.stage_dir("reward", labeler).name, cfg, "iterated", round, stage, recipe)
    return pipe.out_dir / f"iterated-{'rm-' if stage == 'reward' else ''}r{round}-{labeler}-{key}"


def iterated_reward_model(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> RewardModel:
    """The reward model PPO optimises in `round` (round 1: `pipe.reward_model(labeler)`)."""
    if round == 1:
        return pipe.reward_model(labeler)
    _build_reward(pipe, round, labeler, ppo_overrides)
    return RewardModel.from_pretrained(round_dir(pipe, round, "reward", labeler, **ppo_overrides) / "model", pipe.device)


def iterated_policy(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> GPT:
    """The policy after `round` rounds of RLHF (round 1: `pipe.rlhf_model(**ppo_overrides)`)."""
    if round == 1:
        return pipe.rlhf_model(**ppo_overrides)
    _build_policy(pipe, round, labeler, ppo_overrides)
    return GPT.from_pretrained(round_dir(pipe, round, "policy", labeler, **ppo_overrides) / "model", pipe.device)


def iterated_comparisons(pipe, round: int, split: str = "train", labeler: str = "gold", **ppo_overrides):
    """The comparisons collected in `round` alone: "train" (reward and RL prompts) or "heldout" (eval prompts).
    Round 1's are the pipeline's (rankings of SFT answers)."""
    if round == 1:
        return pipe.comparisons(split, labeler)
    _build_reward(pipe, round, labeler, ppo_overrides)
    name = "comparisons" if split == "train" else "comparisons_heldout"
    return load_from_disk(str(round_dir(pipe, round, "reward", labeler, **ppo_overrides) / name))


def iterated_reward_log(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> dict:
    """`losses` of the round's reward model, `n_comparisons` it learned, and `accuracy` of the previous and
    the new reward model on held-out comparisons of the previous policy's answers."""
    _build_reward(pipe, round, labeler, ppo_overrides)
    return pipe.log(round_dir(pipe, round, "reward", labeler, **ppo_overrides))


def iterated_history(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> list[dict]:
    """The PPO log of `round`, one dict per step (round 1: `pipe.rlhf_history(**ppo_overrides)`)."""
    if round == 1:
        return pipe.rlhf_history(**ppo_overrides)
    _build_policy(pipe, round, labeler, ppo_overrides)
    return pipe.log(round_dir(pipe, round, "policy", labeler, **ppo_overrides))["history"]


def _build_reward(pipe, round: int, labeler: str, ppo_overrides: dict) -> None:
    rcfg, ev, seed = pipe.settings.reward, pipe.settings.eval, pipe.settings.seed + 100 * round

    def train(tmp):
        previous = iterated_policy(pipe, round - 1, labeler, **ppo_overrides)
        old_rm = iterated_reward_model(pipe, round - 1, labeler, **ppo_overrides)
        persona = PERSONAS[labeler]
        # 1. labelers rank K answers of the current policy
        new_cmp = collect_comparisons(previous, pipe.tokenizer, pipe.requests("reward") + pipe.requests("rl"),
                                      rcfg.n_rankings, rcfg.k, persona, ev.max_new_tokens, seed)
        heldout = collect_comparisons(previous, pipe.tokenizer, pipe.requests("eval"), len(pipe.requests("eval")),
                                      rcfg.k, persona, ev.max_new_tokens, seed + 1)
        everything = concatenate_datasets([iterated_comparisons(pipe, r, "train", labeler, **ppo_overrides)
                                           for r in range(1, round)] + [new_cmp])
        # 2. a new reward model on all comparisons so far, normalised on the current policy's answers
        set_seed(seed)
        rm = RewardModel.from_language_model(pipe.sft_model())
        losses = train_reward_model(rm, pipe.tokenizer, everything, rcfg, seed)
        rows = sample_responses(previous, pipe.tokenizer, pipe.requests("rl"), 2, ev.max_new_tokens, seed=seed + 2)
        ids, attn = encode_dialogues(pipe.tokenizer, [r["prompt"] for r in rows], [r["response"] for r in rows],
                                     [r["ended"] for r in rows])
        with torch.no_grad():
            rm.set_normalization(rm.raw_score(ids.to(pipe.device), attn.to(pipe.device)))
        rm.save_pretrained(tmp / "model")
        new_cmp.save_to_disk(str(tmp / "comparisons"))
        heldout.save_to_disk(str(tmp / "comparisons_heldout"))
        return {"losses": losses, "n_comparisons": len(everything),
                "accuracy": {"previous_reward_model": pairwise_accuracy(old_rm, pipe.tokenizer, heldout),
                             "new_reward_model": pairwise_accuracy(rm, pipe.tokenizer, heldout)}}

    pipe._build(round_dir(pipe, round, "reward", labeler, **ppo_overrides), train)


def _build_policy(pipe, round: int, labeler: str, ppo_overrides: dict) -> None:
    cfg = replace(pipe.settings.ppo, **ppo_overrides)

    def train(tmp):
        rm = iterated_reward_model(pipe, round, labeler, **ppo_overrides)
        # 3. PPO from the current policy (trained in place); the KL still measured against the SFT model
        policy = iterated_policy(pipe, round - 1, labeler, **ppo_overrides)
        history = train_ppo(policy, pipe.sft_model(), rm, value_model_from_reward_model(rm), pipe.tokenizer,
                            pipe.requests("rl"), cfg, pipe.settings.seed + 100 * round, desc=f"ppo round {round}")
        policy.save_pretrained(tmp / "model")
        return {"history": history, "ppo": asdict(cfg)}

    pipe._build(round_dir(pipe, round, "policy", labeler, **ppo_overrides), train)
