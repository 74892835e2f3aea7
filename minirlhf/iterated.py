"""Iterated RLHF: new comparisons on the policy's own answers, a new reward model, another PPO round.

The first reward model was trained on rankings of *SFT* answers. After PPO the policy writes answers the
reward model has never seen (notebook 06), and that is where it is wrong. InstructGPT and its successors
therefore iterate: labelers rank answers of the *current* policy, a new reward model is trained on all
comparisons so far, and PPO continues from the current policy against it.

    policy = iterated_policy(pipe, 2)          # round 1 is pipe.rlhf_model(); round 2 is one more loop
    log = iterated_log(pipe, 2)                # PPO history, reward-model losses and accuracies

Round r ≥ 2, cached like every stage (`<home>/<setting>/iterated-r<r>-<key>/`):
  1. the round r−1 policy answers K times to the reward and RL prompts; the labeler ranks the answers;
  2. a reward model, initialised from SFT like the first, learns all comparisons of rounds 1..r
     (Bradley–Terry) and is normalised on the round r−1 policy's answers (mean 0, std 1);
  3. PPO starts from the round r−1 policy; the reference of the KL penalty stays the SFT model, so β keeps
     measuring the distance from the answers people demonstrated.
The log also holds both reward models' accuracy on held-out comparisons of the round r−1 policy's
answers: the old one was trained on another distribution, the new one on this one.
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


def round_dir(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> Path:
    """Where round `round` (≥ 2) is cached; the key covers every earlier stage and the PPO settings."""
    if round < 2:
        raise ValueError(f"round {round}: round 1 is the ordinary pipeline (pipe.rlhf_model()); iterate from 2")
    cfg = replace(pipe.settings.ppo, **ppo_overrides)
    # the key covers this module's source too: change the recipe and the rounds retrain
    recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    key = pipe._key(pipe.stage_dir("reward", labeler).name, cfg, "iterated", round, recipe)
    return pipe.out_dir / f"iterated-r{round}-{labeler}-{key}"


def iterated_policy(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> GPT:
    """The policy after `round` rounds of RLHF (round 1: `pipe.rlhf_model(**ppo_overrides)`)."""
    if round == 1:
        return pipe.rlhf_model(**ppo_overrides)
    _build_round(pipe, round, labeler, ppo_overrides)
    return GPT.from_pretrained(round_dir(pipe, round, labeler, **ppo_overrides) / "policy", pipe.device)


def iterated_reward_model(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> RewardModel:
    """The reward model PPO optimised in `round` (round 1: `pipe.reward_model(labeler)`)."""
    if round == 1:
        return pipe.reward_model(labeler)
    _build_round(pipe, round, labeler, ppo_overrides)
    return RewardModel.from_pretrained(round_dir(pipe, round, labeler, **ppo_overrides) / "reward_model", pipe.device)


def iterated_comparisons(pipe, round: int, split: str = "train", labeler: str = "gold", **ppo_overrides):
    """The comparisons collected in `round` alone: "train" (reward and RL prompts) or "heldout" (eval prompts).
    Round 1's are the pipeline's (rankings of SFT answers)."""
    if round == 1:
        return pipe.comparisons(split, labeler)
    _build_round(pipe, round, labeler, ppo_overrides)
    name = "comparisons" if split == "train" else "comparisons_heldout"
    return load_from_disk(str(round_dir(pipe, round, labeler, **ppo_overrides) / name))


def iterated_log(pipe, round: int, labeler: str = "gold", **ppo_overrides) -> dict:
    """Round `round`'s log: `history` (PPO, one dict per step), `reward_losses`, and `accuracy` of the
    previous and the new reward model on held-out comparisons of the previous policy's answers."""
    _build_round(pipe, round, labeler, ppo_overrides)
    return pipe.log(round_dir(pipe, round, labeler, **ppo_overrides))


def _build_round(pipe, round: int, labeler: str, ppo_overrides: dict) -> None:
    path = round_dir(pipe, round, labeler, **ppo_overrides)
    cfg = replace(pipe.settings.ppo, **ppo_overrides)
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
        # 3. PPO from the current policy (trained in place); the KL still measured against the SFT model
        policy = previous
        history = train_ppo(policy, pipe.sft_model(), rm, value_model_from_reward_model(rm), pipe.tokenizer,
                            pipe.requests("rl"), cfg, seed, desc=f"ppo round {round}")
        policy.save_pretrained(tmp / "policy")
        rm.save_pretrained(tmp / "reward_model")
        new_cmp.save_to_disk(str(tmp / "comparisons"))
        heldout.save_to_disk(str(tmp / "comparisons_heldout"))
        return {"history": history, "reward_losses": losses, "ppo": asdict(cfg), "n_comparisons": len(everything),
                "accuracy": {"previous_reward_model": pairwise_accuracy(old_rm, pipe.tokenizer, heldout),
                             "new_reward_model": pairwise_accuracy(rm, pipe.tokenizer, heldout)}}

    pipe._build(path, train)
