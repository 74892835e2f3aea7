"""Grade a class: run every submitted notebook in a fresh kernel, collect the check results,
and write a table of points per exercise and per student.

    python -m minirlhf grade SUBMISSIONS_DIR [--timeout SECONDS] [--out grades.csv] [--jobs N] [--resume]

SUBMISSIONS_DIR holds one folder per student (every .ipynb inside is theirs) and/or one
notebook per student (`alice.ipynb`). Each notebook runs top to bottom in its own kernel, with
a time limit for the whole notebook. A cell that raises does not stop the notebook (the next
exercise may still work); a notebook that runs out of time or kills its kernel stops there.
Either way the checks that finished before count: every check appends its result to the file
named by $MINIRLHF_CHECK_LOG the moment it ends (see checks/core.py), and the grader reads that
file, not the notebook's outputs. An exercise whose check never ran scores 0.

One student's notebook cannot cost another their grade: a malformed notebook, junk in its check log or
an error of the grader while running it becomes that student's row, with a note. The CSV is rewritten
(atomically) each time a student's last notebook is done, so a grader stopped half-way keeps what it
graded, and `--resume` grades only the students the CSV does not have yet.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..pipeline.report import save
from .checks.core import EXERCISES, LOG_ENV, POINTS


@dataclass
class NotebookRun:
    """What running one submitted notebook gave."""
    student: str
    notebook: str
    status: str                     # "finished", "timeout after N s", "kernel died", "unreadable" or "error: …"
    seconds: float
    errors: list[str] = field(default_factory=list)    # cells that raised: "cell 4: NameError"
    results: list[dict] = field(default_factory=list)  # the check results, in the order they ran


def run_notebook(path: Path, timeout_s: float, student: str = "") -> NotebookRun:
    """Execute `path` in a fresh kernel (its folder as working directory) and read its checks."""
    start = time.monotonic()
    deadline = start + timeout_s
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)   # a cell whose source is not text, say: refused here, not half-way through
    except Exception as e:  # not JSON, not a notebook: nothing ran
        return NotebookRun(student, path.name, "unreadable", 0.0, [f"{type(e).__name__}: {str(e)[:200]}"])

    def time_left(cell) -> int:   # the limit is the whole notebook's: no cell starts after the deadline
        left = deadline - time.monotonic()
        if left <= 0:
            raise CellTimeoutError(f"the notebook's {timeout_s:g} s are up")
        return math.ceil(left)

    with tempfile.TemporaryDirectory(prefix="minirlhf-grade-") as tmp:
        log = Path(tmp) / "checks.jsonl"
        # one thread per kernel: the course's models are tiny, and kernels graded side by side
        # (--jobs) would otherwise fight over the cores and run many times slower
        env = {"OMP_NUM_THREADS": "1", **os.environ, LOG_ENV: str(log)}
        client = NotebookClient(
            nb, kernel_name="python3",  # the grader's own Python, whatever the notebook says
            timeout_func=time_left,   # each cell may use what is left of the notebook's time budget
            allow_errors=True, shutdown_kernel="immediate",
            resources={"metadata": {"path": str(path.parent.resolve())}})
        status = "finished"
        try:
            client.execute(env=env)
        except CellTimeoutError:
            status = f"timeout after {timeout_s:g} s"
        except DeadKernelError:
            status = "kernel died"
        except Exception as e:   # whatever else went wrong running this notebook is this student's row
            status = f"error: {type(e).__name__}: {str(e)[:200]}"
        results, junk = read_check_log(log)

    errors = [f"cell {i}: {out.get('ename', 'error')}" for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" for out in cell.get("outputs", []) if out.output_type == "error"]
    if junk:
        errors.append(f"{junk} line(s) of the check log were not check results (ignored)")
    return NotebookRun(student, path.name, status, time.monotonic() - start, errors, results)


def read_check_log(log: Path) -> tuple[list[dict], int]:
    """The check results a notebook logged, and how many lines were something else (a cell may write there)."""
    results, junk = [], 0
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        try:
            r = json.loads(line)
        except ValueError:
            r = None
        if isinstance(r, dict) and r.get("exercise") in POINTS and isinstance(r.get("status"), str):
            results.append(r)
        else:
            junk += 1
    return results, junk


def find_submissions(submissions_dir: Path) -> dict[str, list[Path]]:
    """student name -> their notebooks, from `DIR/<student>/*.ipynb` and `DIR/<student>.ipynb`."""
    students: dict[str, list[Path]] = {}
    for entry in sorted(Path(submissions_dir).iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            if notebooks:
                students[entry.name] = notebooks
        elif entry.suffix == ".ipynb":
            students[entry.stem] = [entry]
    return students


def score(runs: list[NotebookRun]) -> dict[str, float]:
    """Points per exercise for one student: within a notebook the last check run counts (the
    student may have fixed and re-run it); across notebooks the best."""
    points = {name: 0.0 for name in POINTS}
    for run in runs:
        last = {r["exercise"]: r for r in run.results if r.get("exercise") in POINTS}
        for name, r in last.items():
            # points come from the table, not from the log line: only the status is trusted
            points[name] = max(points[name], float(POINTS[name]) if r.get("status") == "passed" else 0.0)
    return points


def labels() -> dict[str, str]:
    """Short column labels "1.1", "1.2", "2.1"...: notebook number, then order within it."""
    out, seen = {}, {}
    for name, (notebook, *_rest) in EXERCISES.items():
        number = int(notebook.split("_")[0])
        seen[number] = seen.get(number, 0) + 1
        out[name] = f"{number}.{seen[number]}"
    return out


def grade(submissions_dir, out_csv=None, timeout_s: float = 900.0, jobs: int = 1,
          verbose: bool = True, resume: bool = False) -> list[dict]:
    """Grade every student in `submissions_dir`; write a CSV (default: DIR/grades.csv) and print
    a summary. `jobs` notebooks run at the same time (each in its own kernel); `resume` keeps the rows
    the CSV already has and grades the other students. Returns one row per student: student, each
    exercise's points, total, max, notes."""
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise FileNotFoundError(f"{submissions_dir} is not a folder: give the folder of submissions (one notebook or "
                                "one folder of notebooks per student)")
    out_csv = Path(out_csv) if out_csv else submissions_dir / "grades.csv"
    students = find_submissions(submissions_dir)
    if not students:
        raise FileNotFoundError(f"no .ipynb submissions in {submissions_dir}")
    rows = read_csv(out_csv) if resume and out_csv.is_file() else {}
    tasks = [(path, timeout_s, student) for student, notebooks in students.items() if student not in rows
             for path in notebooks]
    runs: list[NotebookRun] = []

    def done(run: NotebookRun) -> None:
        runs.append(run)
        if verbose:
            print(f"graded {run.student}/{run.notebook}: {run.status}, {len(run.results)} checks, "
                  f"{run.seconds:.0f} s", flush=True)
        mine = sorted((r for r in runs if r.student == run.student), key=lambda r: r.notebook)
        if len(mine) == len(students[run.student]):   # the student's last notebook: their row, saved now
            rows[run.student] = student_row(run.student, mine)
            write_csv([rows[s] for s in students if s in rows], out_csv)

    if jobs > 1:
        # separate processes (spawned, not forked: the parent may hold torch's thread pools)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_notebook, *task) for task in tasks]):
                done(future.result())
    else:
        for task in tasks:
            done(run_notebook(*task))

    rows = [rows[s] for s in students]
    write_csv(rows, out_csv)
    if verbose:
        print(summary_table(rows))
        print(f"\nwrote {out_csv}")
    return rows


