"""The machinery every exercise check shares: the point table, the result, the hints.

A check runs the student's function on small hand-made cases, compares it with the package's
reference and with values computed by hand, and on a mismatch tries the mistakes people
usually make (wrong sign, no shift, padding in the mean...) to name the one that was made.

In a notebook the check runs right there and prints its verdict. When the grader runs the notebook
($MINIRLHF_GRADING set), a check cell only hands the student's objects to the grader
(`worker.register`); the grader then runs the same cases from its own process, calling the student's
functions in their kernel (remote.py), so nothing the notebook does can change a verdict.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field

import torch

# The one place points are declared: exercise id -> (notebook, title, points, expected minutes).
EXERCISES = {
    "response_logprobs":   ("01_logprobs_and_sft", "Masked log-probs of the response tokens", 10, 20),
    "sft_loss":            ("01_logprobs_and_sft", "SFT loss with the prompt masked", 10, 15),
    "ranking_to_pairs":    ("02_reward_model", "Rankings to pairs", 5, 10),
    "bradley_terry_loss":  ("02_reward_model", "Bradley-Terry loss", 10, 10),
    "score_at_last_token": ("02_reward_model", "Reward head read at the last real token", 10, 15),
    "kl_estimators":       ("03_kl", "KL estimators k1, k2, k3", 10, 15),
    "adaptive_kl":         ("03_kl", "Adaptive KL controller", 10, 10),
    "per_token_rewards":   ("04_ppo", "KL-penalised per-token rewards", 10, 15),
    "gae":                 ("04_ppo", "Generalized Advantage Estimation", 15, 25),
    "policy_loss":         ("04_ppo", "Clipped PPO objective", 15, 20),
    "value_loss":          ("04_ppo", "Clipped value loss", 10, 10),
    "ppo_training":        ("04_ppo", "Your functions in the real PPO loop", 15, 15),
    "dpo_loss":            ("05_dpo_and_group_baselines", "The DPO loss", 10, 15),
    "group_advantages":    ("05_dpo_and_group_baselines", "Group-relative advantages: RLOO and GRPO", 10, 15),
}
POINTS = {name: spec[2] for name, spec in EXERCISES.items()}

GRADING_ENV = "MINIRLHF_GRADING"   # set by the grader in the kernels it starts
NOT_IMPLEMENTED = "not implemented yet"

# Results of the checks run in this Python session, in order (read by `assert_all_passed`).
session_results: list["CheckResult"] = []


class Hint(Exception):
    """A check failed; the message tells the student what is wrong and where to look."""


@dataclass
class CheckResult:
    exercise: str
    status: str       # "passed", "failed", "not implemented", "error" (the code raised), "timeout",
                      # "not run" (no check cell ran) or "submitted" (handed to the grader)
    message: str
    points: float
    max_points: float
    data: dict = field(default_factory=dict, repr=False)  # what a check measured, e.g. a PPO history

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        mark = {"passed": "PASSED", "failed": "FAILED", "not implemented": "TODO", "error": "ERROR",
                "timeout": "TIMEOUT", "not run": "NOT RUN", "submitted": "SUBMITTED"}[self.status]
        return f"[{mark}] {EXERCISES[self.exercise][1]} ({self.points:g}/{self.max_points:g} points): {self.message}"

    def _ipython_display_(self):
        pass  # the check already printed the result; do not show it a second time as Out[...]


def record(result: CheckResult) -> CheckResult:
    """Print the result for the student and keep it for `assert_all_passed`."""
    print(result)
    session_results.append(result)
    return result


def run_check(exercise: str, body, *student_objects, data: dict | None = None) -> CheckResult:
    """Run `body(*student_objects)`; a Hint or an exception from the student's code is a failure.

    `data`, if given, is a dict the body fills with what it measured; it ends up in `result.data`.
    While grading, the objects go to the grader instead, which runs `judge` on them.
    """
    if os.environ.get(GRADING_ENV):
        from ..worker import register
        register(exercise, *student_objects)
        return record(CheckResult(exercise, "submitted", "handed to the grader, which runs this check after the "
                                  "notebook", 0, POINTS[exercise]))
    return record(judge(exercise, body, *student_objects, data=data))


def judge(exercise: str, body, *student_objects, data: dict | None = None) -> CheckResult:
    """The verdict of `body(*student_objects)`, printed nowhere (`run_check` prints it; the grader tables it)."""
    from ..remote import KernelGone, ReferenceUsed, StudentError
    data = {} if data is None else data
    max_points = POINTS[exercise]

    def result(status: str, message: str) -> CheckResult:
        return CheckResult(exercise, status, message, max_points if status == "passed" else 0, max_points, data)

    try:
        for obj in student_objects:
            refuse_reference(obj)
        body(*student_objects)
    except NotImplementedError:
        return result("not implemented", NOT_IMPLEMENTED)
    except Hint as hint:
        return result("failed", str(hint))
    except ReferenceUsed as e:
        return result("failed", f"your code called the package's {e}, the reference this exercise asks you to "
                                "write: 0 points")
    except KernelGone as e:
        return result("timeout" if "Timeout" in str(e) or "no time" in str(e) else "error",
                      f"the notebook's kernel stopped answering ({e})")
    except StudentError as e:   # raised in the student's kernel
        return result("error", f"your code raised {e}")
    except Exception as e:  # the student's code crashed on one of our inputs: say which error and where
        where = traceback.extract_tb(e.__traceback__)[-1]
        return result("error", f"your code raised {type(e).__name__}: {e} (in {where.name}, line {where.lineno})")
    return result("passed", data.pop("message", "all cases match"))


def refuse_reference(obj) -> None:
    """The package's reference is not the student's work (and would make every check trivial)."""
    from ..remote import Remote
    if isinstance(obj, Remote):   # in the kernel, the reference is a tripwire while its exercise is checked
        return
    if callable(obj) and getattr(obj, "__module__", "").startswith("minirlhf."):
        raise Hint(f"pass your own implementation, not {obj.__module__}.{obj.__name__}")


def assert_all_passed() -> None:
    """Raise if any check of this session did not pass (the last cell of every solution notebook)."""
    latest = {r.exercise: r for r in session_results}
    if os.environ.get(GRADING_ENV):
        print(f"{len(latest)} exercises handed to the grader")
        return
    bad = [str(r) for r in latest.values() if not r.passed]
    if bad:
        raise AssertionError("some checks did not pass:\n" + "\n".join(bad))
    print(f"all {len(latest)} checks passed")


# ---------------------------------------------------------------- comparing and diagnosing

def clone(x):
    """Fresh copies of tensor inputs, so a function that edits its inputs in place cannot
    change what the reference or the next call sees."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    return x


