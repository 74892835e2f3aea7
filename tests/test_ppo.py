import pytest
import torch

from minirlhf.masks import last_index
from minirlhf.ppo import gae, per_token_rewards, policy_loss, value_loss, whiten


def gae_plain_loop(rewards, values, gamma, lam):
    """GAE for one unpadded response, written with Python lists."""
    n = len(rewards)
    adv = [0.0] * n
    last = 0.0
    for t in reversed(range(n)):
        next_v = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * next_v - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, [a + v for a, v in zip(adv, values)]


def test_gae_matches_a_plain_loop_with_padding():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 6), torch.randn(3, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    rewards, values = rewards * mask, values * mask
    for gamma, lam in [(1.0, 0.95), (0.9, 0.5)]:
        adv, ret = gae(rewards, values, mask, gamma, lam)
        for i in range(3):
            n = int(mask[i].sum())
            a, r = gae_plain_loop(rewards[i, :n].tolist(), values[i, :n].tolist(), gamma, lam)
            torch.testing.assert_close(adv[i, :n], torch.tensor(a))
            torch.testing.assert_close(ret[i, :n], torch.tensor(r))
            assert (adv[i, n:] == 0).all() and (ret[i, n:] == 0).all()


def test_gae_ignores_garbage_values_in_padding():
    mask = torch.tensor([[1, 1, 0, 0]])
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    clean = gae(rewards, torch.tensor([[0.5, 0.2, 0.0, 0.0]]), mask)
    dirty = gae(rewards, torch.tensor([[0.5, 0.2, 9.0, -9.0]]), mask)
    torch.testing.assert_close(clean[0], dirty[0])


def test_score_goes_on_the_last_real_token_and_kl_everywhere():
    logp = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5, -3.0], [-2.0, -1.0, -4.0, -4.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    rewards, kl = per_token_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    expected = torch.tensor([[-0.05, 0.1, 2.0, 0.0], [-0.1, -1.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))


def test_last_index_with_left_and_right_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0]])
    assert last_index(mask).tolist() == [4, 5, 1]


def test_whiten_uses_real_tokens_only():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = whiten(x, mask)
    assert w[0, 3] == 0
    real = w[0, :3]
    assert real.mean().item() == pytest.approx(0, abs=1e-6)
    assert ((real ** 2).mean()).item() == pytest.approx(1, abs=1e-4)


def test_policy_loss_hand_example():
    # ratios 1.5 (A>0: clipped to 1.2), 0.5 (A>0: unclipped 0.5 is the min), 1.5 (A<0: unclipped)
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 1.0]]))
    adv = torch.tensor([[1.0, 1.0, -1.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, stats = policy_loss(logp, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.5 - 1.5) / 3)
    assert stats["clipfrac"] == pytest.approx(1 / 3)


def test_first_minibatch_ratio_is_one():
    logp = torch.randn(4, 5)
    adv = torch.randn(4, 5)
    loss, stats = policy_loss(logp, logp.clone(), adv, torch.ones(4, 5))
    assert stats["approx_kl"] == 0 and stats["clipfrac"] == 0
    assert loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)


def test_value_loss_hand_example():
    values = torch.tensor([[1.0, 0.0, 5.0]])
    old = torch.tensor([[0.5, 0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    # token 0: V-R = -1, V_clip = 0.7 -> -1.3: max(1, 1.69); token 1: max(1, 1)
    loss, _ = value_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 1.0) / 2)
