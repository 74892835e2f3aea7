"""Grade a class: run every submitted notebook in a sandboxed kernel, check the exercises from outside it,
and write a table of points per exercise and per student.

    python -m minirlhf grade SUBMISSIONS_DIR [--timeout SECONDS] [--out grades.csv] [--jobs N] [--resume] [--json]
    python -m minirlhf grade --self NOTEBOOK          a student's preview: the grader's verdict on one notebook

SUBMISSIONS_DIR holds one folder per student (every .ipynb inside is theirs) and/or one notebook per
student (`alice.ipynb`). Each notebook runs on a private copy, top to bottom, in a kernel that sees only
that copy and a read-only stage cache (sandbox.py), with a time limit for the whole notebook. A cell that
raises does not stop the notebook. In the kernel a check cell only hands the student's functions to the
grader (worker.py); when the notebook has run, the grader calls them on the check's inputs and judges
the answers in its own process (remote.py), where the expected values and the hints are. Nothing the
notebook prints, writes or patches can change a verdict: only what the student's functions return.

No grade is ever lost: whatever goes wrong with one submission (a malformed notebook, a crash or a kill of
its kernel, a time-out) becomes that student's row, with a status per exercise and a note. The CSVs are
rewritten (atomically) each time a student is done, so a grader stopped half-way keeps what it graded,
and `--resume` grades only the students the CSV does not have yet.
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import multiprocessing
import os
import shutil
import stat
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..pipeline import cache
from ..pipeline.report import save
from ..pipeline.stages import default_home
from . import sandbox
from .checks import CASES
from .checks.core import EXERCISES, GRADING_ENV, POINTS, judge
from .remote import Kernel, KernelGone, run_cell
from .worker import MIME

STATUSES = ("passed", "failed", "not implemented", "error", "timeout", "not run")


@dataclass
class NotebookRun:
    """What running one submitted notebook gave."""
    student: str
    notebook: str
    status: str                     # "finished", "timeout after N s", "kernel died", "unreadable" or "error: …"
    seconds: float
    errors: list[str] = field(default_factory=list)    # cells that raised: "cell 4: NameError"
    results: list[dict] = field(default_factory=list)  # the grader's verdicts: exercise, status, message
    copies: list[str] = field(default_factory=list)    # exercises whose code is the solution's, character for character


class GraderError(RuntimeError):
    """Grading cannot go on for anyone (no sandbox here, a damaged stage cache): stop, with what to do."""


def run_notebook(path: Path, timeout_s: float, student: str = "", isolate: bool = True) -> NotebookRun:
    """Execute a private copy of `path` in a fresh (sandboxed) kernel, then check what its check cells
    handed in. The notebook's cells get `timeout_s` of wall time in all; the checks as long again.
    Whatever goes wrong with this one notebook is its row, never an exception (but a GraderError)."""
    start = time.monotonic()
    try:
        return _run_notebook(Path(path), timeout_s, student, isolate, start)
    except GraderError:
        raise
    except Exception as e:
        return NotebookRun(student, Path(path).name, f"error: {type(e).__name__}: {str(e)[:200]}",
                           time.monotonic() - start)


def _run_notebook(path: Path, timeout_s: float, student: str, isolate: bool, start: float) -> NotebookRun:
    try:
        if path.is_symlink():   # read by the grader's user: a link could show it any file of the machine
            raise ValueError("the notebook is a symbolic link, not a file")
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)   # a cell whose source is not text, say: refused here, not half-way through
    except Exception as e:  # not JSON, not a notebook: nothing ran
        return NotebookRun(student, path.name, "unreadable", 0.0, [f"{type(e).__name__}: {str(e)[:200]}"])

    with tempfile.TemporaryDirectory(prefix="minirlhf-grade-") as tmp:
        tmp = Path(tmp)
        work = tmp / "work"
        try:   # a student's folder: their other files too (links copied as links, never followed)
            shutil.copytree(path.parent, work, symlinks=True, ignore=shutil.ignore_patterns("*.ipynb", ".*")) \
                if path.parent.name == student else work.mkdir()
        except OSError as e:
            return NotebookRun(student, path.name, f"error: copying the submission: {e}"[:200], 0.0)
        nbformat.write(nb, work / path.name)
        home = default_home()
        env = {GRADING_ENV: "1", "MINIRLHF_HOME": str(home), "OMP_NUM_THREADS": "1",
               **{k: os.environ[k] for k in ("MINIRLHF_FAST", "MINIRLHF_THREADS") if k in os.environ}}
        # either way the kernel is worker.py's (the grader's own Python, set up before any student code runs)
        km = _kernel_manager(tmp, work, home, env) if isolate else \
            _worker_kernel(tmp, [sys.executable, "-m", "minirlhf.course.worker", "-f", "{connection_file}"])
        # one thread per kernel: the course's models are tiny, and kernels graded side by side
        # (--jobs) would otherwise fight over the cores and run many times slower
        client = NotebookClient(nb, km=km, allow_errors=True, shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(work)}})
        status, results, init = "finished", [], None   # init: a pidfd of the kernel, PID 1 of its namespace
        try:
            # the kernel's own chatter (ipykernel's warnings) to a file, not to the grader's console
            with open(tmp / "kernel.log", "w") as log, \
                    client.setup_kernel(env={**os.environ, **env}, stdout=log, stderr=log):
                init = sandbox.namespace_init(km.provisioner.process.pid) if isolate else None
                # the limit runs from a ready kernel: a slow start on a busy machine costs the student nothing
                status = _run_cells(client, nb, time.monotonic() + timeout_s, timeout_s)
                if status != "kernel died":
                    if status.startswith("timeout"):   # what was handed in still counts
                        _stop_running_cell(client, min(SETTLE_S, timeout_s))
                    check_deadline = time.monotonic() + timeout_s
                    client.timeout_func = None   # from here each request sets its own limit (remote.Kernel)
                    results = check_submitted(Kernel(client, lambda: check_deadline - time.monotonic()))
        except Exception as e:   # whatever else went wrong running this notebook is this student's row
            status = f"error: {type(e).__name__}: {str(e)[:200]}"
        finally:   # the kernel and every process it left, detached or not: gone before the row is written
            if init is not None:
                sandbox.kill_namespace(init)
    errors = [f"cell {i}: {out.get('ename', 'error')}" for i, cell in enumerate(nb.cells)
              if cell.cell_type == "code" for out in cell.get("outputs", []) if out.output_type == "error"]
    errors += forgeries(nb)
    return NotebookRun(student, path.name, status, time.monotonic() - start, errors, results, solution_copies(nb))


def forgeries(nb) -> list[str]:
    """What a notebook showed that only the grader may say: a verdict (while grading a check cell prints
    [SUBMITTED], never [PASSED]) or an answer of the grader's protocol. Ignored for the grade; noted."""
    seen = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            text = "".join(text) if isinstance(text, list) else str(text)   # nbformat allows a list of lines
            if any(line.startswith(("[PASSED]", "[FAILED]")) for line in text.splitlines()):
                seen.append(f"cell {i} printed a verdict the grader did not give (ignored)")
            if MIME in out.get("data", {}):
                seen.append(f"cell {i} published an answer of the grader's protocol itself (ignored)")
    return seen


