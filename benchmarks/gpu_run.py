"""Benchmark: the main job end to end on a GPU, and how busy the GPU was while it ran.

    python benchmarks/gpu_run.py [--interval 1] [--csv util.csv] [-- ARGS of `python -m minirlhf run`]

Runs `python -m minirlhf run ARGS` (by default `--setting gpu --seed 0`) in a child process while
`nvidia-smi` reads the GPU every `--interval` seconds: its utilisation (the share of the interval in
which some kernel ran: a GPU kept waiting by the CPU that launches its kernels reads low) and the memory
in use. Prints the wall time, each stage's own training time (metrics.json's `timing_s`; with several
processes they overlap), and the utilisation: its mean over the run and a timeline in 20 s bins, which
shows the serial part (pretraining, the reward model) apart from the part the processes share.

The run has its own process group. Stopped by Ctrl-C, SIGTERM (`timeout`) or SIGHUP, this script stops the
run and everything it started, then prints what it measured until then; killed with SIGKILL it cannot, and
the run goes on: stop it with `kill -INT -- -PGID` (its process group, printed at the start).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def sample_gpu(interval: float, samples: list, stop: threading.Event, out) -> None:
    """Append (seconds since start, utilisation %, memory MiB) every `interval` s until `stop` is set, and
    write each reading to the csv writer `out` as it comes (a run stopped from outside keeps what was read).
    A reading that does not come back within 10 s, or is not a number ("[N/A]"), is skipped."""
    start = time.time()
    while not stop.wait(interval):
        try:
            read = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                   "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
            util, mem = (float(x) for x in read.stdout.splitlines()[0].split(","))
        except (subprocess.TimeoutExpired, IndexError, ValueError):
            continue
        samples.append((round(time.time() - start, 1), util, mem))
        out.writerow(samples[-1])


STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)   # Ctrl-C, `timeout`, a closed terminal


def stopped_from_outside(signum, frame):
    for sig in STOPS:   # `timeout` signals the process and then its group: once is enough
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def stop_run(child: subprocess.Popen) -> None:
    """Stop the run and every process it started (its jobs' helpers): Ctrl-C first, which lets a stage
    being written clean up after itself (checkpoint.atomic_dir); after 30 s, kill. What the run still
    prints is read and dropped, so that a full pipe cannot keep it from ending."""
    for sig in STOPS:   # a second Ctrl-C must not cut this short and leave the run alive
        signal.signal(sig, signal.SIG_IGN)
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
            child.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:   # the group has already gone
            child.communicate()
            return


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="the run's own flags go after --, e.g. python benchmarks/gpu_run.py -- --setting gpu --seed 1")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between nvidia-smi readings")
    parser.add_argument("--csv", help="write every reading (seconds, utilisation %%, memory MiB) to this file")
    parser.add_argument("run_args", nargs="*", help="arguments of `python -m minirlhf run` (after --)")
    args = parser.parse_args()
    run_args = args.run_args or ["--setting", "gpu", "--seed", "0"]
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        sys.exit("nvidia-smi does not answer: this benchmark reads a GPU's utilisation; on a CPU, time "
                 "`python -m minirlhf run` itself")
    try:
        csv_file = open(args.csv or os.devnull, "w", newline="", buffering=1)
    except OSError as err:
        sys.exit(f"cannot write the readings to --csv {args.csv}: {err.strerror}; give a path in a folder you "
                 "can write to")
    with csv_file:
        out = csv.writer(csv_file)
        out.writerow(("seconds", "utilisation_pct", "memory_mib"))
        code = measure(run_args, args.interval, out)
    sys.exit(code)


def measure(run_args: list[str], interval: float, out) -> int:
    """Run the main job while reading the GPU; print what was measured; return the exit code to give."""
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(interval, samples, stop, out), daemon=True)
    start = time.time()
    sampler.start()
    # stopped from outside (Ctrl-C, `timeout`, a closed terminal): stop the run, and still say what was
    # measured until then
    for sig in STOPS:
        signal.signal(sig, stopped_from_outside)
    out_dir, child = None, None
    try:
        # its own process group, so that stopping it stops the processes its jobs start too
        child = subprocess.Popen([sys.executable, "-m", "minirlhf", "run", *run_args], start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        print(f"[gpu_run] the run's process group: {child.pid}", flush=True)
        for line in child.stdout:
            print(line, end="", flush=True)
            found = re.search(r"^\[minirlhf\] setting .* output (.+)$", line.rstrip())
            out_dir = Path(found.group(1)) if found else out_dir
        child.wait()
    except KeyboardInterrupt:
        print("\nstopped from outside before the run ended", flush=True)
    finally:   # whatever ended the loop (a signal, a broken pipe to this script's output…), the run ends with it
        if child is not None and child.poll() is None:
            stop_run(child)
    if child is None:
        return 130
    wall = time.time() - start
    stop.set()
    sampler.join()
    # a child killed by signal N reads -N here; a shell says 128 + N
    code = child.returncode if child.returncode >= 0 else 128 - child.returncode
    print(f"\nwall time {wall:.0f} s (exit code {code})")
    if out_dir and (out_dir / "metrics.json").exists() and child.returncode == 0:
        timing = json.loads((out_dir / "metrics.json").read_text())["timing_s"]
        print("each stage's own time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items() if k != "this_run"))
    if not samples:
        print("no reading of nvidia-smi came back")
        return code or 1
    utils = [u for _, u, _ in samples]
    print(f"GPU utilisation over {len(utils)} readings: mean {statistics.mean(utils):.0f}%, median "
          f"{statistics.median(utils):.0f}%, idle (0%) in {sum(u == 0 for u in utils) / len(utils):.0%} of them; "
          f"memory at most {max(m for *_, m in samples):,.0f} MiB")
    print("timeline (mean utilisation per 20 s): " + " ".join(
        f"{statistics.mean(u for t, u, _ in samples if b <= t < b + 20):.0f}"
        for b in range(0, int(samples[-1][0]) + 1, 20) if any(b <= t < b + 20 for t, *_ in samples)))
    return code


if __name__ == "__main__":
    main()
