"""Moved to `minirlhf.course.checks`. This name keeps exercises already handed out working for one
release; it will be removed in the next."""
import sys
import warnings

from ..course import checks as _checks
from ..course.checks import *  # noqa: F401,F403
from ..course.checks import core, kl, logprobs, ppo, reward, rlhf

warnings.warn("minirlhf.checks moved to minirlhf.course.checks: change the import "
              "(`from minirlhf.course.checks import ...`); the old name goes in the next release",
              FutureWarning, stacklevel=2)
for _name in ("core", "kl", "logprobs", "ppo", "reward", "rlhf"):   # `from minirlhf.checks.core import ...` too
    sys.modules[f"{__name__}.{_name}"] = getattr(_checks, _name)
__all__ = _checks.__all__
