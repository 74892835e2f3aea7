"""Checks for notebook 04: per-token rewards, GAE, the clipped policy and value losses."""
from __future__ import annotations

import torch

from ... import ppo
from ...masks import last_index, masked_mean
from .core import CheckResult, Hint, call, close, expect, fmt, run_check

KL_PADDING_HINT = "padding positions must have kl = 0: multiply by the mask"
CUT_OFF_HINT = "your loss is cut off from autograd"
GRADIENT_HINT = "the value of your loss is right but its gradient is not"
APPROX_KL_HINT = "approx_kl is k3"
NOT_CLIPPED_HINT = ("your values are not clipped around the OLD values (not clipped at all, or clipped around the "
                    "returns, which the max then ignores): V_clip = V_old + clip(V − V_old, −ε, ε)")

# Three responses of 4, 2 and 1 tokens (the last one is only the end token), right-padded.
MASK = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])


def _unpack(out, case: str, names: tuple[str, ...]):
    if not (isinstance(out, tuple) and len(out) == len(names)):
        raise Hint(f"{case}: return a tuple ({', '.join(names)}), got {type(out).__name__}"
                   + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    return out


# ---------------------------------------------------------------- per-token rewards

def _rewards_mistakes():
    def on_last_column(score, logp, ref_logp, mask, beta):
        kl = (logp - ref_logp) * mask
        rewards = -beta * kl
        rewards[:, -1] += score
        return rewards

    def score_everywhere(score, logp, ref_logp, mask, beta):
        return (-beta * (logp - ref_logp) + score[:, None]) * mask

    def kl_sign(score, logp, ref_logp, mask, beta):
        return ppo.per_token_rewards(score, ref_logp, logp, mask, beta)[0]

    def no_beta(score, logp, ref_logp, mask, beta):
        return ppo.per_token_rewards(score, logp, ref_logp, mask, 1.0)[0]

    def unmasked(score, logp, ref_logp, mask, beta):
        rewards = -beta * (logp - ref_logp)
        rewards[torch.arange(len(score)), last_index(mask)] += score
        return rewards

    return [
        ("you added the score on the last column: for a shorter response that is padding; "
         "add it on the last real token", on_last_column),
        ("the reward model's score goes on the last real token only, not on every token", score_everywhere),
        ("the KL penalty has the wrong sign: r_t = −β (log π − log π_ref) lowers the reward "
         "where the policy is more likely than the reference", kl_sign),
        ("did you forget the KL coefficient β?", no_beta),
        ("padding positions have a KL penalty in your rewards: multiply the KL by the mask", unmasked),
    ]


def check_per_token_rewards(fn) -> CheckResult:
    """Check `per_token_rewards(score (B,), logp, ref_logp, mask (B,N), kl_coef) -> (rewards, kl)`."""
    return run_check("per_token_rewards", cases_per_token_rewards, fn)


def cases_per_token_rewards(fn) -> None:
    """Run the cases of `check_per_token_rewards`: raise a Hint at the first mismatch."""
    # Hand case: one response of 2 tokens, β = 0.5, score 1.
    # kl = [0.2 − 0.0, −0.1 − 0.3] = [0.2, −0.4]; rewards = [−0.1, 0.2 + 1] = [−0.1, 1.2]
    hand = (torch.tensor([1.0]), torch.tensor([[0.2, -0.1]]), torch.tensor([[0.0, 0.3]]),
            torch.ones(1, 2), 0.5)
    g = torch.Generator().manual_seed(5)
    batch = (torch.randn(3, generator=g), -torch.rand(3, 4, generator=g) * 3,
             -torch.rand(3, 4, generator=g) * 3, MASK, 0.1)
    cases = [("hand-made case (β = 0.5)", hand, (torch.tensor([[-0.1, 1.2]]), torch.tensor([[0.2, -0.4]]))),
             ("3 responses of 4, 2 and 1 tokens, right-padded", batch, None)]
    mistakes = _rewards_mistakes()
    for case, args, want in cases:
        want = ppo.per_token_rewards(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args)) \
            if want is None else want
        rewards, kl = _unpack(call(fn, *args), case, ("rewards", "kl"))
        expect(rewards, want[0], case, "rewards", mistakes, args)
        expect(kl, want[1], case, "kl", [(KL_PADDING_HINT, lambda s, lp, rp, m, b: lp - rp)], args)


# ---------------------------------------------------------------- GAE

