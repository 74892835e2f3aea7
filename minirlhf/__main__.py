"""Command line.

    python -m minirlhf run [--fast] [--out DIR] [--seed N] [--algorithms A ...] [--frontier]
                                                               train and evaluate every stage, write a report
    python -m minirlhf lessons [--setting S] [--seeds 0 1 2]   measure every lesson the course teaches
    python -m minirlhf grade SUBMISSIONS [--timeout S]         grade a folder of exercise notebooks
    python -m minirlhf make-exercises                          regenerate exercises/ from solutions/
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "grade":
        from .course.grading import main as grade_main

        return grade_main(argv[1:])
    if argv and argv[0] == "lessons":
        from .course.lessons import main as lessons_main

        return lessons_main(argv[1:])
    if argv and argv[0] == "make-exercises":
        from .course.exercises import main as exercises_main

        return exercises_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .pipeline.main import run

    run(args.setting or ("fast" if args.fast else None), args.out, args.seed, args.device, args.algorithms,
        frontier=True if args.frontier else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .pipeline.registry import ALIASES, algorithms
    from .settings import PRESETS

    parser = argparse.ArgumentParser(prog="minirlhf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train base → SFT → reward model → RLHF and write a report")
    p_run.add_argument("--fast", action="store_true", help="the fast setting (tests, CI): a few minutes on a CPU")
    p_run.add_argument("--setting", choices=sorted(PRESETS), help="overrides --fast and the environment")
    p_run.add_argument("--out", help="output folder (default: runs/<setting>)")
    p_run.add_argument("--seed", type=int, default=None)
    p_run.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p_run.add_argument("--algorithms", nargs="+", choices=algorithms() + list(ALIASES), metavar="ALGORITHM",
                       help=f"registered algorithms to train and evaluate (default: all: {' '.join(algorithms())}; "
                            + ", ".join(f"{k} = {v}" for k, v in ALIASES.items()) + ")")
    p_run.add_argument("--frontier", action="store_true",
                       help="also train the runs of notebook 09's gold-versus-KL frontier and plot it (on by "
                            "default in the fast and gpu settings; about an hour more in the default one)")
    sub.add_parser("grade", help="grade a folder of submitted exercise notebooks (see --help of the subcommand)")
    sub.add_parser("lessons",
                   help="the lessons ledger: every lesson as a measured claim (see --help of the subcommand)")
    sub.add_parser("make-exercises", help="regenerate exercises/ from solutions/")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
