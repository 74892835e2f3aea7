"""Checks for notebook 01: log-probs of the response tokens, and the SFT loss."""
from __future__ import annotations

import math

import torch

from ...logprobs import gather_logprobs
from ...masks import masked_mean
from ...training import lm_loss
from .core import CheckResult, Hint, call, expect, run_check

AUTOGRAD_HINT = "your loss does not depend on the logits in autograd's eyes"


def _reference_response_logprobs(logits, input_ids, response_start, response_mask, temperature=1.0):
    logp = gather_logprobs(logits[:, response_start - 1:-1] / temperature, input_ids[:, response_start:])
    return logp * response_mask


def _response_cases():
    """(name, args, hand-computed answer or None to use the reference)."""
    # Hand case: B=1, T=3, V=2, response = columns 1 and 2.
    # logits[0] = [0, 0]     -> p(token 0 at column 1) = 1/2
    # logits[1] = [0, ln 3]  -> p(token 1 at column 2) = 3/4
    # logits[2] predicts beyond the sequence: it must not be used.
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]])
    ids = torch.tensor([[1, 0, 1]])
    yield "hand-made case (T=3, V=2)", (logits, ids, 1, torch.ones(1, 2)), \
        torch.tensor([[math.log(1 / 2), math.log(3 / 4)]])

    g = torch.Generator().manual_seed(0)
    B, T, V, s = 3, 7, 5, 3
    logits = torch.randn(B, T, V, generator=g) * 2
    ids = torch.randint(V, (B, T), generator=g)
    yield "temperature 0.7", (logits, ids, s, torch.ones(B, T - s), 0.7), None
    # responses of 4, 2 and 1 tokens, then padding (the padding columns hold garbage logits)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    yield "right-padded responses", (logits, ids, s, mask, 1.0), None


def _response_mistakes():
    def no_shift(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s:] / t, ids[:, s:]) * mask

    def shifted_labels(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s - 1:-1] / t, ids[:, s - 1:-1]) * mask

    def no_mask(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s - 1:-1] / t, ids[:, s:])

    def no_temperature(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s - 1:-1], ids[:, s:]) * mask

    def temperature_after(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s - 1:-1], ids[:, s:]) / t * mask

    def times_temperature(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s - 1:-1] * t, ids[:, s:]) * mask

    def raw_logits(logits, ids, s, mask, t=1.0):
        return torch.gather(logits[:, s - 1:-1] / t, 2, ids[:, s:, None]).squeeze(-1) * mask

    def probabilities(logits, ids, s, mask, t=1.0):
        return gather_logprobs(logits[:, s - 1:-1] / t, ids[:, s:]).exp() * mask

    def wrong_dim(logits, ids, s, mask, t=1.0):
        logp = (logits / t).log_softmax(1)[:, s - 1:-1]
        return torch.gather(logp, 2, ids[:, s:, None]).squeeze(-1) * mask

    return [
        ("you forgot to shift by one: the logits at column t−1 predict the token at column t, "
         "so use logits[:, response_start−1:−1]", no_shift),
        ("you shifted the labels as well as the logits: the response tokens are "
         "input_ids[:, response_start:], predicted by logits[:, response_start−1:−1]", shifted_labels),
        ("padding positions must be 0: multiply by response_mask", no_mask),
        ("you forgot the temperature: divide the logits by it before the log-softmax", no_temperature),
        ("divide the logits by the temperature before the log-softmax, not the log-probs after it",
         temperature_after),
        ("you multiplied the logits by the temperature: divide them by it", times_temperature),
        ("you gathered raw logits: take log_softmax over the vocabulary first", raw_logits),
        ("you returned probabilities: the exercise asks for log-probabilities", probabilities),
        ("your log-softmax normalises over the wrong dimension: the vocabulary is the last one (dim=-1)",
         wrong_dim),
    ]


def check_response_logprobs(response_logprobs) -> CheckResult:
    """Check `response_logprobs(logits, input_ids, response_start, response_mask, temperature=1.0)`."""
    return run_check("response_logprobs", cases_response_logprobs, response_logprobs)


def cases_response_logprobs(fn) -> None:
    """Run the cases of `check_response_logprobs`: raise a Hint at the first mismatch."""
    mistakes = _response_mistakes()
    for case, args, hand in _response_cases():
        want = _reference_response_logprobs(*args) if hand is None else hand
        expect(call(fn, *args), want, case, "the log-probs", mistakes, args)


