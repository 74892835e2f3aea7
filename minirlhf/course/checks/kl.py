"""Checks for notebook 03: the KL estimators and the adaptive KL controller."""
from __future__ import annotations

import torch

from ...kl import AdaptiveKLController as ReferenceController
from ...kl import kl_k1, kl_k2, kl_k3
from .core import CheckResult, Hint, call, close, expect, fmt, run_check


def _kl_mistakes():
    return {
        "k1": [("k1 has the wrong sign: it is log π − log π_ref (policy minus reference)",
                lambda lp, rp: rp - lp),
               ("k1 is the plain difference of log-probs, not its absolute value",
                lambda lp, rp: (lp - rp).abs())],
        "k2": [("k2 is ½ (log π − log π_ref)²: you forgot the ½", lambda lp, rp: (lp - rp) ** 2),
               ("k2 squares the log-ratio, not the ratio", lambda lp, rp: 0.5 * (lp - rp).exp() ** 2)],
        "k3": [("k3 uses r = π_ref / π (reference over policy); you used π / π_ref",
                lambda lp, rp: torch.expm1(lp - rp) - (lp - rp)),
               ("k3 is (r − 1) − log r: you added log r instead of subtracting it",
                lambda lp, rp: torch.expm1(rp - lp) + (rp - lp)),
               ("k3 is (r − 1) − log r: you forgot the − 1",
                lambda lp, rp: (rp - lp).exp() - (rp - lp))],
    }


def check_kl_estimators(k1, k2, k3) -> CheckResult:
    """Check `kl_k1`, `kl_k2`, `kl_k3`, each (logp, ref_logp) -> elementwise estimate (same shape)."""
    return run_check("kl_estimators", cases_kl_estimators, k1, k2, k3)


def cases_kl_estimators(k1, k2, k3) -> None:
    """Run the cases of `check_kl_estimators`: raise a Hint at the first mismatch."""
    mistakes = _kl_mistakes()
    references = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
    # Hand case: π(y) = 1/2, π_ref(y) = 1/4, so log r = log(π_ref/π) = −log 2:
    # k1 = log 2 = 0.6931, k2 = ½ (log 2)² = 0.2402, k3 = (1/2 − 1) + log 2 = 0.1931
    half, quarter = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    ln2 = torch.log(torch.tensor(2.0)).item()
    hand = {"k1": [ln2], "k2": [0.5 * ln2 ** 2], "k3": [-0.5 + ln2]}
    g = torch.Generator().manual_seed(4)
    random_case = (torch.randn(3, 5, generator=g) - 2, torch.randn(3, 5, generator=g) - 2)
    for name, fn in (("k1", k1), ("k2", k2), ("k3", k3)):
        expect(call(fn, half, quarter), torch.tensor(hand[name]), f"{name}, π = 1/2 and π_ref = 1/4",
               name, mistakes[name], (half, quarter))
        expect(call(fn, *random_case), references[name](*random_case), f"{name}, a (3, 5) batch",
               name, mistakes[name], random_case)
    # Exactness: over a whole small vocabulary, E_{y~π}[k1] and E_{y~π}[k3] equal KL(π ‖ π_ref).
    logp = torch.log(torch.tensor([0.7, 0.2, 0.1]))
    ref_logp = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    exact = (logp.exp() * (logp - ref_logp)).sum()
    for name, fn in (("k1", k1), ("k3", k3)):
        estimate = (logp.exp() * call(fn, logp, ref_logp)).sum()
        if not close(estimate, exact):
            raise Hint(f"{name} is biased: its mean under π is {fmt(estimate.item())}, but the exact "
                       f"KL(π ‖ π_ref) of this 3-token distribution is {fmt(exact.item())}")
    if (call(k3, *random_case) < -1e-6).any():
        raise Hint("k3 is negative on some tokens: (r − 1) − log r is ≥ 0 for every r > 0")


