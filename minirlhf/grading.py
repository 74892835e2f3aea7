"""Moved to `minirlhf.course.grading`. This name keeps old scripts working for one release; it will be
removed in the next."""
import warnings

from .course.grading import *  # noqa: F401,F403
from .course.grading import main  # noqa: F401

warnings.warn("minirlhf.grading moved to minirlhf.course.grading: change the import; the old name goes in the "
              "next release", FutureWarning, stacklevel=2)

if __name__ == "__main__":
    raise SystemExit(main())
