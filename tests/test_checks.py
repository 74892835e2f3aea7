"""The exercise checks, tested both ways: a correct implementation passes, known-wrong ones fail
with the hint meant for them, and a blank exercise reports "not implemented yet"."""
import math

import pytest
import torch
import torch.nn.functional as F

from minirlhf.course import checks
from minirlhf.course.checks import core


def blank(*args, **kwargs):
    raise NotImplementedError("not implemented yet")


class BlankController:
    def __init__(self, init, target, horizon):
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, current_kl, n_steps):
        raise NotImplementedError("not implemented yet")


# ---------------------------------------------------------------- student-style implementations

def dpo(chosen, rejected, ref_chosen, ref_rejected, beta, sign=1.0, use_ref=True, use_beta=True, reduce=torch.mean):
    margin = (chosen - ref_chosen * use_ref) - (rejected - ref_rejected * use_ref)
    return -reduce(F.logsigmoid(sign * (beta if use_beta else 1.0) * margin))


def rloo(R, divide_by_g=False, include_self=False):
    G = R.shape[1]
    if include_self:
        return R - R.mean(1, keepdim=True)
    return R - (R.sum(1, keepdim=True) - R) / (G if divide_by_g else G - 1)


def grpo(scores, unbiased=True, eps=1e-4, per_group=True):
    if not per_group:
        return (scores - scores.mean()) / (scores.std() + eps)
    std = scores.std(1, keepdim=True, unbiased=unbiased)
    return (scores - scores.mean(1, keepdim=True)) / (std + eps)


def response_logprobs(logits, input_ids, response_start, response_mask, temperature=1.0, shift=1,
                      use_mask=True, use_temperature=True):
    logits = logits[:, response_start - shift:logits.shape[1] - shift]
    if use_temperature:
        logits = logits / temperature
    logp = logits.log_softmax(-1).gather(2, input_ids[:, response_start:, None]).squeeze(-1)
    return logp * response_mask if use_mask else logp


def sft_loss(logits, input_ids, loss_mask, shift_mask=True, sign=1.0, per_token_mean=True):
    logp = logits[:, :-1].log_softmax(-1).gather(2, input_ids[:, 1:, None]).squeeze(-1)
    mask = (loss_mask[:, 1:] if shift_mask else loss_mask[:, :-1]).float()
    if per_token_mean:
        return -sign * (logp * mask).sum() / mask.sum()
    return -sign * (logp * mask).sum() / mask.numel()


def ranking_to_pairs(ranking):
    return [(ranking[i], ranking[j]) for i in range(len(ranking)) for j in range(i + 1, len(ranking))]


def bradley_terry(r_chosen, r_rejected):
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def score_at_last_token(hidden, attention_mask, head):
    T = attention_mask.shape[1]
    last = T - 1 - attention_mask.flip(1).argmax(1)
    return head(hidden[torch.arange(hidden.shape[0]), last]).squeeze(-1)


def k1(logp, ref_logp):
    return logp - ref_logp


def k2(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2


def k3(logp, ref_logp):
    log_r = ref_logp - logp
    return log_r.exp() - 1 - log_r


class Controller:
    def __init__(self, init, target, horizon):
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, current_kl, n_steps):
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


def per_token_rewards(score, logp, ref_logp, mask, kl_coef, on_last_real=True, mask_kl=True):
    kl = (logp - ref_logp) * (mask if mask_kl else 1)
    rewards = -kl_coef * kl
    last = (mask.shape[1] - 1 - mask.flip(1).argmax(1)) if on_last_real else torch.full_like(score, -1).long()
    rewards[torch.arange(len(score)), last] += score
    return rewards, kl


def gae(rewards, values, mask, gamma=1.0, lam=0.95, stop_at_end=True, backwards=True):
    B, N = rewards.shape
    advantages = torch.zeros_like(rewards)
    last_adv, next_value = torch.zeros(B), torch.zeros(B)
    steps = reversed(range(N)) if backwards else range(N)
    for t in steps:
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_adv = (delta + gamma * lam * last_adv) * mask[:, t]
        advantages[:, t] = last_adv
        next_value = values[:, t] * mask[:, t] if stop_at_end else values[:, t]
    return advantages, (advantages + values) * mask


