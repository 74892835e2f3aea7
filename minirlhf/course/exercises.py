"""Make the student notebooks `exercises/*.ipynb` from the solutions `solutions/*.ipynb`.

The solutions mark what the student must write with nbgrader's markers:

    def gae(rewards, values, mask, gamma, lam):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

Each marked region becomes

        # YOUR CODE HERE
        raise NotImplementedError("not implemented yet")

at the marker's indentation (so regions belong inside functions: the raise then happens only
when a check calls the function, and the check reports "not implemented yet"). Cells tagged
`solution-only` are dropped, and every output is cleared. The result depends only on the
solutions, so a test can regenerate it and compare.

    python -m minirlhf make-exercises        (or: make exercises)
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_ONLY_TAG = "solution-only"
CODE_STUB = ["# YOUR CODE HERE", 'raise NotImplementedError("not implemented yet")']
MARKDOWN_STUB = ["YOUR ANSWER HERE"]


def strip_source(source: str, stub: list[str], where: str) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source with `stub`."""
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"{where}, line {number}: {BEGIN} inside another solution region")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out.extend(indent + s for s in stub)
        elif marker == END:
            if not inside:
                raise ValueError(f"{where}, line {number}: {END} without a {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def strip_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solution notebook (a new object; `nb` is left as it is)."""
    nb = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(nb.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        stub = CODE_STUB if cell.cell_type == "code" else MARKDOWN_STUB
        cell.source = strip_source(cell.source, stub, f"{name}, cell {i}")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)  # timestamps would make the output differ run to run
        cells.append(cell)
    nb.cells = cells
    return nb


def exercise_text(solution_path: Path) -> str:
    """The exact text `make_exercises` writes for one solution notebook."""
    nb = nbformat.read(solution_path, as_version=4)
    return nbformat.writes(strip_notebook(nb, solution_path.name)) + "\n"


def make_exercises(solutions_dir: Path | str = ROOT / "solutions",
                   exercises_dir: Path | str = ROOT / "exercises") -> list[Path]:
    """Write exercises_dir/X.ipynb for every solutions_dir/X.ipynb; remove exercise notebooks
    whose solution is gone. Returns the paths written."""
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    sources = sorted(solutions_dir.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no notebooks in {solutions_dir}")
    exercises_dir.mkdir(parents=True, exist_ok=True)
    for stale in set(exercises_dir.glob("*.ipynb")) - {exercises_dir / s.name for s in sources}:
        stale.unlink()
    written = []
    for src in sources:
        dst = exercises_dir / src.name
        dst.write_text(exercise_text(src), encoding="utf-8")
        written.append(dst)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minirlhf make-exercises",
                                     description="regenerate exercises/ from solutions/")
    parser.add_argument("--solutions", default=str(ROOT / "solutions"))
    parser.add_argument("--exercises", default=str(ROOT / "exercises"))
    args = parser.parse_args(argv)
    for path in make_exercises(args.solutions, args.exercises):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
