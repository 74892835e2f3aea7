"""Checks for notebook 02: rankings to pairs, the Bradley-Terry loss, the reward head."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...masks import last_index
from ...reward import bradley_terry_loss, ranking_to_pairs
from .core import CheckResult, Hint, call, expect, run_check


# ---------------------------------------------------------------- rankings -> pairs

BT_AUTOGRAD_HINT = "your loss is cut off from autograd"
SCORE_AUTOGRAD_HINT = "your score is cut off from autograd"
SORTED_HINT = ("you sorted the ranking or the two indices of each pair: the ranking's order IS the preference "
               "(best first), the numbers are only answer indices, so a pair is (winner, loser) whichever is smaller")


def _pairs_mistakes():
    def neighbours(r):
        return [(r[i], r[i + 1]) for i in range(len(r) - 1)]

    def reversed_pairs(r):
        return [(lo, w) for w, lo in ranking_to_pairs(r)]

    def both_directions(r):
        return [(a, b) for a in r for b in r if a != b]

    def with_self_pairs(r):
        return [(r[i], r[j]) for i in range(len(r)) for j in range(i, len(r))]

    def sorted_first(r):
        return ranking_to_pairs(sorted(r))

    def sorted_pairs(r):
        return [(min(w, lo), max(w, lo)) for w, lo in ranking_to_pairs(r)]

    return [
        ("you paired only neighbours in the ranking: every one of the K(K−1)/2 pairs counts "
         "(the best answer also beats the third, the fourth...)", neighbours),
        ("your pairs are (loser, winner): put the preferred answer first", reversed_pairs),
        ("you made every ordered pair: (a, b) and (b, a) cannot both be preferences; "
         "keep only (better, worse)", both_directions),
        ("you paired answers with themselves: there are K(K−1)/2 pairs, not K(K+1)/2", with_self_pairs),
        # sorting the ranking and sorting each pair give the same pairs (every i < j): one hint names both
        (SORTED_HINT, sorted_first),
        (SORTED_HINT, sorted_pairs),
    ]


def check_ranking_to_pairs(fn) -> CheckResult:
    """Check `ranking_to_pairs(ranking: list[int]) -> list[(winner, loser)]`."""
    return run_check("ranking_to_pairs", cases_ranking_to_pairs, fn)


def cases_ranking_to_pairs(fn) -> None:
    """Run the cases of `check_ranking_to_pairs`: raise a Hint at the first mismatch."""
    cases = [("a ranking of one answer", [3], []),
             ("ranking [2, 0]", [2, 0], [(2, 0)]),
             # 2 beats 0, 1 and 3; 0 beats 1 and 3; 1 beats 3: 4·3/2 = 6 pairs
             ("ranking [2, 0, 1, 3]", [2, 0, 1, 3], [(2, 0), (2, 1), (2, 3), (0, 1), (0, 3), (1, 3)]),
             ("a ranking of 6 answers", [5, 1, 4, 0, 3, 2], None)]
    answers = []
    for case, ranking, _ in cases:
        got = fn(list(ranking))
        try:
            answers.append(sorted(tuple(int(i) for i in p) for p in got))   # the order of the pairs does not matter
        except (TypeError, ValueError):
            raise Hint(f"{case}: return a list of (winner, loser) pairs, got {got!r}")
    for (case, ranking, hand), got in zip(cases, answers):
        want = sorted(ranking_to_pairs(ranking) if hand is None else hand)
        if got == want:
            continue
        # the mistake that explains every case (on [2, 0], sorting and reversing give the same pair),
        # else one that explains this case
        explains = [(hint, all(sorted(wrong(list(r))) == a for (_, r, _), a in zip(cases, answers)))
                    for hint, wrong in _pairs_mistakes() if sorted(wrong(list(ranking))) == got]
        if explains:
            raise Hint(f"{case}: {max(explains, key=lambda e: e[1])[0]}")
        raise Hint(f"{case}: you returned {len(got)} pairs {got}; expected the {len(want)} pairs {want}")


# ---------------------------------------------------------------- Bradley-Terry

def _bt_mistakes():
    return [
        ("your loss has the wrong sign: it must fall as r_chosen − r_rejected grows",
         lambda w, lo: F.logsigmoid(w - lo).mean()),
        ("you compare the wrong way round: the loss is −log σ(r_chosen − r_rejected)",
         lambda w, lo: -F.logsigmoid(lo - w).mean()),
        ("you summed over pairs: take the mean", lambda w, lo: -F.logsigmoid(w - lo).sum()),
        ("you dropped the log: the loss is −log σ(r_w − r_l)", lambda w, lo: -torch.sigmoid(w - lo).mean()),
        ("log(sigmoid(x)) overflows for a large margin (σ rounds to 0 and its log to −inf): "
         "use F.logsigmoid", lambda w, lo: -torch.log(torch.sigmoid(w - lo)).mean()),
    ]


def check_bradley_terry_loss(fn) -> CheckResult:
    """Check `bradley_terry_loss(r_chosen (P,), r_rejected (P,)) -> scalar`."""
    return run_check("bradley_terry_loss", cases_bradley_terry_loss, fn)


def cases_bradley_terry_loss(fn) -> None:
    """Run the cases of `check_bradley_terry_loss`: raise a Hint at the first mismatch."""
    g = torch.Generator().manual_seed(2)
    cases = [
        # a tie: σ(0) = 1/2, so the loss is log 2 whatever the rewards
        ("a tie, r_chosen = r_rejected = 1", (torch.tensor([1.0]), torch.tensor([1.0])), math.log(2)),
        # −(log σ(2) + log σ(−2)) / 2 = (0.1269 + 2.1269) / 2
        ("two pairs, margins +2 and −2", (torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])),
         (-math.log(1 / (1 + math.exp(-2))) - math.log(1 / (1 + math.exp(2)))) / 2),
        # the model is confidently wrong: −log σ(−200) = 200, not inf
        ("a margin of −200", (torch.tensor([0.0]), torch.tensor([200.0])), 200.0),
        ("8 random pairs", (torch.randn(8, generator=g), torch.randn(8, generator=g)), None),
    ]
    mistakes = _bt_mistakes()
    for case, args, hand in cases:
        want = bradley_terry_loss(*args) if hand is None else torch.tensor(hand)
        expect(call(fn, *args), want, case, "the loss", mistakes, args)
    w = args[0].clone().requires_grad_()
    if not getattr(fn(w, args[1]), "requires_grad", False):
        raise Hint(f"{BT_AUTOGRAD_HINT}: do not call .item() or .detach() on it")


# ---------------------------------------------------------------- reward head at the last real token

def _reference_score(hidden, mask, head):
    values = head(hidden).squeeze(-1)  # (B, T)
    return values.gather(1, last_index(mask)[:, None]).squeeze(1)


def _score_mistakes():
    def values(hidden, head):
        return head(hidden).squeeze(-1)

    def last_column(hidden, mask, head):
        return values(hidden, head)[:, -1]

    def count_minus_one(hidden, mask, head):
        return values(hidden, head).gather(1, (mask.sum(1).long() - 1)[:, None]).squeeze(1)

    def count(hidden, mask, head):
        idx = mask.sum(1).long().clamp(max=mask.shape[1] - 1)
        return values(hidden, head).gather(1, idx[:, None]).squeeze(1)

    def first_real(hidden, mask, head):
        return values(hidden, head).gather(1, mask.long().argmax(1)[:, None]).squeeze(1)

    def mean_real(hidden, mask, head):
        return (values(hidden, head) * mask).sum(1) / mask.sum(1)

    return [
        ("you read the last column: for a shorter sequence that is padding; read the last real token",
         last_column),
        ("you used mask.sum() − 1 as the position: that is only right without left padding "
         "(prompts are left-padded here); find the last column where the mask is 1", count_minus_one),
        ("off by one: the last real token is at position mask.sum() − 1 in a right-padded row, "
         "not mask.sum()", count),
        ("you read the first real token: the reward must see the whole response, read the last one",
         first_real),
        ("you averaged the head over the tokens: read it at the last real token only", mean_real),
    ]


def check_score_at_last_token(fn) -> CheckResult:
    """Check `score_at_last_token(hidden (B,T,C), attention_mask (B,T), head nn.Linear(C,1)) -> (B,)`."""
    return run_check("score_at_last_token", cases_score_at_last_token, fn)


def cases_score_at_last_token(fn) -> None:
    """Run the cases of `check_score_at_last_token`: raise a Hint at the first mismatch."""
    torch.manual_seed(3)
    B, T, C = 3, 6, 4
    head = nn.Linear(C, 1)
    hidden = torch.randn(B, T, C)
    # Hand case: a head that reads the first feature, hidden[b, t, 0] = 10·b + t,
    # so the score names the column it was read at.
    probe = nn.Linear(C, 1, bias=False)
    with torch.no_grad():
        probe.weight.copy_(torch.tensor([[1.0, 0, 0, 0]]))
    numbered = torch.zeros(B, T, C)
    numbered[:, :, 0] = 10 * torch.arange(B)[:, None] + torch.arange(T)[None, :]
    right = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    cases = [
        ("hand-made, right padding: last real tokens at columns 5, 2, 3",
         (numbered, right, probe), torch.tensor([5.0, 12.0, 23.0])),
        ("no padding", (hidden, torch.ones(B, T, dtype=torch.long), head), None),
        ("right padding", (hidden, right, head), None),
        ("left padding", (hidden, right.flip(1), head), None),
        # the prompt is left-padded and the response right-padded: the last real token is
        # in the middle of the row
        ("left-padded prompt and right-padded response",
         (hidden, torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]), head),
         None),
    ]
    mistakes = _score_mistakes()
    for case, args, hand in cases:
        want = _reference_score(*args).detach() if hand is None else hand
        got = fn(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        expect(got.detach() if isinstance(got, torch.Tensor) else got, want, case, "the score",
               mistakes, args)
    if not getattr(fn(hidden, right, head), "requires_grad", False):
        raise Hint(f"{SCORE_AUTOGRAD_HINT}: the head must be trained through it")


def known_mistakes() -> dict[str, list[tuple[str, tuple]]]:
    """exercise -> (hint, what a student who made that mistake hands in) (see logprobs.known_mistakes)."""
    return {
        "ranking_to_pairs": [(hint, (wrong,)) for hint, wrong in _pairs_mistakes()],
        "bradley_terry_loss": [(hint, (wrong,)) for hint, wrong in _bt_mistakes()] + [
            (BT_AUTOGRAD_HINT, (lambda w, lo: -F.logsigmoid(w - lo).mean().detach(),))],
        "score_at_last_token": [(hint, (wrong,)) for hint, wrong in _score_mistakes()] + [
            (SCORE_AUTOGRAD_HINT, (lambda hidden, mask, head: _reference_score(hidden, mask, head).detach(),))],
    }
