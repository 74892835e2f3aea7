"""DPO, RLOO, GRPO and best-of-n (notebook 09), each against an independent computation: the hand formula,
a plain loop, a brute-force enumeration; and their training loops on tiny models."""
import itertools
import math
import statistics
from dataclasses import replace

import numpy as np
import pytest
import torch
from datasets import Dataset

from minirlhf.best_of_n import BestOfN, exact_best_of_n, kl_bound, pool_frontier
from minirlhf.dpo import DPOConfig, dpo_loss, sequence_logprobs, train_dpo
from minirlhf.group_rl import train_group_rl
from minirlhf.grpo import grpo_advantages
from minirlhf.model import GPT, GPTConfig
from minirlhf.pipeline import cache
from minirlhf.reward import RewardModel
from minirlhf.rlhf import PPOConfig
from minirlhf.rloo import rloo_advantages
from minirlhf.tokenizer import prompt_ids
from minirlhf.world import World, WorldConfig

REQUESTS = World(WorldConfig(n_internet=10)).requests["rl"]


def tiny(tok, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


def copy_of(model):
    other = GPT(model.config)
    other.load_state_dict(model.state_dict())
    return other.eval()


# -- DPO ---------------------------------------------------------------------------------------------

def test_dpo_loss_is_the_hand_formula():
    lw, ll, rw, rl = [-3.0, -5.0], [-4.0, -2.0], [-3.5, -4.0], [-3.0, -2.5]
    beta = 0.3
    loss, stats = dpo_loss(*(torch.tensor(x) for x in (lw, ll, rw, rl)), beta)
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(lw, ll, rw, rl)]   # 0.45, −0.45
    expected = sum(-math.log(1 / (1 + math.exp(-m))) for m in margins) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["reward_accuracy"] == 0.5 and stats["reward_margin"] == pytest.approx(0.0, abs=1e-7)


def test_dpo_accuracy_counts_a_tie_half():
    """At DPO's first step the policy is the reference: every implicit reward is 0 and every pair a tie, which
    is a coin flip (0.5), not a wrong order; here one pair right, one tie, one wrong: (1 + 0.5 + 0) / 3."""
    same = torch.tensor([-2.0, -3.0])
    assert dpo_loss(same, same, same, same, 0.1)[1]["reward_accuracy"] == 0.5
    zeros = torch.zeros(3)
    _, stats = dpo_loss(torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-2.0, -2.0, -1.0]), zeros, zeros, 1.0)
    assert stats["reward_accuracy"] == pytest.approx(0.5)


def test_dpo_accuracy_ties_log_probs_that_differ_by_rounding():
    """π_θ and π_ref read one answer in batches of different sizes, so at the first step their float32 sums
    differ in the last bits (here up to 4e-6 nats; up to 8e-6 seen on the fast setting): a tie, not an order.
    A gap of a thousandth of a nat is an order."""
    logp = torch.tensor([-20.0, -31.0, -45.0, -12.0])
    noisy = logp + torch.tensor([4e-6, -4e-6, 2e-6, -3e-6])   # the reference's sums of the same answers
    w, l = [0, 2], [1, 3]
    assert dpo_loss(logp[w], logp[l], noisy[w], noisy[l], 0.1)[1]["reward_accuracy"] == 0.5
    moved = logp + torch.tensor([1e-3, 0.0, 0.0, 0.0])   # the policy raised pair 1's y_w; pair 2 still ties
    assert dpo_loss(moved[w], moved[l], noisy[w], noisy[l], 0.1)[1]["reward_accuracy"] == 0.75
    moved = logp + torch.tensor([0.0, 1e-3, 0.0, 0.0])   # the policy raised pair 1's y_l
    assert dpo_loss(moved[w], moved[l], noisy[w], noisy[l], 0.1)[1]["reward_accuracy"] == 0.25