def _normalised(source: str) -> str:
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("#"))


@functools.lru_cache(maxsize=1)   # read once per grader, not once per submitted notebook
def solution_code() -> dict[str, str]:
    """exercise -> the code of its solution cell (the code cell before its check cell), normalised; empty
    where the course's `solutions/` is not next to the package (an installed package has none)."""
    out = {}
    for name, (notebook, *_rest) in EXERCISES.items():
        path = cache.PACKAGE_DIR.parent / "solutions" / f"{notebook}.ipynb"
        if not path.is_file():
            continue
        sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        at = next((i for i, src in enumerate(sources) if f"check_{name}(" in src and "import" not in src), None)
        solution = next((src for src in reversed(sources[:at]) if "### BEGIN SOLUTION" in src), None) if at else None
        if solution:
            out[name] = _normalised(solution)
    return out


def solution_copies(nb) -> list[str]:
    """The exercises whose solution cell appears in `nb` unchanged (up to blank lines, indentation and
    comments): noted for the instructor, not zeroed (a short correct answer can coincide with ours)."""
    mine = {_normalised(c.source) for c in nb.cells if c.cell_type == "code"}
    return [name for name, code in solution_code().items() if code in mine]


def _run_cells(client, nb, deadline: float, timeout_s: float) -> str:
    """Run the notebook's cells until the end or the deadline: "finished", "timeout after N s", "kernel died"."""
    def time_left(cell) -> float:
        return max(0.1, deadline - time.monotonic())   # checked before each cell: none starts after the deadline

    client.timeout_func = time_left
    for index, cell in enumerate(nb.cells):
        if time.monotonic() >= deadline:
            return f"timeout after {timeout_s:g} s"
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            return f"timeout after {timeout_s:g} s"
        except DeadKernelError:
            return "kernel died"
    return "finished"