def _gae_mistakes():
    """Wrong versions of GAE, each returning (advantages, returns)."""
    def loop(rewards, values, mask, gamma, lam, done_mask=True, discount_lam=True):
        N = rewards.shape[1]
        adv = torch.zeros_like(rewards)
        next_value, next_adv = torch.zeros_like(rewards[:, 0]), torch.zeros_like(rewards[:, 0])
        for t in reversed(range(N)):
            delta = rewards[:, t] + gamma * next_value - values[:, t]
            next_adv = (delta + (gamma * lam if discount_lam else lam) * next_adv) * mask[:, t]
            adv[:, t] = next_adv
            next_value = values[:, t] * mask[:, t] if done_mask else values[:, t]
        return adv, (adv + values) * mask

    def no_done(r, v, m, g, lam):
        return loop(r, v, m, g, lam, done_mask=False)

    def lam_only(r, v, m, g, lam):
        return loop(r, v, m, g, lam, discount_lam=False)

    def forward(r, v, m, g, lam):
        adv = torch.zeros_like(r)
        next_value, next_adv = torch.zeros_like(r[:, 0]), torch.zeros_like(r[:, 0])
        for t in range(r.shape[1]):
            delta = r[:, t] + g * next_value - v[:, t]
            next_adv = (delta + g * lam * next_adv) * m[:, t]
            adv[:, t] = next_adv
            next_value = v[:, t] * m[:, t]
        return adv, (adv + v) * m

    def returns_to_go(r, v, m, g, lam):
        adv, _ = ppo.gae(r, v, m, g, lam)
        R = torch.zeros_like(r)
        running = torch.zeros_like(r[:, 0])
        for t in reversed(range(r.shape[1])):
            running = (r[:, t] + g * running) * m[:, t]
            R[:, t] = running
        return adv, R

    def unmasked_returns(r, v, m, g, lam):
        adv, _ = ppo.gae(r, v, m, g, lam)
        return adv, adv + v

    def td_only(r, v, m, g, lam):
        return ppo.gae(r, v, m, g, 0.0)

    return [
        ("you did not stop GAE at the end of the response: after the last real token V(s_{t+1}) = 0; "
         "the value model's output on padding must not flow back", no_done),
        ("the advantage recursion is A_t = δ_t + γ λ A_{t+1}: you left out γ", lam_only),
        ("GAE runs backwards in time: loop t from the last token to the first", forward),
        ("the returns are the value targets R_t = A_t + V(s_t), not the discounted sum of rewards",
         returns_to_go),
        ("padding positions have nonzero returns: multiply by the mask", unmasked_returns),
        ("your advantages are one-step TD errors: accumulate A_t = δ_t + γ λ A_{t+1}", td_only),
    ]


def check_gae(fn) -> CheckResult:
    """Check `gae(rewards, values, mask (B,N), gamma, lam) -> (advantages, returns)`."""
    return run_check("gae", cases_gae, fn)


def cases_gae(fn) -> None:
    """Run the cases of `check_gae`: raise a Hint at the first mismatch."""
    # Hand case, γ = 1, λ = 0.5, one response of 3 tokens and one of 2 (then padding whose
    # value, 9, is garbage from the value model that must be ignored):
    #   row 0: r = [0, 0, 1], V = [0.5, 0.5, 0.5]
    #     δ = [0 + 0.5 − 0.5, 0 + 0.5 − 0.5, 1 + 0 − 0.5] = [0, 0, 0.5]
    #     A_2 = 0.5, A_1 = 0 + 0.5·0.5 = 0.25, A_0 = 0 + 0.5·0.25 = 0.125
    #   row 1: r = [0, 2, (pad)], V = [1, 1, 9]
    #     δ = [0 + 1 − 1, 2 + 0 − 1] = [0, 1]; A_1 = 1, A_0 = 0.5
    hand = (torch.tensor([[0.0, 0, 1], [0, 2, 0]]), torch.tensor([[0.5, 0.5, 0.5], [1, 1, 9]]),
            torch.tensor([[1.0, 1, 1], [1, 1, 0]]), 1.0, 0.5)
    hand_adv = torch.tensor([[0.125, 0.25, 0.5], [0.5, 1.0, 0.0]])
    g = torch.Generator().manual_seed(6)
    rewards, values = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g) * 2
    cases = [
        ("hand-made case (γ = 1, λ = 0.5)", hand, (hand_adv, (hand_adv + hand[1]) * hand[2])),
        ("right-padded responses of 4, 2 and 1 tokens (γ = 1, λ = 0.95)",
         (rewards, values, MASK, 1.0, 0.95), None),
        ("γ = 0.9, λ = 0.8", (rewards, values, MASK, 0.9, 0.8), None),
        ("an empty response (its mask is all 0)",
         (rewards, values, torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]), 1.0, 0.95), None),
    ]
    mistakes = _gae_mistakes()
    for case, args, want in cases:
        want = ppo.gae(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args)) \
            if want is None else want
        adv, ret = _unpack(call(fn, *args), case, ("advantages", "returns"))
        expect(adv, want[0], case, "advantages", mistakes, args, pick=lambda out: out[0])
        expect(ret, want[1], case, "returns", mistakes, args, pick=lambda out: out[1])


