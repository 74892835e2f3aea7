"""Check for the last exercise: the student's functions drive the real PPO loop (rlhf.train_ppo)."""
from __future__ import annotations

from ..remote import Remote
from .core import CheckResult, Hint, fmt, refuse_reference, run_check
from .ppo import cases_gae, cases_per_token_rewards, cases_policy_loss, cases_value_loss

START_KL_HINT = "the policy and the reference differ before training: their KL must be exactly 0"
VALUE_HINT = "your value model did not start from the reward model"

FUNCTION_CASES = {"per_token_rewards": cases_per_token_rewards, "gae": cases_gae,
                  "policy_loss": cases_policy_loss, "value_loss": cases_value_loss}


def check_ppo_training(run_ppo, pipe, functions: dict) -> CheckResult:
    """Check `run_ppo(pipe, functions) -> history` (the list of dicts `train_ppo` returns).

    The student's four PPO functions must pass their own checks first; then the loop must call
    every one of them, and the reward model's score must rise. `result.data["history"]` holds
    the history for plotting.
    """
    data: dict = {}
    return run_check("ppo_training", lambda *objects: cases_ppo_training(*objects, data=data), run_ppo, pipe,
                     functions, data=data)


def counted_ppo(run_ppo, pipe, functions: dict) -> dict:
    """Call `run_ppo(pipe, functions)` with each function's calls counted: {"history": ..., "counts": {name: n}}.
    (While grading, the student's kernel runs this: worker.py.)"""
    counts = {name: 0 for name in functions}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    return {"history": run_ppo(pipe, {name: counting(name, fn) for name, fn in functions.items()}), "counts": counts}


def _half_means(history, key):
    n = len(history) // 2
    return sum(h[key] for h in history[:n]) / n, sum(h[key] for h in history[-n:]) / n


def cases_ppo_training(run_ppo, pipe, functions: dict, data: dict | None = None) -> None:
    """Run the student's PPO and judge the history it returns."""
    data = {} if data is None else data
    if not isinstance(functions, dict) or set(functions) != set(FUNCTION_CASES):
        raise Hint(f"`functions` must be a dict with exactly the keys {sorted(FUNCTION_CASES)}")
    for name, cases in FUNCTION_CASES.items():
        refuse_reference(functions[name])
        try:
            cases(functions[name])
        except Hint as hint:
            raise Hint(f"your {name} does not pass its own check yet ({hint}): fix that exercise first")

    # graded: the student's functions live in their kernel, and so does the counting (worker.py)
    ran = run_ppo.counted_ppo(pipe, functions) if isinstance(run_ppo, Remote) else counted_ppo(run_ppo, pipe, functions)
    history, counts = ran["history"], ran["counts"]
    if not (isinstance(history, list) and history and all(isinstance(h, dict) for h in history)):
        raise Hint("run_ppo must return the history from train_ppo: a list with one dict per PPO step")
    data["history"] = history
    unused = [name for name, n in counts.items() if n == 0]
    if unused:
        raise Hint(f"train_ppo never called your {', '.join(unused)}: pass functions=functions to it, "
                   "otherwise it runs the package's own versions")
    if len(history) < 4:
        raise Hint(f"only {len(history)} PPO steps: run at least 4 (pipe.settings.ppo.steps) to see a trend")
    # each PPO step calls every one of the four functions at least once: a history with more steps than that
    # was not made by these functions (a cached run's history, say)
    few = [f"{name} {n}" for name, n in counts.items() if n < len(history)]
    if few:
        raise Hint(f"your run_ppo returned a history of {len(history)} steps, but called {', '.join(few)} times: "
                   "return the history of the training your functions drove")

    # At the first rollout nothing has been trained: the policy IS the reference, so their KL is exactly 0
    # (a policy or a reference built from the base model instead of the SFT model starts about 5 nats away)
    rollout_kl = history[0].get("kl", 0.0)
    if abs(rollout_kl) > 1e-4:
        raise Hint(f"{START_KL_HINT}: it is {fmt(rollout_kl)} nats at the first rollout, before any update. Build "
                   "both the policy and the reference from the SFT model (pipe.model('sft'), twice)")
    if history[0].get("value_from_reward_model", 1.0) == 0.0:
        raise Hint(f"{VALUE_HINT}: build it with value_model_from_reward_model(pipe.model('reward')); an untrained "
                   "head makes the first advantages noise")
    # PPO's invariant: on the first minibatch π_θ = π_old, so the ratio is 1 and approx-KL is 0
    first_kl = history[0].get("first_approx_kl", 0.0)
    if abs(first_kl) > 1e-4:
        raise Hint(f"approx-KL on the very first minibatch is {fmt(first_kl)}, not 0: the policy must "
                   "start as the model that sampled the rollout (build it from the SFT model, dropout off)")
    start, end = _half_means(history, "rm_score")
    gold_start, gold_end = _half_means(history, "gold_score")
    kl = history[-1]["kl"]
    data["message"] = (f"mean reward-model score {start:+.3f} over the first half of the steps, {end:+.3f} "
                       f"over the second; gold score {gold_start:.3f} → {gold_end:.3f}; KL to the reference "
                       f"{kl:.3f} nats after {len(history)} steps")
    if kl <= 0:
        raise Hint(f"the KL to the reference is {fmt(kl)} after training: the policy never moved away from it. "
                   "Is the learning rate 0, or does the optimizer step another model than the policy?")
    # The reward model is normalised so that the SFT policy scores 0 on average on these prompts:
    # a policy that learned something scores above 0, and above where it started.
    if not (end > 0 or end > start):
        raise Hint(f"the reward-model score did not rise ({start:+.3f} over the first half of the steps, "
                   f"{end:+.3f} over the second; the SFT policy scores 0 on average): are the advantages "
                   "of the right sign, and is the policy the model being optimised?")