SETTLE_S = 5   # after a time-out, how long the cell that was running may take to end by itself


def _stop_running_cell(client: NotebookClient, seconds: float) -> None:
    """After a time-out: wait up to `seconds` for the running cell to end by itself (a no-op cell queued
    behind it answers), and interrupt it only if it does not: an interrupt that reaches the kernel after its
    cell ended, on a busy machine, hit the checks' first request instead. Then talk to the kernel through a
    fresh client."""
    client.timeout_func = None
    try:
        run_cell(client, nbformat.v4.new_code_cell("pass"), seconds)
    except CellTimeoutError:
        run_sync(client.km.interrupt_kernel)()
    # a fresh client: nbclient leaves a timed-out cell's output reader running, and it would swallow the
    # outputs (the answers) of every later request
    client.kc.stop_channels()
    client.kc = client.km.client()
    client.kc.start_channels()
    try:
        run_sync(client.kc.wait_for_ready)(timeout=max(1, int(seconds)))
    except RuntimeError:   # still busy (a cell that outlived its interrupt): the checks' requests will say so
        pass


def _kernel_manager(tmp: Path, work: Path, home: Path, env: dict) -> AsyncKernelManager:
    """A kernel manager whose kernel starts in a sandbox (sandbox.py) seeing `work` and, read-only, the
    package, Python and the stage cache `home` (its checksums verified now)."""
    problem = sandbox.available()
    if problem:
        raise GraderError(f"{problem} (or grade with --no-isolation, only for submissions you trust)")
    readable_by_all(home)
    verify_cache(home)
    read_only = [cache.PACKAGE_DIR, Path(sys.prefix), Path(sys.base_prefix), home]
    spec = tmp / "sandbox.json"
    (tmp / "root").mkdir()
    sandbox.write_spec(spec, tmp / "root", work, read_only, env)
    if os.getuid() == 0:   # the kernel runs as nobody: its copy must be its own (links themselves, never their targets)
        for folder, dirs, files in os.walk(work):   # does not follow links
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.chown(name, sandbox.NOBODY, sandbox.NOBODY, follow_symlinks=False)
    km = _worker_kernel(tmp, sandbox.kernel_argv(spec))
    # Unix sockets in the submission's folder, not TCP: the kernel has no network (sandbox.py), so it cannot
    # listen in on a classmate's kernel graded beside it
    km.transport, km.ip = "ipc", str(work / ".kernel-socket")
    return km


def _worker_kernel(tmp: Path, argv: list[str]) -> AsyncKernelManager:
    """A kernel manager for a kernelspec of its own (in `tmp`) that starts the kernel with `argv`. Asynchronous,
    as nbclient expects: a blocking one's client waits for a cell's output without its time limit, so a cell
    that never ends would hold the grader forever."""
    kernels = tmp / "kernels" / "minirlhf-grader"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": "minirlhf grader", "language": "python", "interrupt_mode": "message"}))
    km = AsyncKernelManager(kernel_name="minirlhf-grader",
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp / "kernels")]))
    km.connection_file = str(tmp / "connection.json")
    return km


def stage_files(home: Path) -> list[Path]:
    """The stage cache `home`, its setting folders, their stages and every file in them: all a kernel loads. Not the
    `.<stage>.*` temporaries and locks of a run building a stage now (a notebook tested beside the grader, say):
    that run renames or removes them at any moment, and a kernel loads only finished stages."""
    home = Path(home)
    found = [home] if home.is_dir() else []
    for folder, dirs, files in os.walk(home):   # not into those temporaries: one may vanish while it is listed
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder, name) for name in dirs + sorted(files) if not name.startswith(".")]
    return found


def readable_by_all(home: Path) -> None:
    """A grader that is root runs the sandboxed kernel as `nobody`: give the stage cache's files read permission
    for all (safetensors writes its files for their owner only). Only permission bits change: no content, no
    checksum. Any other grader's kernel reads with the grader's own rights (a user namespace): it changes
    nothing, and refuses a cache it cannot read itself."""
    files = stage_files(home)
    if os.getuid() != 0:
        unreadable = [p for p in files if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0))]
        if unreadable:
            raise GraderError(f"{len(unreadable)} files of the stage cache {home} are not readable by you (uid "
                              f"{os.getuid()}), e.g. {unreadable[0]}: grade as their owner, or let their owner run "
                              f"`chmod -R a+rX {home}`")
        return
    changed = 0
    for p in files:
        mode = p.stat().st_mode
        want = mode | (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH) | \
            ((stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) if p.is_dir() else 0)
        if want != mode:
            os.chmod(p, want)
            changed += 1
    if changed:
        print(f"[minirlhf] made {changed} files of the stage cache {home} readable by all (the sandbox reads it "
              "as nobody)", flush=True)


