"""The PPO loop on tiny models: invariants that catch silent bugs."""
import copy
from dataclasses import replace

import pytest
import torch

from minirlhf.model import GPT, GPTConfig
from minirlhf.reward import RewardModel
from minirlhf.rlhf import PPOConfig, freeze_lower_layers, ppo_stage, train_ppo, value_model_from_reward_model
from minirlhf.world import World, WorldConfig

CFG = PPOConfig(steps=2, batch_size=8, minibatch_size=4, epochs=2, max_new_tokens=8)


def models(tok):
    torch.manual_seed(0)
    policy = GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32))
    ref = GPT(policy.config)
    ref.load_state_dict(policy.state_dict())
    rm = RewardModel.from_language_model(policy)
    return policy, ref, rm, value_model_from_reward_model(rm)


REQUESTS = World(WorldConfig(n_internet=10)).requests["rl"]


def test_with_zero_learning_rate_ratio_is_one_and_kl_is_zero(tok):
    policy, ref, rm, value = models(tok)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    hist = train_ppo(policy, ref, rm, value, tok, REQUESTS, replace(CFG, lr=0.0, value_lr=0.0))
    for h in hist:
        assert h["first_approx_kl"] == pytest.approx(0.0, abs=1e-7)
        assert h["approx_kl"] == pytest.approx(0.0, abs=1e-7)
        assert h["clipfrac"] == 0.0
        assert h["kl"] == pytest.approx(0.0, abs=1e-5)   # policy == reference
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k])


def test_first_minibatch_ratio_is_one_while_learning(tok):
    policy, ref, rm, value = models(tok)
    hist = train_ppo(policy, ref, rm, value, tok, REQUESTS, replace(CFG, lr=1e-3))
    assert all(h["first_approx_kl"] == pytest.approx(0.0, abs=1e-7) for h in hist)
    assert hist[-1]["kl"] != 0.0


@pytest.mark.parametrize("anneal", [True, False])
def test_learning_rates_fall_linearly_towards_zero_step_by_step(tok, optimizer_rates, anneal):
    # 4 steps, each of 2 epochs x 2 minibatches: 4 optimizer steps per PPO step, for the policy and the value model
    train_ppo(*models(tok), tok, REQUESTS, replace(CFG, steps=4, lr=1e-3, value_lr=2e-3, anneal_lr=anneal))
    policy_rates, value_rates = optimizer_rates.values()
    fractions = [1, 0.75, 0.5, 0.25] if anneal else [1, 1, 1, 1]
    assert policy_rates == pytest.approx([1e-3 * f for f in fractions for _ in range(4)], rel=1e-12)
    assert value_rates == pytest.approx([2e-3 * f for f in fractions for _ in range(4)], rel=1e-12)


def test_value_model_starts_on_the_normalised_reward_scale(tok):
    from minirlhf.reward import encode_dialogues

    _, _, rm, _ = models(tok)
    rm.set_normalization(torch.tensor([1.0, 3.0, 8.0]))
    value = value_model_from_reward_model(rm)
    ids, attn = encode_dialogues(tok, ["hi !"], ["hello !"], [True])
    assert value.values(ids, attn)[0, -1].item() == pytest.approx(rm(ids, attn).item(), abs=1e-5)


@pytest.mark.parametrize("embeddings", [False, True])
def test_frozen_layers_do_not_move(tok, embeddings):
    policy, ref, rm, value = models(tok)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    n_trainable = sum(p.numel() for name, p in policy.named_parameters() if not name.startswith("blocks.0.")
                      and not (embeddings and name.split(".")[0] in ("tok_emb", "pos_emb")))
    assert freeze_lower_layers(copy.deepcopy(policy), 1, embeddings) == n_trainable
    cfg = replace(CFG, steps=1, freeze_layers=1, freeze_embeddings=embeddings)
    log = ppo_stage(copy.deepcopy(policy), ref, rm, tok, REQUESTS, cfg)["log"]   # the count the stage logs
    assert log["trainable_params"] == n_trainable and log["params"] == sum(p.numel() for p in policy.parameters())
    train_ppo(policy, ref, rm, value, tok, REQUESTS, replace(CFG, lr=1e-3, freeze_layers=1, freeze_embeddings=embeddings))
    after = policy.state_dict()
    assert torch.equal(after["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    assert not torch.equal(after["blocks.1.attn.qkv.weight"], before["blocks.1.attn.qkv.weight"])
    for name in ("tok_emb.weight", "pos_emb.weight", "lm_head.weight"):   # the head is the token embedding (tied)
        assert torch.equal(after[name], before[name]) == embeddings, name


def test_nan_loss_stops_training_with_a_message(tok):
    policy, ref, rm, value = models(tok)

    def nan_policy_loss(logp, old_logp, advantages, mask, clip):
        return (logp * float("nan")).sum()

    with pytest.raises(FloatingPointError, match="policy loss is nan at step 0"):
        train_ppo(policy, ref, rm, value, tok, REQUESTS, CFG, functions={"policy_loss": nan_policy_loss})


def test_ptx_needs_pretraining_examples(tok):
    policy, ref, rm, value = models(tok)
    with pytest.raises(ValueError, match="ptx_examples"):
        train_ppo(policy, ref, rm, value, tok, REQUESTS, replace(CFG, ptx_coef=1.0))


def test_unknown_functions_are_an_error_that_names_the_valid_ones(tok):
    policy, ref, rm, value = models(tok)
    with pytest.raises(ValueError, match=r"unknown functions \['polcy_loss'\].*'gae', 'per_token_rewards', 'policy_loss'"):
        train_ppo(policy, ref, rm, value, tok, REQUESTS, CFG, functions={"polcy_loss": lambda *a: 0})


def test_rollout_scores_each_response_at_its_last_real_token_and_zeroes_padding(tok):
    from minirlhf.rollout import rollout

    policy, ref, rm, _ = models(tok)
    prompts = [r.prompt for r in REQUESTS[:6]]
    ro = rollout(policy, ref, rm, tok, prompts, 8, generator=torch.Generator().manual_seed(0))
    B, N = ro.response_ids.shape
    assert B == 6 and ro.input_ids.shape == (B, ro.response_start + N) and ro.mask.shape == (B, N)
    assert torch.all(ro.logp[ro.mask == 0] == 0) and torch.all(ro.ref_logp[ro.mask == 0] == 0)
    assert torch.equal(ro.logp, ro.ref_logp), "before any update the policy is its reference"
    for i in range(B):   # the same sequence without any padding, scored on its own
        ids = ro.input_ids[i][ro.attention_mask[i].bool()][None]
        alone = rm(ids, torch.ones_like(ids))
        assert alone.item() == pytest.approx(ro.rm_score[i].item(), abs=1e-5)
    expected = torch.where(ro.ended, ro.rm_score, torch.full_like(ro.rm_score, -1.0))   # the EOS trick
    assert torch.equal(ro.score, expected)
    assert ro.texts == [tok.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(ro.response_ids, ro.mask)]