# ---------------------------------------------------------------- clipped policy loss

def _policy_mistakes():
    def build(logp, old_logp, adv, mask, clip, sign=1.0, pessimistic=True, clip_ratio=True,
              use_mask=True, ratio_fn=None):
        ratio = (logp - old_logp).exp() if ratio_fn is None else ratio_fn(logp, old_logp)
        unclipped = -adv * ratio
        clipped = -adv * ratio.clamp(1 - clip, 1 + clip) if clip_ratio else -adv.clamp(1 - clip, 1 + clip) * ratio
        per_token = torch.maximum(unclipped, clipped) if pessimistic else torch.minimum(unclipped, clipped)
        per_token = sign * per_token
        return masked_mean(per_token, mask) if use_mask else per_token.mean()

    return [
        ("your loss has the wrong sign: PPO maximises the objective, so the loss is its negative",
         lambda *a: build(*a, sign=-1.0)),
        ("you took the optimistic bound: the objective is the min of the clipped and unclipped "
         "terms, so the loss (its negative) is their max", lambda *a: build(*a, pessimistic=False)),
        ("clip the ratio ρ_t to [1 − ε, 1 + ε], not the advantages", lambda *a: build(*a, clip_ratio=False)),
        ("padding positions contribute to your mean: average over the mask", lambda *a: build(*a, use_mask=False)),
        ("the ratio is exp(logp − old_logp): the inputs are log-probs",
         lambda *a: build(*a, ratio_fn=lambda lp, olp: lp - olp)),
        ("the ratio is exp(logp − old_logp): the inputs are log-probs",
         lambda *a: build(*a, ratio_fn=lambda lp, olp: lp / olp)),
        ("you forgot to clip the ratio", lambda *a: build(*a[:4], 1e9)),
    ]


def _policy_cases():
    g = torch.Generator().manual_seed(7)
    old_logp = -torch.rand(3, 4, generator=g) * 3
    adv = torch.randn(3, 4, generator=g)
    # Hand case: ρ = [1.5, 0.5, 1.1], A = [2, 1, −0.5], ε = 0.2
    #   min(1.5·2, 1.2·2) = 2.4 (clipped);  min(0.5·1, 0.8·1) = 0.5;  min(−0.55, −0.55) = −0.55
    #   loss = −(2.4 + 0.5 − 0.55) / 3 = −0.78333
    # (|A| ≠ 1 on purpose: with A = ±1, clipping the advantages to [0.8, 1.2] changes nothing the max keeps,
    # and that mistake would look like no clipping at all)
    ratio = torch.tensor([[1.5, 0.5, 1.1]])
    yield "hand-made case (ρ = [1.5, 0.5, 1.1], A = [2, 1, −0.5], ε = 0.2)", \
        (ratio.log(), torch.zeros(1, 3), torch.tensor([[2.0, 1, -0.5]]), torch.ones(1, 3), 0.2), \
        torch.tensor(-2.35 / 3)
    # PPO's first minibatch: π_θ = π_old, so ρ = 1, the loss is −mean(A) and nothing is clipped
    yield "the first minibatch (logp = old_logp)", (old_logp, old_logp, adv, MASK, 0.2), None
    logp = old_logp + torch.randn(3, 4, generator=g) * 0.4
    yield "ratios far from 1, right-padded responses", (logp, old_logp, adv, MASK, 0.2), None
    yield "ε = 0.1, an empty response", (logp, old_logp, adv, torch.tensor([[1.0, 1, 1, 0], [0, 0, 0, 0],
                                                                          [1, 1, 1, 1]]), 0.1), None


def _check_grad(fn, reference, args, what: str):
    """The gradient with respect to the first input must match the reference's."""
    x = args[0].clone().requires_grad_()
    out = fn(x, *(a.clone() if isinstance(a, torch.Tensor) else a for a in args[1:]))
    loss = out[0] if isinstance(out, tuple) else out
    if not getattr(loss, "requires_grad", False):
        raise Hint(f"{CUT_OFF_HINT} ({what}): do not call .item(), .detach() or torch.tensor() on the loss "
                   "(stats may be detached, the loss may not)")
    (grad,) = torch.autograd.grad(loss, x)
    x_ref = args[0].clone().requires_grad_()
    (grad_ref,) = torch.autograd.grad(reference(x_ref, *args[1:])[0], x_ref)
    if not close(grad, grad_ref):
        raise Hint(f"{GRADIENT_HINT} ({what}): clip with torch.clamp and select with torch.minimum/maximum "
                   "(no .detach() inside)")