def verify_cache(home: Path) -> None:
    """Refuse to grade against a stage cache whose files are not the ones its stages saved (a folder of an
    older version, without a manifest, is refused by the pipeline when loaded)."""
    # the stage folders by name only (a run building a stage beside the grader renames its `.<stage>.*` temporary)
    for folder in sorted(p for p in Path(home).glob("*/*") if not p.name.startswith(".")):
        if folder.is_dir() and cache.is_finished(folder) and (folder / cache.MANIFEST).is_file():
            problem = cache.damage(folder, {})
            if problem:
                raise GraderError(f"the stage cache is damaged ({folder}: {problem}): repair it with "
                                   "`python -m minirlhf repair` before grading")


def check_submitted(kernel: Kernel) -> list[dict]:
    """Judge every exercise the notebook's check cells handed in, in the course's order."""
    try:
        submitted = kernel.request(op="registered")
    except (KernelGone, Exception) as e:
        return [{"exercise": "", "status": "note", "message": f"the kernel did not answer the grader ({e})"}]
    submitted = submitted if isinstance(submitted, dict) else {}
    patched = submitted.pop("patched", [])
    results, gone = [], None
    if patched:
        results.append({"exercise": "", "status": "note", "message": "the notebook replaced the checks' "
                        + ", ".join(map(str, patched)) + " (no effect: the checks run in the grader)"})
    for exercise in EXERCISES:
        objects = submitted.get(exercise)
        if objects is None:
            continue
        if gone:
            results.append({"exercise": exercise, **gone})
            continue
        kernel.exercise = exercise
        started = time.monotonic()
        data: dict = {}   # what a check measured; 4.5 puts its message there
        body = functools.partial(CASES[exercise], data=data) if exercise == "ppo_training" else CASES[exercise]
        verdict = judge(exercise, body, *(objects if isinstance(objects, tuple) else (objects,)), data=data)
        results.append({"exercise": exercise, "status": verdict.status, "message": verdict.message,
                        "seconds": round(time.monotonic() - started, 2)})
        # a kernel that died, or that is still busy with a call that ran out of time, answers no more
        if verdict.status == "timeout" or not run_sync(kernel.client.km.is_alive)():
            gone = {"status": verdict.status, "message": "not checked: " + verdict.message}
    return results


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


def verdicts(runs: list[NotebookRun]) -> dict[str, dict]:
    """One verdict per exercise for one student (status, points, message, seconds): across their notebooks
    the best; an exercise no check cell handed in is "not run"; a notebook stopped before it, its reason."""
    def stopped(name: str) -> str | None:   # why the notebook holding this exercise stopped early, if it did
        mine = [r for r in runs if len(runs) == 1 or r.notebook.startswith(EXERCISES[name][0])]
        return next((r.status for r in mine if r.status.startswith(("timeout", "kernel died", "error"))), None)

    out = {}
    for name in POINTS:
        why = stopped(name)
        out[name] = {"status": "timeout" if why and why.startswith("timeout") else "not run", "points": 0.0,
                     "message": f"no check of it ran ({why})" if why else "no check of it ran", "seconds": 0.0}
    rank = {status: i for i, status in enumerate(reversed(STATUSES))}   # passed ranks highest
    for run in runs:
        for r in run.results:
            name = r.get("exercise")
            if name not in POINTS:
                continue
            points = float(POINTS[name]) if r["status"] == "passed" else 0.0   # the table's points, not the log's
            mine = {"status": r["status"], "points": points, "message": r.get("message", ""),
                    "seconds": float(r.get("seconds", 0.0))}
            if out[name]["status"] in ("not run", "timeout") and not out[name]["points"] or \
                    rank.get(mine["status"], -1) > rank.get(out[name]["status"], -1):
                out[name] = mine
    return out


def labels() -> dict[str, str]:
    """Short labels "1.1", "1.2", "2.1"... (notebook number, then order within it): the console's and the CSVs'."""
    out, seen = {}, {}
    for name, (notebook, *_rest) in EXERCISES.items():
        number = int(notebook.split("_")[0])
        seen[number] = seen.get(number, 0) + 1
        out[name] = f"{number}.{seen[number]}"
    return out