def _controller_mistakes():
    """Wrong `update` rules, each a function (β, kl, target, n, horizon) -> new β."""
    def clip(e):
        return min(max(e, -0.2), 0.2)
    return [
        ("the error is not clipped: e = clip(KL / target − 1, −0.2, 0.2)",
         lambda b, kl, t, n, h: b * (1 + (kl / t - 1) * n / h)),
        ("β moves the wrong way: it must grow when the KL is above the target",
         lambda b, kl, t, n, h: b * (1 - clip(kl / t - 1) * n / h)),
        ("the update is multiplicative: β ← β · (1 + e · n / horizon), you added e · n / horizon",
         lambda b, kl, t, n, h: b + clip(kl / t - 1) * n / h),
        ("you forgot n_steps / horizon: β moves by a small step each update, not by 20%",
         lambda b, kl, t, n, h: b * (1 + clip(kl / t - 1))),
        ("the error is relative to the target: e = KL / target − 1, not KL − target",
         lambda b, kl, t, n, h: b * (1 + clip(kl - t) * n / h)),
    ]


def check_adaptive_kl(controller_class) -> CheckResult:
    """Check a class with `__init__(init, target, horizon)`, `.value` and `.update(current_kl, n_steps)`."""
    return run_check("adaptive_kl", cases_adaptive_kl, controller_class)


def cases_adaptive_kl(cls) -> None:
    """Run the cases of `check_adaptive_kl`: raise a Hint at the first mismatch."""
    init, target, horizon = 0.1, 6.0, 100
    student, reference = cls(init, target, horizon), ReferenceController(init, target, horizon)
    # Hand-computed: e = clip(9/6 − 1) = 0.2       β = 0.1 · (1 + 0.2 · 20/100)    = 0.104
    #                e = 0 at the target              β unchanged                       = 0.104
    #                e = clip(3/6 − 1) = −0.2       β = 0.104 · (1 − 0.2 · 50/100)  = 0.0936
    #                e = 6.6/6 − 1 = 0.1 (no clip)  β = 0.0936 · (1 + 0.1 · 100/100) = 0.10296
    # (n/horizon ≠ β₀ on purpose: with β₀ = n/horizon, β·(1 + e) and β + e·n/horizon are the same number)
    steps = [(9.0, 20, 0.104), (6.0, 10, 0.104), (3.0, 50, 0.0936), (6.6, 100, 0.10296)]
    beta = init
    for i, (kl, n, hand) in enumerate(steps):
        before = student.value
        student.update(kl, n)
        reference.update(kl, n)
        case = f"update {i + 1}: β = {before:.5f}, KL = {kl}, target = {target}, n_steps = {n}"
        got = student.value
        if not isinstance(got, (float, int)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            raise Hint(f"{case}: .value should be a number, got {type(got).__name__}")
        got = float(got)
        if abs(got - hand) < 1e-6 and abs(got - reference.value) < 1e-9:
            beta = got
            continue
        for hint, wrong in _controller_mistakes():
            if abs(got - wrong(beta, kl, target, n, horizon)) < 1e-9:
                raise Hint(f"{case}: {hint}")
        raise Hint(f"{case}: β became {got:.5f}, expected {hand:.5f}")


def known_mistakes() -> dict[str, list[tuple[str, tuple]]]:
    """exercise -> (hint, what a student who made that mistake hands in) (see logprobs.known_mistakes)."""
    right = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
    estimators = [(hint, tuple(wrong if k == name else right[k] for k in right))
                  for name, mistakes in _kl_mistakes().items() for hint, wrong in mistakes]

    def controller(rule):
        class Controller:
            def __init__(self, init, target, horizon):
                self.value, self.target, self.horizon = init, target, horizon

            def update(self, current_kl, n_steps):
                self.value = rule(self.value, current_kl, self.target, n_steps, self.horizon)
        return Controller

    return {"kl_estimators": estimators,
            "adaptive_kl": [(hint, (controller(rule),)) for hint, rule in _controller_mistakes()]}
