"""Command line: `python -m minirlhf run|grade|make-exercises`."""
from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="minirlhf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train base → SFT → reward model → RLHF and write a report")
    p_run.add_argument("--fast", action="store_true", help="the fast setting (tests, CI): a few minutes on a CPU")
    p_run.add_argument("--setting", choices=["fast", "default", "gpu"], help="overrides --fast and the environment")
    p_run.add_argument("--out", help="output folder (default: runs/<setting>)")
    p_run.add_argument("--seed", type=int, default=None)
    p_run.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    args = parser.parse_args(argv)
    if args.command == "run":
        from .run import run

        run(args.setting or ("fast" if args.fast else None), args.out, args.seed, args.device)


if __name__ == "__main__":
    main()
