"""More than one process for the stages of one run: `python -m minirlhf run --jobs N`, `lessons --jobs N`.

Below the reward model most of a run's stages are independent (every algorithm, the frontier's runs, the
ledger's). With N jobs, N − 1 helper processes walk the same list of stages from other starting points while
the calling process walks it in order. Whichever process reaches a stage first trains it; one that reaches a
stage another is building waits for it and then loads it (cache.py's lock). So each stage is trained once, with
its own seed (registry.py), to the same weights whichever process trains it: N changes the wall time, not
the results.

The default, measured on an idle 2-core machine (README, `make fast`): one process per core there, since a
process of one thread loses only its share of a core that something else uses (threads.py's threads, which
wait for each other, lose far more); at most 2, as more were not measured. MINIRLHF_JOBS overrides it.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .threads import count_from_env, cpu_threads

MAX_JOBS = 2


def cpu_jobs() -> int:
    """MINIRLHF_JOBS if set, else the cores over each process's threads, from 1 to MAX_JOBS."""
    jobs = count_from_env("MINIRLHF_JOBS", "processes", f"to use up to {MAX_JOBS} on a machine with the cores for them")
    return jobs or max(1, min((os.cpu_count() or 1) // cpu_threads(), MAX_JOBS))


def walking_orders(names: list[str], jobs: int) -> list[list[str]]:
    """The order in which each helper walks `names`: from the end, each starting at its own share of the list,
    so that the helpers and the caller (who walks it from the start) meet as late as they can."""
    backwards = names[::-1]
    helpers = jobs - 1
    return [backwards[i * len(names) // helpers:] + backwards[:i * len(names) // helpers] for i in range(helpers)]


def _walk(settings, out_dir, device, names: list[str], rerun: int, job: int) -> list[str]:
    """A helper's work: train or load `names` in this order; returns the stages it trained."""
    from .stages import Pipeline

    pipe = Pipeline(settings, out_dir, device, repair=True, rerun=rerun)
    for name in names:
        pipe.stage_dir(name)
        if name in pipe.built:
            print(f"[job {job}] trained {name} in {pipe.log(name)['seconds']:.0f} s", flush=True)
    return pipe.built   # upstream stages too


def _helper_main() -> None:
    """A helper process: its arguments come pickled on stdin; the stages it trained go to the file named last."""
    *args, report = pickle.load(sys.stdin.buffer)
    built: list[str] = []
    try:
        built = _walk(*args)
    finally:
        Path(report).write_text(json.dumps(built))


@contextmanager
def helpers(settings, out_dir, device, names: list[str], jobs: int, rerun: int = 0):
    """Within the block, jobs − 1 processes train `names` beside the caller (who trains or loads every one of
    them itself, so that nothing it reads is missing if a helper fails). Yields a list that, once the block is
    left, holds the stages the helpers trained. Leaving the block waits for the helpers; an error in the block
    (Ctrl-C too) stops them, and the next run removes what they left half-done (cache.remove_leftovers).

    A helper is a fresh `python -c` (not multiprocessing's spawn, which would run the caller's script again
    in it where that script does not guard its top level with `if __name__ == "__main__"`)."""
    env = {**os.environ, "TQDM_DISABLE": "1"}   # one set of progress bars on the terminal: the caller's
    with tempfile.TemporaryDirectory() as tmp:
        procs, reports = [], []
        for i, order in enumerate(walking_orders(names, jobs)):
            reports.append(Path(tmp) / f"job{i + 2}.json")
            procs.append(subprocess.Popen([sys.executable, "-c", "from minirlhf.pipeline.jobs import _helper_main; "
                                           "_helper_main()"], stdin=subprocess.PIPE, env=env))
            procs[-1].stdin.write(pickle.dumps((settings, out_dir, device, order, rerun, i + 2, str(reports[-1]))))
            procs[-1].stdin.close()
        built: list[str] = []
        try:
            yield built
        except BaseException:
            for p in procs:
                p.terminate()
            raise
        finally:
            for p in procs:
                p.wait()
        for report in reports:
            built += json.loads(report.read_text()) if report.exists() else []