def grade(submissions_dir, out_csv=None, timeout_s: float = 900.0, jobs: int = 1,
          verbose: bool = True, resume: bool = False, isolate: bool = True, as_json: bool = False) -> list[dict]:
    """Grade every student in `submissions_dir`; write the CSVs (default: DIR/grades.csv, a row per student,
    and DIR/grades-exercises.csv, a row per student and exercise) and print a summary. `jobs` notebooks run
    at the same time (each in its own kernel); `resume` keeps the students the CSV already has. Returns one
    row per student: student, each exercise's points, total, max, notes, and `exercises` (the verdicts)."""
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise FileNotFoundError(f"{submissions_dir} is not a folder: give the folder of submissions (one notebook or "
                                "one folder of notebooks per student)")
    out_csv = Path(out_csv) if out_csv else submissions_dir / "grades.csv"
    students = find_submissions(submissions_dir)
    if not students:
        raise FileNotFoundError(f"no .ipynb submissions in {submissions_dir}")
    if isolate and sandbox.available():
        raise GraderError(f"{sandbox.available()} (or grade with --no-isolation, only for submissions you trust)")
    rows = read_csv(out_csv) if resume and out_csv.is_file() else {}
    tasks = [(path, timeout_s, student, isolate) for student, notebooks in students.items() if student not in rows
             for path in notebooks]
    runs: list[NotebookRun] = []

    def done(run: NotebookRun) -> None:
        runs.append(run)
        if verbose:
            print(f"graded {run.student}/{run.notebook}: {run.status}, {len(run.results)} checks, "
                  f"{run.seconds:.0f} s", flush=True)
        mine = sorted((r for r in runs if r.student == run.student), key=lambda r: r.notebook)
        if len(mine) == len(students[run.student]):   # the student's last notebook: their rows, saved now
            rows[run.student] = student_row(run.student, mine)
            write_all([rows[s] for s in students if s in rows], out_csv, as_json)

    if jobs > 1:
        # separate processes (spawned, not forked: the parent may hold torch's thread pools)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(run_notebook, *task): task for task in tasks}
            for future in as_completed(futures):
                try:
                    run = future.result()
                except GraderError:
                    raise
                except Exception as e:   # the worker process itself died (killed, out of memory): this row
                    path, _, student, _ = futures[future]
                    run = NotebookRun(student, path.name, f"error: {type(e).__name__}: {str(e)[:200]}", 0.0)
                done(run)
    else:
        for task in tasks:
            done(run_notebook(*task))

    rows = [rows[s] for s in students]
    write_all(rows, out_csv, as_json)
    if verbose:
        print(summary_table(rows))
        print(f"\nwrote {out_csv} and {long_csv(out_csv)}" + (f" and {out_csv.with_suffix('.json')}" if as_json else ""))
    return rows


def student_row(student: str, runs: list[NotebookRun]) -> dict:
    exercises = verdicts(runs)
    notes = [f"{r.notebook}: {r.status}" + (f" ({'; '.join(r.errors)})" if r.errors else "")
             for r in runs if r.status != "finished" or r.errors]
    notes += [f"{labels()[name]}: {v['message']}" for name, v in exercises.items()
              if "the package's" in v["message"] or v["status"] == "error"]
    notes += [r["message"] for run in runs for r in run.results if r.get("status") == "note"]
    copies = sorted({name for r in runs for name in r.copies}, key=list(POINTS).index)
    if copies:
        notes.append("the solution's code, character for character: " + ", ".join(labels()[n] for n in copies))
        for name in copies:
            exercises[name]["message"] += " (the solution's code, character for character)"
    points = {name: v["points"] for name, v in exercises.items()}
    return {"student": student, **points, "total": sum(points.values()), "max": float(sum(POINTS.values())),
            "notes": " | ".join(notes), "exercises": exercises}


COLUMNS = ["student", *POINTS, "total", "max", "notes"]
LONG_COLUMNS = ["student", "exercise", "name", "status", "points", "max_points", "message", "seconds"]


def long_csv(out_csv: Path) -> Path:
    return out_csv.with_name(f"{out_csv.stem}-exercises{out_csv.suffix}")


