"""Command line.

    python -m minirlhf run [--fast] [--out DIR] [--seed N] [--algorithms A ...] [--frontier] [--jobs N]
                                                               train and evaluate every stage, write a report
    python -m minirlhf lessons [--setting S] [--seeds 0 1 2] [--reruns 0 1 2] [--jobs N]
                                                               measure every lesson the course teaches
    python -m minirlhf repair [STAGE ...] [--setting S]         check cached stages, rebuild damaged ones
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
    parser = build_parser()
    args = parser.parse_args(argv)
    from .pipeline.arguments import resolve

    settings, out_dir = resolve(parser, args.setting or ("fast" if args.fast else None), args.seed, args.out)
    if args.command == "repair":
        from .pipeline.registry import STAGES

        unknown = [n for n in args.stages if n not in STAGES]
        if unknown:
            parser.error(f"no stage named {', '.join(unknown)}; registered stages: {', '.join(STAGES)}")
        return repair(settings, out_dir, args.device, args.stages)
    from .pipeline.main import run

    run(settings, out_dir, device=args.device, algorithm_names=args.algorithms,
        frontier=True if args.frontier else None, jobs=args.jobs)
    return 0


def repair(settings, out_dir, device, names: list[str]) -> int:
    """Check the named stages (default: every registered stage in the cache) and rebuild the damaged ones,
    with every stage downstream of them that no longer matches."""
    from .pipeline import Pipeline, cache
    from .pipeline.registry import STAGES

    pipe = Pipeline(settings, out_dir, device, repair=True)
    cache.remove_leftovers(pipe.out_dir)
    names = names or [n for n in STAGES if cache.is_finished(pipe.path(n))]
    for name in names:
        pipe.stage_dir(name)
    rebuilt = [n for n in pipe.used if n in pipe.built]
    print(f"[minirlhf] repair: {len(pipe.used)} stage(s) of {pipe.out_dir} checked; "
          + (f"rebuilt {', '.join(rebuilt)}" if rebuilt else "every one is sound"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .pipeline import arguments
    from .pipeline.registry import ALIASES, STAGES, algorithms
    from .settings import PRESETS

    parser = argparse.ArgumentParser(prog="minirlhf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train base → SFT → reward model → RLHF and write a report")
    p_repair = sub.add_parser("repair", help="check the cached stages, rebuild damaged ones and what depends on them")
    p_repair.add_argument("stages", nargs="*", metavar="STAGE",
                          help=f"stages to check (default: every one in the cache): {', '.join(STAGES)}")
    for p in (p_run, p_repair):
        p.add_argument("--fast", action="store_true", help="the fast setting (tests, CI): a few minutes on a CPU")
        p.add_argument("--setting", choices=sorted(PRESETS), help="overrides --fast and the environment")
        p.add_argument("--out", help="output folder (default: runs/<setting>)")
        p.add_argument("--seed", type=arguments.seed, default=None, help="default 0")
        p.add_argument("--device", type=arguments.device, default=None,
                       help="cpu, cuda, mps (default: the best available)")
    p_run.add_argument("--algorithms", nargs="+", choices=algorithms() + list(ALIASES), metavar="ALGORITHM",
                       help=f"registered algorithms to train and evaluate (default: all: {' '.join(algorithms())}; "
                            + ", ".join(f"{k} = {v}" for k, v in ALIASES.items()) + ")")
    p_run.add_argument("--frontier", action="store_true",
                       help="also train the runs of notebook 09's gold-versus-KL frontier and plot it (on by "
                            "default in the gpu setting; fast: about 4 min more on one CPU core, default: more than "
                            "an hour)")
    p_run.add_argument("--jobs", type=arguments.jobs, default=None, metavar="N",
                       help="processes that train the stages side by side; the results are the same (default: "
                            "MINIRLHF_JOBS, else one per core up to 2)")
    sub.add_parser("grade", help="grade a folder of submitted exercise notebooks (see --help of the subcommand)")
    sub.add_parser("lessons",
                   help="the lessons ledger: every lesson as a measured claim (see --help of the subcommand)")
    sub.add_parser("make-exercises", help="regenerate exercises/ from solutions/")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
