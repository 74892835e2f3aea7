"""Checks for the exercises: each takes the student's function, prints a pass or a hint that names
the mistake, and returns a `CheckResult` (logged for the grader, see `core`).

    from minirlhf.course.checks import check_gae
    check_gae(gae)
"""
from .after_ppo import check_dpo_loss, check_group_advantages
from .core import EXERCISES, POINTS, CheckResult, assert_all_passed
from .kl import check_adaptive_kl, check_kl_estimators
from .logprobs import check_response_logprobs, check_sft_loss
from .ppo import check_gae, check_per_token_rewards, check_policy_loss, check_value_loss
from .reward import check_bradley_terry_loss, check_ranking_to_pairs, check_score_at_last_token
from .rlhf import check_ppo_training

__all__ = ["EXERCISES", "POINTS", "CheckResult", "assert_all_passed",
           "check_response_logprobs", "check_sft_loss",
           "check_ranking_to_pairs", "check_bradley_terry_loss", "check_score_at_last_token",
           "check_kl_estimators", "check_adaptive_kl",
           "check_per_token_rewards", "check_gae", "check_policy_loss", "check_value_loss",
           "check_ppo_training", "check_dpo_loss", "check_group_advantages"]
