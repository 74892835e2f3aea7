import math

import pytest
import torch

from minirlhf.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k2, kl_k3

P = torch.tensor([0.5, 0.3, 0.15, 0.05])
Q = torch.tensor([0.25, 0.25, 0.25, 0.25])


def exact_kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p.tolist(), q.tolist()))


def expectation(estimator, p, q):
    """E_{y~p}[k(y)], computed exactly by summing over the support."""
    return float((p * estimator(p.log(), q.log())).sum())


@pytest.mark.parametrize("q", [Q, torch.tensor([0.4, 0.35, 0.2, 0.05]), torch.tensor([0.1, 0.1, 0.1, 0.7])])
def test_k1_and_k3_are_unbiased(q):
    assert expectation(kl_k1, P, q) == pytest.approx(exact_kl(P, q), abs=1e-6)
    assert expectation(kl_k3, P, q) == pytest.approx(exact_kl(P, q), abs=1e-6)


def test_k2_is_biased_but_close_when_distributions_are_close():
    q = torch.tensor([0.48, 0.31, 0.16, 0.05])
    kl = exact_kl(P, q)
    assert expectation(kl_k2, P, q) != pytest.approx(kl, abs=1e-9)
    assert expectation(kl_k2, P, q) == pytest.approx(kl, rel=0.05)
    assert expectation(kl_k2, P, Q) != pytest.approx(exact_kl(P, Q), rel=0.05)


def test_k3_is_never_negative_but_k1_can_be():
    assert (kl_k3(P.log(), Q.log()) >= 0).all()
    assert (kl_k1(P.log(), Q.log()) < 0).any()


def test_monte_carlo_k1_and_k3_converge():
    y = torch.multinomial(P, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    for est in (kl_k1, kl_k3):
        assert est(P.log()[y], Q.log()[y]).mean().item() == pytest.approx(exact_kl(P, Q), abs=0.01)


def test_adaptive_controller_by_hand():
    c = AdaptiveKLController(init=0.15, target=6.0, horizon=10000)
    c.update(current_kl=9.0, n_steps=100)          # error clip(9/6 - 1) = 0.2
    assert c.value == pytest.approx(0.15 * (1 + 0.2 * 100 / 10000))
    c.update(current_kl=5.0, n_steps=1000)         # error 5/6 - 1 = -1/6
    assert c.value == pytest.approx(0.15 * 1.002 * (1 - 1 / 6 * 0.1))


def test_fixed_controller_never_moves_and_refuses_negative():
    c = FixedKLController(0.1)
    c.update(100.0, 1000)
    assert c.value == 0.1
    with pytest.raises(ValueError):
        FixedKLController(-1.0)
