"""Checks for exercise notebook 05: the DPO loss, and the group-relative advantages of RLOO and GRPO."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...dpo import dpo_loss as reference_dpo_loss
from ...grpo import EPS, grpo_advantages as reference_grpo
from ...rloo import rloo_advantages as reference_rloo
from .core import CheckResult, Hint, call, expect, run_check

DPO_AUTOGRAD_HINT = "your loss is cut off from autograd"


# ---------------------------------------------------------------- DPO

def _dpo_mistakes():
    def bt(margin):
        return -F.logsigmoid(margin).mean()

    return [
        # reference minus policy and rejected minus chosen are the same function: one hint names both
        ("your margin has the wrong sign: the log-ratios are the wrong way round (r̂(x, y) = β (log π_θ − "
         "log π_ref), policy minus reference) or you compare the rejected answer with the chosen one "
         "(the loss is −log σ(r̂_w − r̂_l))", lambda c, r, rc, rr, b: bt(b * ((rc - c) - (rr - r)))),
        ("you forgot β: the margin is β times the difference of log-ratios",
         lambda c, r, rc, rr, b: bt((c - rc) - (r - rr))),
        ("you left out the reference model: DPO's implicit reward is β log π_θ/π_ref, not β log π_θ",
         lambda c, r, rc, rr, b: bt(b * (c - r))),
        ("you summed over pairs: take the mean",
         lambda c, r, rc, rr, b: -F.logsigmoid(b * ((c - rc) - (r - rr))).sum()),
        ("your loss has the wrong sign: it must fall as the chosen answer's log-ratio grows",
         lambda c, r, rc, rr, b: F.logsigmoid(b * ((c - rc) - (r - rr))).mean()),
        ("log(sigmoid(x)) overflows for a large negative margin (σ rounds to 0 and its log to −inf): "
         "use F.logsigmoid", lambda c, r, rc, rr, b: -torch.log(torch.sigmoid(b * ((c - rc) - (r - rr)))).mean()),
    ]


def check_dpo_loss(fn) -> CheckResult:
    """Check `dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta) -> scalar`,
    each logps (P,) the summed log-prob of a whole answer."""
    return run_check("dpo_loss", cases_dpo_loss, fn)


def _loss_of(out):
    return out[0] if isinstance(out, tuple) else out   # the package's returns (loss, stats); a bare loss is fine


def cases_dpo_loss(fn) -> None:
    """Run the cases of `check_dpo_loss`: raise a Hint at the first mismatch."""
    g = torch.Generator().manual_seed(6)
    lp = lambda *x: torch.tensor(x)  # noqa: E731
    # one pair, β = 0.5: log-ratios −2 − (−3) = 1 (chosen) and −4 − (−3.5) = −0.5 (rejected);
    # margin 0.5 · (1 + 0.5) = 0.75, loss −log σ(0.75) = log(1 + e^−0.75)
    cases = [
        ("the policy is the reference: every margin is 0", (lp(-3.0, -7.0), lp(-5.0, -2.0), lp(-3.0, -7.0),
                                                           lp(-5.0, -2.0), 0.1), math.log(2)),
        ("one pair, β = 0.5", (lp(-2.0), lp(-4.0), lp(-3.0), lp(-3.5), 0.5), math.log(1 + math.exp(-0.75))),
        # two pairs with margins +1 and −1: their losses log(1 + e^−1) and log(1 + e) average to ½ + log(1 + e^−1)
        ("two pairs, margins +1 and −1", (lp(0.0, -2.0), lp(-2.0, 0.0), lp(0.0, 0.0), lp(0.0, 0.0), 0.5),
         0.5 + math.log(1 + math.exp(-1))),
        # the policy is confidently wrong: margin −200, loss 200 (not inf)
        ("a margin of −200", (lp(-200.0), lp(0.0), lp(0.0), lp(-200.0), 0.5), 200.0),
        ("8 random pairs, β = 0.2", tuple(torch.randn(8, generator=g) - 5 for _ in range(4)) + (0.2,), None),
    ]
    mistakes = _dpo_mistakes()
    for case, args, hand in cases:
        want = _loss_of(reference_dpo_loss(*args)) if hand is None else torch.tensor(hand)
        got = _loss_of(call(fn, *args))
        expect(got, want, case, "the loss", mistakes, args)
    chosen = args[0].clone().requires_grad_()
    loss = _loss_of(fn(chosen, *args[1:]))
    if not getattr(loss, "requires_grad", False):
        raise Hint(f"{DPO_AUTOGRAD_HINT}: do not call .item() or .detach() on the policy's log-probs")
    loss.backward()
    if chosen.grad is None or not (chosen.grad < 0).all():
        raise Hint("raising the chosen answers' log-probs should lower the loss (a negative gradient on each)")


# ---------------------------------------------------------------- RLOO and GRPO advantages

def _rloo_mistakes():
    return [
        ("your baseline includes the answer itself: RLOO leaves it out, the mean of the *other* G − 1 answers",
         lambda R: R - R.mean(1, keepdim=True)),
        ("you divided the sum of the others by G: there are G − 1 other answers",
         lambda R: R - (R.sum(1, keepdim=True) - R) / R.shape[1]),
        ("you averaged over the prompts (dim 0): a group is one prompt's G answers, a row",
         lambda R: R - (R.sum(0, keepdim=True) - R) / (R.shape[0] - 1)),
        ("your baseline is the sum of the other answers: take their mean",
         lambda R: R - (R.sum(1, keepdim=True) - R)),
        ("the advantage is the return minus the baseline, not the other way round",
         lambda R: (R.sum(1, keepdim=True) - R) / (R.shape[1] - 1) - R),
    ]


def _grpo_mistakes():
    def z(s, mean, std):
        return (s - mean) / (std + EPS)

    return [
        ("you did not divide by the group's standard deviation: GRPO standardises, (r − mean) / (std + ε)",
         lambda s: s - s.mean(1, keepdim=True)),
        ("you used the population std (divides by G): the sample std divides by G − 1 (torch's default)",
         lambda s: z(s, s.mean(1, keepdim=True), s.std(1, keepdim=True, unbiased=False))),
        ("you standardised over the whole batch: each prompt's group has its own mean and std",
         lambda s: z(s, s.mean(), s.std())),
        ("you standardised over the prompts (dim 0): a group is one prompt's G answers, a row",
         lambda s: z(s, s.mean(0, keepdim=True), s.std(0, keepdim=True))),
        ("a group whose scores are all equal has std 0: add ε = 1e-4 to the std, so its advantages are 0, not NaN",
         lambda s: (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True)),
    ]


def check_group_advantages(rloo_advantages, grpo_advantages) -> CheckResult:
    """Check `rloo_advantages(R (P, G)) -> (P, G)` and `grpo_advantages(scores (P, G)) -> (P, G)`."""
    return run_check("group_advantages", cases_group_advantages, rloo_advantages, grpo_advantages)


def cases_group_advantages(rloo_advantages, grpo_advantages) -> None:
    """Run the cases of `check_group_advantages`: raise a Hint at the first mismatch."""
    g = torch.Generator().manual_seed(7)
    row = torch.tensor([[1.0, 2.0, 4.0, 9.0]])
    # RLOO by hand: each answer minus the mean of the other three, e.g. 1 − (2 + 4 + 9)/3 = −4
    # GRPO by hand: mean 4, sample std √(((−3)² + (−2)² + 0² + 5²) / 3) = √(38/3)
    sd = math.sqrt(38 / 3)
    two_groups = torch.tensor([[0.9, 0.1, 0.5, 0.5], [2.0, 3.0, 2.0, 3.0], [1.0, 4.0, 0.0, 2.0]])
    cases = [
        ("one group [1, 2, 4, 9]", row, [[-4.0, -8 / 3, 0.0, 20 / 3]], [[(x - 4) / (sd + EPS) for x in (1, 2, 4, 9)]]),
        ("three prompts, 4 answers each", two_groups, None, None),
        ("a group of equal scores", torch.tensor([[0.7, 0.7, 0.7], [0.0, 1.0, 2.0]]), None, None),
        ("5 prompts, 6 answers each", torch.randn(5, 6, generator=g), None, None),
    ]
    for case, scores, rloo_hand, grpo_hand in cases:
        want = reference_rloo(scores) if rloo_hand is None else torch.tensor(rloo_hand)
        expect(call(rloo_advantages, scores), want, f"RLOO, {case}", "the advantages", _rloo_mistakes(), (scores,))
    for case, scores, rloo_hand, grpo_hand in cases:
        want = reference_grpo(scores) if grpo_hand is None else torch.tensor(grpo_hand)
        expect(call(grpo_advantages, scores), want, f"GRPO, {case}", "the advantages", _grpo_mistakes(), (scores,))


def known_mistakes() -> dict[str, list[tuple[str, tuple]]]:
    """exercise -> (hint, what a student who made that mistake hands in) (see logprobs.known_mistakes)."""
    return {
        "dpo_loss": [(hint, (wrong,)) for hint, wrong in _dpo_mistakes()] + [
            (DPO_AUTOGRAD_HINT, (lambda *a: reference_dpo_loss(*a)[0].detach(),))],
        "group_advantages": [(hint, (wrong, reference_grpo)) for hint, wrong in _rloo_mistakes()]
        + [(hint, (reference_rloo, wrong)) for hint, wrong in _grpo_mistakes()],
    }