def _check_stats(stats, want: dict, case: str, extra: dict) -> None:
    """stats must hold each key of `want`; `extra` holds accepted alternatives per key."""
    if not isinstance(stats, dict):
        raise Hint(f"{case}: the second output should be a dict of stats, got {type(stats).__name__}")
    for key, value in want.items():
        if key not in stats:
            raise Hint(f"{case}: your stats have no {key!r} (keys: {sorted(stats)})")
        got = float(stats[key])
        if not any(abs(got - v) < 1e-5 for v in [value, *extra.get(key, [])]):
            raise Hint(f"{case}: stats[{key!r}] is {fmt(got)}, expected {fmt(value)}"
                       + (f": {APPROX_KL_HINT}, the mean of (ρ − 1) − log ρ over real tokens (≥ 0, "
                          "exactly 0 when ρ = 1)" if key == "approx_kl" else ""))


def check_policy_loss(fn) -> CheckResult:
    """Check `policy_loss(logp, old_logp, advantages, mask (B,N), clip) -> (loss, stats)`."""
    return run_check("policy_loss", cases_policy_loss, fn)


def cases_policy_loss(fn) -> None:
    """Run the cases of `check_policy_loss`: raise a Hint at the first mismatch."""
    mistakes = _policy_mistakes()
    for case, args, hand in _policy_cases():
        want_loss, want_stats = ppo.policy_loss(*(a.clone() if isinstance(a, torch.Tensor) else a
                                                  for a in args))
        loss, stats = _unpack(call(fn, *args), case, ("loss", "stats"))
        expect(loss, want_loss if hand is None else hand, case, "the loss", mistakes, args)
        # clip fraction: the package counts tokens where the clipped term is the active one;
        # CleanRL counts |ρ − 1| > ε. Both are fine for monitoring.
        logp, old_logp, _, mask, clip = args
        cleanrl = masked_mean(((logp - old_logp).exp() - 1).abs().gt(clip).float(), mask).item()
        _check_stats(stats, want_stats, case, {"clipfrac": [cleanrl]})
    _check_grad(fn, ppo.policy_loss, args, "policy loss")


# ---------------------------------------------------------------- clipped value loss

def _value_mistakes():
    def build(v, old_v, ret, mask, clip, pessimistic=True, half=True, use_mask=True):
        v_clipped = old_v + (v - old_v).clamp(-clip, clip)
        a, b = (v - ret) ** 2, (v_clipped - ret) ** 2
        per_token = torch.maximum(a, b) if pessimistic else torch.minimum(a, b)
        per_token = per_token * (0.5 if half else 1.0)
        return masked_mean(per_token, mask) if use_mask else per_token.mean()

    def around_returns(v, old_v, ret, mask, clip):
        v_clipped = ret + (v - ret).clamp(-clip, clip)
        return 0.5 * masked_mean(torch.maximum((v - ret) ** 2, (v_clipped - ret) ** 2), mask)

    return [
        ("take the max of the clipped and unclipped squared errors (the pessimistic bound), not the min",
         lambda *a: build(*a, pessimistic=False)),
        ("you forgot the ½ in L_V = ½ E[max(...)]", lambda *a: build(*a, half=False)),
        ("padding positions contribute to your mean: average over the mask", lambda *a: build(*a, use_mask=False)),
        # clipping around the returns is no clipping at all: |clip(V − R, −ε, ε)| ≤ |V − R|, so the max keeps
        # the unclipped error on every input. One hint for both.
        (NOT_CLIPPED_HINT, lambda *a: build(*a[:4], 1e9)),
        (NOT_CLIPPED_HINT, around_returns),
    ]


def check_value_loss(fn) -> CheckResult:
    """Check `value_loss(values, old_values, returns, mask (B,N), clip) -> (loss, stats)`."""
    return run_check("value_loss", cases_value_loss, fn)


