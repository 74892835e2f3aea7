"""Moved to `minirlhf.course.exercises`. This name keeps old scripts working for one release; it will be
removed in the next."""
import warnings

from .course.exercises import *  # noqa: F401,F403
from .course.exercises import main  # noqa: F401

warnings.warn("minirlhf.exercises moved to minirlhf.course.exercises: change the import; the old name goes in the "
              "next release", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    raise SystemExit(main())
