"""Checks for the exercises: each takes the student's function, prints a pass or a hint that names
the mistake, and returns a `CheckResult` (logged for the grader, see `core`).

    from minirlhf.course.checks import check_gae
    check_gae(gae)
"""
from .after_ppo import cases_dpo_loss, cases_group_advantages, check_dpo_loss, check_group_advantages
from .core import EXERCISES, POINTS, CheckResult, assert_all_passed
from .kl import cases_adaptive_kl, cases_kl_estimators, check_adaptive_kl, check_kl_estimators
from .logprobs import cases_response_logprobs, cases_sft_loss, check_response_logprobs, check_sft_loss
from .ppo import (cases_gae, cases_per_token_rewards, cases_policy_loss, cases_value_loss, check_gae,
                  check_per_token_rewards, check_policy_loss, check_value_loss)
from .reward import (cases_bradley_terry_loss, cases_ranking_to_pairs, cases_score_at_last_token,
                     check_bradley_terry_loss, check_ranking_to_pairs, check_score_at_last_token)
from .rlhf import cases_ppo_training, check_ppo_training

# exercise -> the function that runs its cases on the objects its check cell received (the grader's entry)
CASES = {
    "response_logprobs": cases_response_logprobs, "sft_loss": cases_sft_loss,
    "ranking_to_pairs": cases_ranking_to_pairs, "bradley_terry_loss": cases_bradley_terry_loss,
    "score_at_last_token": cases_score_at_last_token,
    "kl_estimators": cases_kl_estimators, "adaptive_kl": cases_adaptive_kl,
    "per_token_rewards": cases_per_token_rewards, "gae": cases_gae, "policy_loss": cases_policy_loss,
    "value_loss": cases_value_loss, "ppo_training": cases_ppo_training,
    "dpo_loss": cases_dpo_loss, "group_advantages": cases_group_advantages,
}



def known_mistakes() -> dict[str, list[tuple[str, tuple]]]:
    """exercise -> [(hint, what a student who made that mistake hands in)], every mistake a check names, in
    the course's order (exercise 4.5's wiring mistakes are checked on real PPO runs: tests/test_checks.py)."""
    from . import after_ppo, kl, logprobs, ppo, reward
    found = {}
    for module in (logprobs, reward, kl, ppo, after_ppo):
        found.update(module.known_mistakes())
    return {name: found[name] for name in EXERCISES if name in found}


def mistakes_table() -> str:
    """INSTRUCTORS.md's table of the mistakes each check names, made from `known_mistakes` (a test keeps
    the two the same): each mistake by its hint's first clause (the whole hint where two share it)."""
    from ..grading import labels
    short = labels()
    rows = ["| exercise | mistakes named (each one's hint, up to its colon) |", "| --- | --- |"]
    for name, mistakes in known_mistakes().items():
        hints = list(dict.fromkeys(hint for hint, _ in mistakes))
        firsts = [hint.split(":")[0] for hint in hints]
        # a first clause two hints share (k3 is (r − 1) − log r: ...) is not enough to tell them apart
        clauses = [first if firsts.count(first) == 1 else hint for first, hint in zip(firsts, hints)]
        rows.append(f"| {short[name]} {EXERCISES[name][1]} | {'; '.join(clauses)} |")
    return "\n".join(rows)


__all__ = ["CASES", "EXERCISES", "POINTS", "CheckResult", "assert_all_passed",
           "check_response_logprobs", "check_sft_loss",
           "check_ranking_to_pairs", "check_bradley_terry_loss", "check_score_at_last_token",
           "check_kl_estimators", "check_adaptive_kl",
           "check_per_token_rewards", "check_gae", "check_policy_loss", "check_value_loss",
           "check_ppo_training", "check_dpo_loss", "check_group_advantages"]