def _reference_sft_loss(logits, input_ids, loss_mask):
    """The package's `lm_loss`, fed these logits instead of a model's."""
    return lm_loss(lambda ids, mask: (logits, None), input_ids, torch.ones_like(input_ids), loss_mask)


def _sft_cases():
    # Hand case: prompt = column 0, response = columns 1 and 2.
    # logits[0] = [0, 0] gives token 0 probability 1/2; logits[1] = [0, ln 3] gives token 1 3/4.
    # L = −(log 1/2 + log 3/4) / 2 = 0.4904
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]])
    yield "hand-made case (1 prompt token, 2 response tokens)", \
        (logits, torch.tensor([[1, 0, 1]]), torch.tensor([[0, 1, 1]])), \
        torch.tensor(-(math.log(1 / 2) + math.log(3 / 4)) / 2)

    g = torch.Generator().manual_seed(1)
    B, T, V = 3, 8, 6
    logits = torch.randn(B, T, V, generator=g) * 2
    ids = torch.randint(V, (B, T), generator=g)
    # prompts of 2, 3 and 1 tokens, responses of different lengths, then right padding
    loss_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1],
                              [0, 0, 0, 1, 1, 0, 0, 0],
                              [0, 1, 1, 1, 0, 0, 0, 0]])
    yield "prompts and responses of different lengths, right-padded", (logits, ids, loss_mask), None


def _sft_mistakes():
    def logp_of(logits, ids):
        return gather_logprobs(logits[:, :-1], ids[:, 1:])

    def no_shift(logits, ids, m):
        return -masked_mean(gather_logprobs(logits, ids), m)

    def mask_not_shifted(logits, ids, m):
        return -masked_mean(logp_of(logits, ids), m[:, :-1])

    def no_mask(logits, ids, m):
        return -logp_of(logits, ids).mean()

    def divide_by_all(logits, ids, m):
        return -(logp_of(logits, ids) * m[:, 1:]).sum() / m[:, 1:].numel()

    def wrong_sign(logits, ids, m):
        return masked_mean(logp_of(logits, ids), m[:, 1:])

    def per_sequence(logits, ids, m):
        return -masked_mean(logp_of(logits, ids), m[:, 1:], dim=1).mean()

    def summed(logits, ids, m):
        return -(logp_of(logits, ids) * m[:, 1:]).sum()

    return [
        ("you forgot to shift by one: logits[:, t] predict input_ids[:, t+1]", no_shift),
        ("shift the loss mask like the labels: the mask of the predicted tokens is loss_mask[:, 1:]",
         mask_not_shifted),
        ("the prompt and padding tokens count in your loss: average over the tokens where "
         "loss_mask is 1 only", no_mask),
        ("padding and prompt positions contribute to your mean: divide by the number of response "
         "tokens (loss_mask.sum()), not by every position", divide_by_all),
        ("your loss has the wrong sign: minimise the negative log-likelihood", wrong_sign),
        ("you averaged each sequence first: the loss is the mean over all response tokens of the "
         "batch, each token weighing the same", per_sequence),
        ("you summed the log-probs: take the mean over the response tokens", summed),
    ]


def check_sft_loss(sft_loss) -> CheckResult:
    """Check `sft_loss(logits, input_ids, loss_mask) -> scalar`."""
    return run_check("sft_loss", cases_sft_loss, sft_loss)


def cases_sft_loss(fn) -> None:
    """Run the cases of `check_sft_loss`: raise a Hint at the first mismatch."""
    mistakes = _sft_mistakes()
    for case, args, hand in _sft_cases():
        want = _reference_sft_loss(*args) if hand is None else hand
        got = call(fn, *args)
        expect(got, want, case, "the loss", mistakes, args)
    logits = args[0].clone().requires_grad_()
    if not getattr(fn(logits, args[1], args[2]), "requires_grad", False):
        raise Hint(f"{AUTOGRAD_HINT}: do not call .item(), .detach() or torch.tensor() on it")


def known_mistakes() -> dict[str, list[tuple[str, tuple]]]:
    """exercise -> (hint, what a student who made that mistake hands in), for each mistake its check names
    (tests/test_hints.py: each gets its own hint; INSTRUCTORS.md's table is made from these)."""
    return {
        "response_logprobs": [(hint, (wrong,)) for hint, wrong in _response_mistakes()],
        "sft_loss": [(hint, (wrong,)) for hint, wrong in _sft_mistakes()] + [
            (AUTOGRAD_HINT, (lambda logits, ids, m: _reference_sft_loss(logits, ids, m).detach(),))],
    }
