"""How many CPU threads PyTorch gets: MINIRLHF_THREADS, else every core but one, at most 4.

Measured with `python benchmarks/bench.py --threads 1 2` on an idle 2-core machine (three runs, README):
a second thread makes the default model's training step 8–46% faster and its PPO step 0–30% faster,
but the fast model's PPO step 15–30% slower (small matrices: the threads wait for each other); with one
core busy (a notebook server, a browser, another job) two threads make every step about ten times
slower. So one core is left to the rest of the machine, and the count stops at 4, since two threads
already gain little (more were not measured here: run the benchmark's thread table on a larger
machine and set MINIRLHF_THREADS). The thread count changes the last digits of results (sums are split
differently), so it is written into each stage's log and metrics.json, and `make test` pins it to 1.
"""
from __future__ import annotations

import os

import torch

MAX_THREADS = 4


def count_from_env(name: str, what: str, unset: str) -> int | None:
    """The environment variable `name` as a count of `what` (None if unset); a bad value says what `unset` does."""
    value = os.environ.get(name)
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}={value!r} is not a positive whole number of {what}; unset it {unset}")
    return int(value)


def cpu_threads() -> int:
    """MINIRLHF_THREADS if set, else max(1, min(cores − 1, 4))."""
    threads = count_from_env("MINIRLHF_THREADS", "threads", "to use every core but one")
    return threads or max(1, min((os.cpu_count() or 1) - 1, MAX_THREADS))


def use_cpu_threads(device: torch.device) -> int:
    """Set PyTorch's thread count when the work runs on the CPU; returns the count in use."""
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    return torch.get_num_threads()