def policy_loss(logp, old_logp, advantages, mask, clip=0.2, sign=1.0, objective=torch.min, use_mask=True,
                detach=False):
    ratio = torch.exp(logp - old_logp)
    objective_t = objective(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    n = mask.sum() if use_mask else mask.numel()
    loss = -sign * (objective_t * (mask if use_mask else 1)).sum() / n
    if detach:
        loss = loss.detach()
    with torch.no_grad():
        clipfrac = (((ratio - 1).abs() > clip).float() * mask).sum() / mask.sum().clamp(min=1)
        approx_kl = (((ratio - 1) - (logp - old_logp)) * mask).sum() / mask.sum().clamp(min=1)
    return loss, {"clipfrac": clipfrac.item(), "approx_kl": approx_kl.item()}


def clipped_advantages(logp, old_logp, advantages, mask, clip=0.2):
    ratio = torch.exp(logp - old_logp)
    objective = torch.min(ratio * advantages, ratio * advantages.clamp(1 - clip, 1 + clip))
    return -(objective * mask).sum() / mask.sum(), {}


def value_loss(values, old_values, returns, mask, clip=0.2, select=torch.max, half=0.5):
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    per_token = select((values - returns) ** 2, (clipped - returns) ** 2)
    return half * (per_token * mask).sum() / mask.sum(), {}


# ---------------------------------------------------------------- the table of cases

def wrong(fn, **kw):
    def variant(*args, **kwargs):
        return fn(*args, **kwargs, **kw)
    return variant


CASES = {
    # check: (correct objects, [(wrong objects, hint fragment), ...])
    "response_logprobs": (checks.check_response_logprobs, (response_logprobs,), [
        ((wrong(response_logprobs, shift=0),), "forgot to shift by one"),
        ((wrong(response_logprobs, use_mask=False),), "padding positions must be 0"),
        ((wrong(response_logprobs, use_temperature=False),), "forgot the temperature"),
    ]),
    "sft_loss": (checks.check_sft_loss, (sft_loss,), [
        ((wrong(sft_loss, shift_mask=False),), "shift the loss mask"),
        ((wrong(sft_loss, sign=-1.0),), "wrong sign"),
        ((wrong(sft_loss, per_token_mean=False),), "contribute to your mean"),
    ]),
    "ranking_to_pairs": (checks.check_ranking_to_pairs, (ranking_to_pairs,), [
        ((lambda r: [(r[i], r[i + 1]) for i in range(len(r) - 1)],), "only neighbours"),
        ((lambda r: [(b, a) for a, b in ranking_to_pairs(r)],), "(loser, winner)"),
        # on [2, 0] sorting gives the reversed pair: the hint that explains every case wins
        ((lambda r: ranking_to_pairs(sorted(r)),), "you sorted the ranking"),
    ]),
    "bradley_terry_loss": (checks.check_bradley_terry_loss, (bradley_terry,), [
        ((lambda w, lo: F.logsigmoid(w - lo).mean(),), "wrong sign"),
        ((lambda w, lo: -torch.log(torch.sigmoid(w - lo)).mean(),), "logsigmoid"),
        ((lambda w, lo: -F.logsigmoid(w - lo).sum(),), "take the mean"),
    ]),
    "score_at_last_token": (checks.check_score_at_last_token, (score_at_last_token,), [
        ((lambda h, m, head: head(h[:, -1]).squeeze(-1),), "you read the last column"),
        ((lambda h, m, head: head(h[torch.arange(len(h)), m.sum(1) - 1]).squeeze(-1),), "mask.sum() − 1"),
    ]),
    "kl_estimators": (checks.check_kl_estimators, (k1, k2, k3), [
        ((lambda lp, rp: rp - lp, k2, k3), "k1 has the wrong sign"),
        ((k1, lambda lp, rp: (lp - rp) ** 2, k3), "forgot the ½"),
        ((k1, k2, lambda lp, rp: (lp - rp).exp() - 1 - (lp - rp)), "π_ref / π"),
    ]),
    "adaptive_kl": (checks.check_adaptive_kl, (Controller,), [
        ((type("NoClip", (Controller,), {"update": lambda self, kl, n: setattr(
            self, "value", self.value * (1 + (kl / self.target - 1) * n / self.horizon))}),), "not clipped"),
        ((type("Backwards", (Controller,), {"update": lambda self, kl, n: setattr(
            self, "value", self.value * (1 - max(-0.2, min(0.2, kl / self.target - 1)) * n / self.horizon))}),),
         "wrong way"),
        ((type("Additive", (Controller,), {"update": lambda self, kl, n: setattr(
            self, "value", self.value + max(-0.2, min(0.2, kl / self.target - 1)) * n / self.horizon)}),),
         "you added e · n / horizon"),
        ((type("NoHorizon", (Controller,), {"update": lambda self, kl, n: setattr(
            self, "value", self.value * (1 + max(-0.2, min(0.2, kl / self.target - 1))))}),), "forgot n_steps / horizon"),
    ]),
    "per_token_rewards": (checks.check_per_token_rewards, (per_token_rewards,), [
        ((wrong(per_token_rewards, on_last_real=False),), "on the last column"),
        ((lambda s, lp, rp, m, b: per_token_rewards(s, lp, rp, m, 1.0),), "KL coefficient"),
        ((wrong(per_token_rewards, mask_kl=False),), "padding positions"),
    ]),
    "gae": (checks.check_gae, (gae,), [
        ((wrong(gae, stop_at_end=False),), "did not stop GAE at the end of the response"),
        ((wrong(gae, backwards=False),), "backwards in time"),
        ((lambda r, v, m, g, lam: (gae(r, v, m, g, lam)[0], gae(r, v, m, g, lam)[0] + v),), "nonzero returns"),
    ]),
    "policy_loss": (checks.check_policy_loss, (policy_loss,), [
        ((wrong(policy_loss, sign=-1.0),), "wrong sign"),
        ((wrong(policy_loss, objective=torch.max),), "optimistic"),
        ((wrong(policy_loss, use_mask=False),), "padding positions contribute to your mean"),
        ((wrong(policy_loss, detach=True),), "cut off from autograd"),
        ((lambda lp, olp, a, m, c: policy_loss(lp, olp, a, m, 1e9),), "you forgot to clip the ratio"),
        ((clipped_advantages,), "clip the ratio ρ_t to [1 − ε, 1 + ε], not the advantages"),
    ]),
    "dpo_loss": (checks.check_dpo_loss, (dpo,), [
        ((lambda c, r, rc, rr, b: dpo(rc, rr, c, r, b),), "wrong way round"),
        ((lambda c, r, rc, rr, b: dpo(c, r, rc, rr, b, sign=-1.0),), "rejected answer with the chosen one"),
        ((lambda c, r, rc, rr, b: dpo(c, r, rc, rr, b, use_beta=False),), "forgot β"),
        ((lambda c, r, rc, rr, b: dpo(c, r, rc, rr, b, use_ref=False),), "left out the reference model"),
        ((lambda c, r, rc, rr, b: dpo(c, r, rc, rr, b, reduce=torch.sum),), "summed over pairs"),
        ((lambda c, r, rc, rr, b: -torch.log(torch.sigmoid(b * ((c - rc) - (r - rr)))).mean(),), "F.logsigmoid"),
        ((lambda c, r, rc, rr, b: dpo(c.detach(), r, rc, rr, b),), "cut off from autograd"),
    ]),
    "group_advantages": (checks.check_group_advantages, (rloo, grpo), [
        ((lambda R: rloo(R, include_self=True), grpo), "includes the answer itself"),
        ((lambda R: rloo(R, divide_by_g=True), grpo), "there are G − 1 other answers"),
        ((lambda R: R - (R.sum(0, keepdim=True) - R) / (R.shape[0] - 1), grpo), "averaged over the prompts"),
        ((rloo, lambda s: s - s.mean(1, keepdim=True)), "did not divide by the group's standard deviation"),
        ((rloo, lambda s: grpo(s, unbiased=False)), "population std"),
        ((rloo, lambda s: grpo(s, per_group=False)), "over the whole batch"),
        ((rloo, lambda s: grpo(s, eps=0.0)), "add ε = 1e-4"),
    ]),
    "value_loss": (checks.check_value_loss, (value_loss,), [
        ((wrong(value_loss, select=torch.min),), "not the min"),
        ((wrong(value_loss, half=1.0),), "forgot the ½"),
        ((lambda v, ov, r, m, c: value_loss(v, ov, r, m, 1e9),), "not clipped around the OLD values"),
        ((lambda v, ov, r, m, c: value_loss(v, r, r, m, c),), "not clipped around the OLD values"),   # around R
    ]),
}


@pytest.mark.parametrize("exercise", sorted(CASES))
def test_correct_implementation_passes(exercise, capsys):
    check, correct, _ = CASES[exercise]
    result = check(*correct)
    assert result.passed, result.message
    assert result.points == core.POINTS[exercise]
    assert "PASSED" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", sorted(CASES))
def test_wrong_implementations_get_the_intended_hint(exercise):
    check, _, wrongs = CASES[exercise]
    assert len(wrongs) >= 2
    for objects, hint in wrongs:
        result = check(*objects)
        assert result.status == "failed" and result.points == 0
        assert hint in result.message, f"expected {hint!r} in {result.message!r}"


@pytest.mark.parametrize("exercise", sorted(CASES))
def test_blank_exercise_says_not_implemented(exercise, capsys):
    check, correct, _ = CASES[exercise]
    blanks = tuple(BlankController if isinstance(obj, type) else blank for obj in correct)
    result = check(*blanks)
    assert result.status == "not implemented" and result.points == 0
    assert "not implemented yet" in capsys.readouterr().out


def test_every_exercise_has_points_and_a_check():
    assert set(CASES) | {"ppo_training"} == set(core.POINTS)
    assert all(p > 0 for p in core.POINTS.values())


def test_a_crash_in_student_code_is_reported_not_raised():
    result = checks.check_gae(lambda *a: 1 / 0)
    assert result.status == "error" and "ZeroDivisionError" in result.message and result.points == 0


def test_passing_the_package_reference_is_refused():
    from minirlhf.ppo import gae as reference
    assert "your own implementation" in checks.check_gae(reference).message


def test_while_grading_a_check_only_hands_the_function_to_the_grader(monkeypatch):
    from minirlhf.course import worker
    monkeypatch.setenv(core.GRADING_ENV, "1")
    monkeypatch.setattr(worker, "registered", {})
    result = checks.check_gae(lambda *a: 1 / 0)   # not run here: the grader runs it from outside
    assert result.status == "submitted" and result.points == 0
    assert list(worker.registered) == ["gae"]


def test_hand_values_are_right():
    # the hand-computed answers the checks quote, against the package
    from minirlhf.reward import bradley_terry_loss
    assert math.isclose(bradley_terry_loss(torch.tensor([1.0]), torch.tensor([1.0])).item(), math.log(2),
                        rel_tol=1e-6)


# ---------------------------------------------------------------- the PPO-loop check, without training

def fake_run_ppo(rm_scores, use_functions=True, kl=0.5, calls_per_step=1):
    """Stands in for the student's run_ppo: calls each function once per step (or `calls_per_step` · steps times
    in all, rounded up), returns a made-up history."""
    def run_ppo(pipe, functions):
        for _ in range(math.ceil(len(rm_scores) * calls_per_step) if use_functions else 0):
            mask = torch.ones(2, 3)
            rewards, _ = functions["per_token_rewards"](torch.ones(2), torch.zeros(2, 3), torch.zeros(2, 3), mask, 0.1)
            adv, ret = functions["gae"](rewards, torch.zeros(2, 3), mask, 1.0, 0.95)
            functions["policy_loss"](torch.zeros(2, 3), torch.zeros(2, 3), adv, mask, 0.2)
            functions["value_loss"](torch.zeros(2, 3), torch.zeros(2, 3), ret, mask, 0.2)
        # at the first rollout the policy is the reference: KL 0
        return [{"rm_score": s, "gold_score": 0.5, "kl": kl if i else 0.0, "first_approx_kl": 0.0}
                for i, s in enumerate(rm_scores)]
    return run_ppo


FUNCTIONS = {"per_token_rewards": per_token_rewards, "gae": gae, "policy_loss": policy_loss,
             "value_loss": value_loss}


def test_ppo_training_check_passes_when_the_reward_rises():
    result = checks.check_ppo_training(fake_run_ppo([-0.1, 0.0, 0.1, 0.2, 0.3, 0.4]), None, FUNCTIONS)
    assert result.passed, result.message
    assert len(result.data["history"]) == 6


@pytest.mark.parametrize("run_ppo, functions, hint", [
    (fake_run_ppo([0.0] * 6, use_functions=False), FUNCTIONS, "never called your"),
    (fake_run_ppo([0.3, 0.2, 0.1, 0.0, -0.1, -0.2]), FUNCTIONS, "did not rise"),
    (fake_run_ppo([0.0, 0.1, 0.2, 0.3], kl=0.0), FUNCTIONS, "never moved away"),
    # a cached run's history, with each function called once to look used
    (fake_run_ppo([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], calls_per_step=1 / 6), FUNCTIONS, "returned a history of 6 steps"),
    (fake_run_ppo([0.0] * 6), {**FUNCTIONS, "gae": wrong(gae, stop_at_end=False)}, "your gae does not pass"),
])
def test_ppo_training_check_names_the_problem(run_ppo, functions, hint):
    result = checks.check_ppo_training(run_ppo, None, functions)
    assert result.status == "failed" and hint in result.message, result.message


def test_ppo_training_check_blank():
    assert checks.check_ppo_training(blank, None, FUNCTIONS).status == "not implemented"
    blank_functions = {**FUNCTIONS, "policy_loss": blank}
    assert checks.check_ppo_training(fake_run_ppo([0.0] * 6), None, blank_functions).status == "not implemented"


# ---------------------------------------------------------------- the PPO-loop check on real PPO runs: wiring

def wired(policy="sft", reference="sft", value="reward model", same_object=False):
    """A student's run_ppo that builds its models from these stages (4 short PPO steps)."""
    import dataclasses

    from minirlhf.reward import RewardModel
    from minirlhf.rlhf import train_ppo, value_model_from_reward_model

    def run_ppo(pipe, functions):
        pol = pipe.model(policy)
        ref = pol if same_object else pipe.model(reference)
        rm = pipe.model("reward")
        value_model = value_model_from_reward_model(rm) if value == "reward model" else \
            RewardModel.from_language_model(pipe.model("sft"))   # an untrained head
        cfg = dataclasses.replace(pipe.settings.ppo, steps=4, batch_size=8, minibatch_size=4)
        return train_ppo(pol, ref, rm, value_model, pipe.tokenizer, pipe.requests("rl"), cfg, functions=functions)
    return run_ppo


@pytest.mark.parametrize("run_ppo, hint", [
    (wired(policy="base"), "the policy and the reference differ before training"),
    (wired(reference="base"), "the policy and the reference differ before training"),
    (wired(value="untrained head"), "your value model did not start from the reward model"),
    (wired(same_object=True), "the policy and the reference are one model object"),
], ids=["policy from the base model", "reference from the base model", "untrained value head", "one object"])
def test_ppo_training_check_catches_wiring_mistakes(run_ppo, hint):
    from minirlhf.pipeline import Pipeline
    result = checks.check_ppo_training(run_ppo, Pipeline(), FUNCTIONS)
    assert result.status in ("failed", "error") and hint in result.message, result.message