def test_dpo_loss_is_log_2_when_the_policy_is_the_reference():
    x = torch.randn(7)
    loss, _ = dpo_loss(x, x.flip(0), x, x.flip(0), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_sequence_logprobs_match_a_plain_loop_over_unpadded_dialogues(tok):
    model = tiny(tok)
    prompts, answers, ended = ["what is the capital of zorbia ?", "hi !"], ["it is tork .", "hello"], [True, False]
    rows = [{"prompt": p, "responses": [a], "ended": [e]} for p, a, e in zip(prompts, answers, ended)]
    with torch.no_grad():
        got = sequence_logprobs(model, tok, rows)
    for i, (p, a, e) in enumerate(zip(prompts, answers, ended)):
        context = list(prompt_ids(tok, p))
        answer = tok(a, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if e else [])
        ids = torch.tensor([context + answer])
        with torch.no_grad():
            logits, _ = model(ids, torch.ones_like(ids))
        logp = logits[0].log_softmax(-1)
        expected = sum(logp[len(context) + t - 1, y].item() for t, y in enumerate(answer))   # one token at a time
        assert got[i].item() == pytest.approx(expected, abs=1e-4)


def _comparisons(n=4):
    return Dataset.from_dict({"kind": ["greeting"] * n, "prompt": ["hi !"] * n,
                              "responses": [["hello ! how can i help ?", "go away"]] * n, "ended": [[True, True]] * n,
                              "ranking": [[0, 1]] * n, "gold": [[1.0, 0.0]] * n})


def test_dpo_learns_the_preferred_answer_and_leaves_the_reference_alone(tok):
    policy, data = tiny(tok), _comparisons()
    ref = copy_of(policy)
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    hist = train_dpo(policy, ref, tok, data, DPOConfig(beta=0.5, epochs=8, prompts_per_batch=2, lr=3e-3))
    assert hist[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)       # π_θ = π_ref at the first step
    assert hist[-1]["loss"] < 0.3 and hist[-1]["reward_accuracy"] == 1.0
    with torch.no_grad():
        now, then = sequence_logprobs(policy, tok, data.to_list()[:1]), sequence_logprobs(ref, tok, data.to_list()[:1])
    assert (now[0] - then[0]) - (now[1] - then[1]) > 1.0                 # the preferred answer gained on the other
    assert all(torch.equal(v, before[k]) for k, v in ref.state_dict().items())


# -- RLOO and GRPO ----------------------------------------------------------------------------------

def test_rloo_baseline_is_the_mean_of_the_other_answers():
    R = torch.tensor([[1.0, 2.0, 4.0, 7.0], [0.5, 0.5, 0.5, -1.0]])
    got = rloo_advantages(R)
    for p in range(R.shape[0]):
        for i in range(R.shape[1]):
            others = [R[p, j].item() for j in range(R.shape[1]) if j != i]
            assert got[p, i].item() == pytest.approx(R[p, i].item() - sum(others) / len(others), abs=1e-6)


def test_grpo_standardises_within_each_group_and_an_equal_group_teaches_nothing():
    scores = torch.tensor([[1.0, 2.0, 4.0, 7.0], [3.0, 3.0, 3.0, 3.0]])
    got = grpo_advantages(scores)
    row = scores[0].tolist()
    mean, sd = statistics.mean(row), statistics.stdev(row)               # the sample standard deviation
    assert got[0].tolist() == pytest.approx([(x - mean) / (sd + 1e-4) for x in row], abs=1e-5)
    assert torch.equal(got[1], torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(torch.ones(3, 1))
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(torch.ones(3, 1))


CFG = PPOConfig(steps=2, batch_size=8, minibatch_size=4, epochs=2, max_new_tokens=8)


@pytest.mark.parametrize("advantages,kl_in_loss", [(rloo_advantages, False), (grpo_advantages, True)])
def test_group_rl_first_step_starts_at_the_reference_and_learning_moves_the_policy(tok, advantages, kl_in_loss):
    policy = tiny(tok)
    ref, rm = copy_of(policy), RewardModel.from_language_model(policy)
    # three steps: a random model's first rollout may not end any answer, so every group ties (no_end_score) and
    # the first update teaches nothing; the third rollout comes after at least one update that had something to say
    hist = train_group_rl(policy, ref, rm, tok, REQUESTS, replace(CFG, lr=1e-3, steps=3), advantages, 4, kl_in_loss)
    assert hist[0]["kl"] == pytest.approx(0.0, abs=1e-5)                 # the first rollout: π = π_ref
    assert any(h["zero_advantage"] < 1 for h in hist[:-1]) and hist[-1]["kl"] != 0.0
    if kl_in_loss:
        assert all(math.isfinite(h["kl_loss"]) and h["kl_loss"] >= 0 for h in hist)


def test_group_rl_anneals_its_learning_rate_as_ppo_does(tok, optimizer_rates):
    policy = tiny(tok)
    train_group_rl(policy, copy_of(policy), RewardModel.from_language_model(policy), tok, REQUESTS,
                   replace(CFG, steps=4, lr=1e-3), rloo_advantages, 4, False)
    (rates,) = optimizer_rates.values()   # one optimizer: no value model
    assert rates == pytest.approx([1e-3 * f for f in (1, 0.75, 0.5, 0.25) for _ in range(4)], rel=1e-12)


def test_group_rl_with_zero_learning_rate_changes_nothing(tok):
    policy = tiny(tok)
    ref, rm = copy_of(policy), RewardModel.from_language_model(policy)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    hist = train_group_rl(policy, ref, rm, tok, REQUESTS, replace(CFG, lr=0.0), grpo_advantages, 4, True)
    assert all(h["approx_kl"] == pytest.approx(0.0, abs=1e-7) and h["clipfrac"] == 0.0 for h in hist)
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())


def test_group_rl_refuses_a_batch_that_does_not_split_into_groups(tok):
    policy = tiny(tok)
    with pytest.raises(ValueError, match="multiple of group_size=3"):
        train_group_rl(policy, copy_of(policy), RewardModel.from_language_model(policy), tok, REQUESTS, CFG,
                       rloo_advantages, 3, False)


# -- best-of-n --------------------------------------------------------------------------------------

def test_exact_best_of_n_matches_drawing_n_answers_by_brute_force():
    # a pool of 6 answers: "a" three times, "b" twice, "c" once; the reward model ties b and c
    pool = ["a", "a", "a", "b", "b", "c"]
    reward, gold = {"a": 0.0, "b": 1.0, "c": 1.0}, {"a": 0.2, "b": 0.6, "c": 1.0}
    share = {y: pool.count(y) / len(pool) for y in reward}
    for n in (1, 2, 3):
        pick = dict.fromkeys(reward, 0.0)
        for draw in itertools.product(range(len(pool)), repeat=n):          # every ordered draw of n answers
            best = max(reward[pool[i]] for i in draw)
            winners = [pool[i] for i in draw if reward[pool[i]] == best]
            for y in winners:                                                # a tie is broken at random
                pick[y] += (1 / len(pool)) ** n / len(winners)
        ys = list(reward)
        got = exact_best_of_n(np.array([share[y] for y in ys]), np.array([reward[y] for y in ys]),
                              np.array([gold[y] for y in ys]), n)
        assert got["gold"] == pytest.approx(sum(pick[y] * gold[y] for y in ys), abs=1e-12)
        assert got["kl"] == pytest.approx(sum(pick[y] * math.log(pick[y] / share[y]) for y in ys if pick[y]), abs=1e-12)


def test_best_of_n_kl_reaches_the_bound_only_without_ties():
    m = 1000
    share, gold = np.full(m, 1 / m), np.zeros(m)
    for n in (2, 4, 8):
        distinct = exact_best_of_n(share, np.arange(m, dtype=float), gold, n)["kl"]
        assert distinct == pytest.approx(kl_bound(n), abs=0.01)
        tied = exact_best_of_n(share, np.arange(m, dtype=float) // 10, gold, n)["kl"]
        assert tied < distinct


def test_pool_frontier_groups_each_prompts_answers():
    rows = [{"response": r, "ended": True, "gold": g} for r, g in [("x", 1.0), ("y", 0.0), ("y", 0.0), ("z", 0.5)]]
    fr = pool_frontier(rows, [2.0, 1.0, 1.0, 0.0], pool=2, ns=(1, 2))
    assert fr["distinct"] == [1.0, 1.0]
    # prompt 0: x (reward 2) and y; best-of-2 picks x unless both draws are y: 3/4 · 1 + 1/4 · 0
    assert fr["gold"][1][0] == pytest.approx(0.75) and fr["gold"][0][0] == pytest.approx(0.5)
    # prompt 1: y (reward 1, gold 0) beats z (reward 0, gold 0.5): z only when both draws are z, 1/4 · 0.5
    assert fr["gold"][1][1] == pytest.approx(0.125)


def test_best_of_n_answers_with_the_reward_models_favourite_and_survives_the_cache(tok, tmp_path):
    policy = tiny(tok)
    rm = RewardModel.from_language_model(policy)
    bon = BestOfN.wrap(policy, rm, n=4, no_end_score=None)
    reqs = REQUESTS[:3]
    rows = bon.sample_responses(tok, reqs, n_samples=2, max_new_tokens=6, seed=5)
    from minirlhf.heldout import score_answers
    from minirlhf.sampling import sample_responses

    pool = sample_responses(policy, tok, reqs, 8, 6, seed=5)                 # the same stream: 2 answers × n = 4
    scores = score_answers(rm, tok, pool, None)
    for i, row in enumerate(rows):
        group = list(range(4 * i, 4 * i + 4))
        assert row == pool[max(group, key=lambda j: scores[j])]
    cache.save_artifacts(tmp_path, {"model": bon})
    again = cache.load_artifact(tmp_path, "model", "cpu")
    assert isinstance(again, BestOfN) and again.config.n == 4
    assert again.sample_responses(tok, reqs, 2, 6, seed=5) == rows