def call(fn, *args, **kwargs):
    return fn(*(clone(a) for a in args), **{k: clone(v) for k, v in kwargs.items()})


def close(got, want, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Same shape and the same values (NaN and Inf must match exactly)."""
    try:
        got = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got, dtype=torch.float64)
        want = torch.as_tensor(want.detach() if isinstance(want, torch.Tensor) else want, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    return got.shape == want.shape and torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True)


def diagnose(got, mistakes, args, kwargs=None, pick=lambda out: out) -> str | None:
    """The hint of the first known mistake that reproduces `got` on these inputs, if any.

    `mistakes` is a list of (hint, wrong_function) pairs; `pick` selects the part of a wrong
    function's output to compare (e.g. the advantages of (advantages, returns)).
    """
    for hint, wrong in mistakes:
        try:
            if close(got, pick(call(wrong, *args, **(kwargs or {})))):
                return hint
        except Exception:  # a wrong variant that cannot run on this case says nothing
            continue
    return None


def fmt(x) -> str:
    """A short, readable rendering of a tensor or number for a hint: small tensors keep their nesting
    (their shape shows), larger ones are named by their shape."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.numel() > 24:
            return f"a tensor of shape {tuple(x.shape)}"

        def rounded(v):
            return [rounded(u) for u in v] if isinstance(v, list) else round(v, 4)
        return str(rounded(x.double().tolist()))
    if isinstance(x, float):
        return f"{x:.4f}"
    return repr(x)


def inputs(args, kwargs=None) -> str:
    """The case's inputs, for a hint that cannot name the mistake."""
    shown = [fmt(a) for a in args] + [f"{k}={fmt(v)}" for k, v in (kwargs or {}).items()]
    return "(" + ", ".join(shown) + ")"


def expect(got, want, case: str, what: str, mistakes=(), args=(), kwargs=None,
           pick=lambda out: out, atol: float = 1e-5) -> None:
    """Raise a Hint unless `got` matches `want`: name the shape error or the known mistake."""
    if not isinstance(got, (torch.Tensor, float, int)):
        raise Hint(f"{case}: {what} should be a tensor or a number, got {type(got).__name__}")
    got_t = torch.as_tensor(got)
    want_t = torch.as_tensor(want)
    if got_t.shape != want_t.shape:
        hint = diagnose(got, mistakes, args, kwargs, pick)
        raise Hint(f"{case}: {what} has shape {tuple(got_t.shape)}, expected {tuple(want_t.shape)}"
                   + (f". Hint: {hint}" if hint else ""))
    if close(got, want, atol=atol):
        return
    hint = diagnose(got, mistakes, args, kwargs, pick)
    if hint:
        raise Hint(f"{case}: {hint}")
    raise Hint(f"{case}: {what} is {fmt(got)}, expected {fmt(want)}"
               + (f"; the inputs were {inputs(args, kwargs)}" if args else ""))
