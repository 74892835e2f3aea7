"""The command line's shared arguments, checked before any work starts: a bad seed, device, run folder or
environment variable is a one-line message and exit code 2 (argparse's convention), never a traceback."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..settings import Settings, get_settings
from ..training import pick_device
from .cache import check_home
from .jobs import cpu_jobs
from .stages import RERUN_STRIDE, default_home
from .threads import cpu_threads

MAX_SEED = 2**31 - 1   # every random generator the course seeds (Python's, torch's, the world's) takes it


def _whole_number(text: str, lowest: int, highest: int, what: str) -> int:
    """`text` as a whole number from `lowest` to `highest`, else argparse's error naming `what` it must be."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not lowest <= value <= highest:
        raise argparse.ArgumentTypeError(f"{value} is out of range: {what}")
    return value


def seed(text: str) -> int:
    """argparse type: a seed, a whole number from 0 to MAX_SEED."""
    return _whole_number(text, 0, MAX_SEED, f"a seed is a whole number from 0 to {MAX_SEED}")


def rerun(text: str) -> int:
    """argparse type: a rerun (Pipeline's `rerun`), a whole number from 0 whose seeds stay within MAX_SEED."""
    top = MAX_SEED // RERUN_STRIDE - 1   # a rerun's seeds: the seed + RERUN_STRIDE·rerun (lessons checks the sum)
    return _whole_number(text, 0, top, f"a rerun is a whole number from 0 (the setting's own runs) to {top}")


def jobs(text: str) -> int:
    """argparse type: a number of processes (jobs.py), a whole number from 1 to 64."""
    return _whole_number(text, 1, 64, "a number of processes is a whole number from 1 to 64")


def device(text: str) -> str:
    """argparse type: a device this machine has."""
    try:
        pick_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def resolve(parser: argparse.ArgumentParser, setting: str | None, seed: int | None, out: str | None
            ) -> tuple[Settings, Path]:
    """The settings (from the flag, else the environment) and the run folder a command will use; a bad
    environment variable or an unwritable folder ends the command with parser.error."""
    try:
        settings = get_settings(setting, seed)
        cpu_threads()   # MINIRLHF_THREADS
        cpu_jobs()      # MINIRLHF_JOBS
        out_dir = Path(out) if out else default_home() / settings.name
        check_home(out_dir)
    except ValueError as e:
        parser.error(str(e))
    return settings, out_dir