def cases_value_loss(fn) -> None:
    """Run the cases of `check_value_loss`: raise a Hint at the first mismatch."""
    # Hand case, ε = 0.2: V = [1, 0], V_old = [0, 0.9], R = [1, 1]
    #   token 0 moved all the way to its return, but only 0.2 of it is allowed:
    #     V_clip = 0 + clip(1, −0.2, 0.2) = 0.2;  max((1 − 1)², (0.2 − 1)²) = 0.64   (the clip binds)
    #   token 1 moved away from its return: V_clip = 0.9 + clip(−0.9, −0.2, 0.2) = 0.7;
    #     max((0 − 1)², (0.7 − 1)²) = max(1, 0.09) = 1                            (the min would take 0.09)
    #   L = ½ · (0.64 + 1) / 2 = 0.41
    hand = (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.9]]), torch.tensor([[1.0, 1.0]]),
            torch.ones(1, 2), 0.2)
    g = torch.Generator().manual_seed(8)
    old_v = torch.randn(3, 4, generator=g)
    v = old_v + torch.randn(3, 4, generator=g) * 0.5
    ret = old_v + torch.randn(3, 4, generator=g)
    cases = [("hand-made case (ε = 0.2)", hand, torch.tensor(0.41)),
             ("right-padded responses", (v, old_v, ret, MASK, 0.2), None),
             ("values that moved the opposite way from the returns (ε = 0.1)",
              (old_v + (ret - old_v).sign() * -0.3, old_v, ret, MASK, 0.1), None)]
    mistakes = _value_mistakes()
    for case, args, hand_loss in cases:
        want_loss, _ = ppo.value_loss(*(a.clone() if isinstance(a, torch.Tensor) else a for a in args))
        loss, stats = _unpack(call(fn, *args), case, ("loss", "stats"))
        expect(loss, want_loss if hand_loss is None else hand_loss, case, "the loss", mistakes, args)
        if not isinstance(stats, dict):
            raise Hint(f"{case}: the second output should be a dict of stats, got {type(stats).__name__}")
    _check_grad(fn, ppo.value_loss, cases[1][1], "value loss")


def known_mistakes() -> dict[str, list[tuple[str, tuple]]]:
    """exercise -> (hint, what a student who made that mistake hands in) (see logprobs.known_mistakes)."""
    def rewards_with(wrong_rewards=None, wrong_kl=None):
        def student(score, logp, ref_logp, mask, kl_coef):
            rewards, kl = ppo.per_token_rewards(score, logp, ref_logp, mask, kl_coef)
            return (wrong_rewards(score, logp, ref_logp, mask, kl_coef) if wrong_rewards else rewards,
                    wrong_kl(score, logp, ref_logp, mask, kl_coef) if wrong_kl else kl)
        return student

    def loss_with(reference, wrong):   # the wrong loss, the right stats
        return lambda *a: (wrong(*a), reference(*a)[1])

    def detached_inside(logp, old_logp, advantages, mask, clip=0.2):   # right value, wrong gradient
        ratio = (logp - old_logp).exp()
        unclipped, clipped = -advantages * ratio.detach(), -advantages * ratio.clamp(1 - clip, 1 + clip)
        return masked_mean(torch.maximum(unclipped, clipped), mask), ppo.policy_loss(logp, old_logp, advantages,
                                                                                       mask, clip)[1]

    def value_detached_inside(values, old_values, returns, mask, clip=0.2):
        v_clipped = (old_values + (values - old_values).clamp(-clip, clip)).detach()
        loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)
        return loss, ppo.value_loss(values, old_values, returns, mask, clip)[1]

    def policy_k1_stats(logp, old_logp, advantages, mask, clip=0.2):
        loss, stats = ppo.policy_loss(logp, old_logp, advantages, mask, clip)
        return loss, {**stats, "approx_kl": masked_mean(old_logp - logp, mask).item()}

    return {
        "per_token_rewards": [(hint, (rewards_with(wrong_rewards=wrong),)) for hint, wrong in _rewards_mistakes()]
        + [(KL_PADDING_HINT, (rewards_with(wrong_kl=lambda s, lp, rp, m, b: lp - rp),))],
        "gae": [(hint, (wrong,)) for hint, wrong in _gae_mistakes()],
        "policy_loss": [(hint, (loss_with(ppo.policy_loss, wrong),)) for hint, wrong in _policy_mistakes()] + [
            (GRADIENT_HINT, (detached_inside,)), (CUT_OFF_HINT, (lambda *a: (ppo.policy_loss(*a)[0].detach(),
                                                                              ppo.policy_loss(*a)[1]),)),
            (APPROX_KL_HINT, (policy_k1_stats,))],
        "value_loss": [(hint, (loss_with(ppo.value_loss, wrong),)) for hint, wrong in _value_mistakes()] + [
            (GRADIENT_HINT, (value_detached_inside,))],
    }