def write_all(rows: list[dict], out_csv: Path, as_json: bool) -> None:
    """The wide CSV (a row per student), the long one (a row per student and exercise) and the JSON, each
    written under a temporary name and renamed: a grader stopped while writing leaves the previous files."""
    short = labels()

    def wide(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([short.get(c, c) for c in COLUMNS])
            for row in rows:
                writer.writerow([f"{row[c]:g}" if isinstance(row[c], float) else row[c] for c in COLUMNS])

    def long(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(LONG_COLUMNS)
            for row in rows:
                for name, v in row["exercises"].items():
                    writer.writerow([row["student"], short[name], name, v["status"], f"{v['points']:g}",
                                     POINTS[name], v["message"], f"{v['seconds']:g}"])

    save(out_csv, wide)
    save(long_csv(out_csv), long)
    if as_json:
        save(out_csv.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(
            {"exercises": {short[n]: {"name": n, "title": EXERCISES[n][1], "max_points": POINTS[n]} for n in POINTS},
             "students": [{"student": r["student"], "total": r["total"], "max": r["max"], "notes": r["notes"],
                           "exercises": {short[n]: v for n, v in r["exercises"].items()}} for r in rows]},
            indent=1)))


def read_csv(path: Path) -> dict[str, dict]:
    """The rows the CSVs written by `write_all` hold, by student, numbers as numbers (for --resume)."""
    short = labels()
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != [short.get(c, c) for c in COLUMNS]:
            raise ValueError(f"{path} has the columns {header}, not this course's: grade again without --resume "
                             "(or give another --out)")
        rows = {r[0]: {c: (v if c in ("student", "notes") else float(v)) for c, v in zip(COLUMNS, r)} for r in reader}
    exercises: dict[str, dict] = {s: {} for s in rows}
    if long_csv(path).is_file():
        with open(long_csv(path), newline="") as f:
            for r in csv.DictReader(f):
                if r["student"] in exercises:
                    exercises[r["student"]][r["name"]] = {"status": r["status"], "points": float(r["points"]),
                                                          "message": r["message"], "seconds": float(r["seconds"])}
    for student, row in rows.items():
        row["exercises"] = {n: exercises[student].get(n, {"status": "passed" if row[n] else "not run",
                                                          "points": row[n], "message": "", "seconds": 0.0})
                            for n in POINTS}
    return rows


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


def preview(notebook: Path, timeout_s: float, isolate: bool) -> int:
    """`grade --self`: what the grader will say about one notebook, exercise by exercise."""
    run = run_notebook(Path(notebook), timeout_s, Path(notebook).stem, isolate)
    print(f"{notebook}: {run.status} in {run.seconds:.0f} s" + (f" ({'; '.join(run.errors)})" if run.errors else ""))
    short = labels()
    found = {r["exercise"]: r for r in run.results if r.get("exercise") in POINTS}
    for name, r in found.items():
        points = POINTS[name] if r["status"] == "passed" else 0
        print(f"  {short[name]:>4} {EXERCISES[name][1]}: {r['status']}, {points}/{POINTS[name]} points. {r['message']}")
    if not found:
        print("  no check cell handed anything in: run the notebook's check cells (check_...(your_function))")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minirlhf grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", nargs="?", help="a folder of submitted notebooks (one folder or notebook per "
                                                       "student)")
    parser.add_argument("--self", dest="self_check", metavar="NOTEBOOK",
                        help="a student's preview: grade this one notebook and show each exercise's verdict")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per notebook (default 900)")
    parser.add_argument("--out", default=None, help="the CSV to write (default: SUBMISSIONS/grades.csv)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks to run at the same time (default 1)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows the CSV already has (a grading that was stopped) and grade the others")
    parser.add_argument("--json", action="store_true", help="also write the grades as JSON (for an LMS import)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="run kernels without a sandbox (where Linux namespaces are missing): only for "
                             "submissions you trust; --self never isolates (it is the student's own code)")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.jobs < 1:
        parser.error(f"--timeout must be above 0 s and --jobs at least 1 (got {args.timeout:g} and {args.jobs})")
    if args.self_check:
        if not Path(args.self_check).is_file():
            parser.error(f"{args.self_check} is not a file: give the notebook to preview")
        return preview(Path(args.self_check), args.timeout, isolate=False)
    if not args.submissions:
        parser.error("give the folder of submissions (or --self NOTEBOOK for a preview of one notebook)")
    try:
        grade(args.submissions, args.out, args.timeout, args.jobs, resume=args.resume,
              isolate=not args.no_isolation, as_json=args.json)
    except (FileNotFoundError, ValueError, RuntimeError) as e:   # a missing folder, another course's CSV, no sandbox
        parser.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