def student_row(student: str, runs: list[NotebookRun]) -> dict:
    points = score(runs)
    notes = [f"{r.notebook}: {r.status}" + (f" ({'; '.join(r.errors)})" if r.errors else "")
             for r in runs if r.status != "finished" or r.errors]
    return {"student": student, **points, "total": sum(points.values()), "max": float(sum(POINTS.values())),
            "notes": " | ".join(notes)}


COLUMNS = ["student", *POINTS, "total", "max", "notes"]


def write_csv(rows: list[dict], path: Path) -> None:
    """Written under a temporary name and renamed: a grader stopped while writing leaves the previous CSV."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:g}" if isinstance(v, float) else v) for k, v in row.items()})
    save(path, write)


def read_csv(path: Path) -> dict[str, dict]:
    """The rows of a CSV written by `write_csv`, by student, numbers as numbers."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{path} has the columns {reader.fieldnames}, not this course's {COLUMNS}: grade "
                             "again without --resume (or give another --out)")
        return {r["student"]: {k: (r[k] if k in ("student", "notes") else float(r[k])) for k in COLUMNS}
                for r in reader}


def summary_table(rows: list[dict]) -> str:
    """A plain-text table: a column per exercise (labelled 1.1, 1.2...), the total, the notes."""
    short = labels()
    width = max(7, *(len(r["student"]) for r in rows))
    head = f"{'student':<{width}} " + " ".join(f"{short[n]:>4}" for n in POINTS) + "   total  notes"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = " ".join(f"{r[n]:>4g}" for n in POINTS)
        lines.append(f"{r['student']:<{width}} {cells}  {r['total']:>3g}/{r['max']:g}  {r['notes']}")
    lines.append("")
    lines += [f"{short[n]:>4} {EXERCISES[n][1]} ({POINTS[n]} points)" for n in POINTS]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minirlhf grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", help="a folder of submitted notebooks (one folder or notebook per student)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per notebook (default 900)")
    parser.add_argument("--out", default=None, help="the CSV to write (default: SUBMISSIONS/grades.csv)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks to run at the same time (default 1)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows the CSV already has (a grading that was stopped) and grade the others")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.jobs < 1:
        parser.error(f"--timeout must be above 0 s and --jobs at least 1 (got {args.timeout:g} and {args.jobs})")
    try:
        grade(args.submissions, args.out, args.timeout, args.jobs, resume=args.resume)
    except (FileNotFoundError, ValueError) as e:   # a missing or empty folder, a CSV of another course
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
