"""exercises/ is solutions/ with the solutions stripped: up to date, runnable, and blank."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from minirlhf.course.checks.core import EXERCISES
from minirlhf.course.exercises import exercise_text, make_exercises, strip_notebook, strip_source

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def test_exercises_are_up_to_date():
    """Fails when someone edits solutions/ and forgets `python -m minirlhf make-exercises`."""
    names = {p.name for p in (ROOT / "exercises").glob("*.ipynb")}
    assert names == {p.name for p in SOLUTIONS}, "run `python -m minirlhf make-exercises`"
    for src in SOLUTIONS:
        current = (ROOT / "exercises" / src.name).read_text(encoding="utf-8")
        assert current == exercise_text(src), \
            f"exercises/{src.name} is out of date: run `python -m minirlhf make-exercises`"


def test_make_exercises_is_deterministic_and_removes_stale_notebooks(tmp_path):
    (tmp_path / "99_old.ipynb").write_text("{}")
    first = [p.read_text() for p in make_exercises(ROOT / "solutions", tmp_path)]
    second = [p.read_text() for p in make_exercises(ROOT / "solutions", tmp_path)]
    assert first == second
    assert not (tmp_path / "99_old.ipynb").exists()


def test_strip_source_keeps_indentation_and_the_rest():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nz = 2"
    assert strip_source(src, ["# YOUR CODE HERE", "raise NotImplementedError()"], "cell") == \
        "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nz = 2"


@pytest.mark.parametrize("src", ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_an_error(src):
    with pytest.raises(ValueError, match="SOLUTION"):
        strip_source(src, ["stub"], "cell 3")


def test_strip_notebook_drops_solution_only_cells_and_outputs():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
                                  outputs=[nbformat.v4.new_output("stream", text="hi")], execution_count=3),
        nbformat.v4.new_code_cell("assert_all_passed()", metadata={"tags": ["solution-only"]})])
    out = strip_notebook(nb)
    assert len(out.cells) == 1 and out.cells[0].outputs == [] and out.cells[0].execution_count is None
    assert 'raise NotImplementedError("not implemented yet")' in out.cells[0].source
    assert "return 1" in nb.cells[0].source  # the solution notebook itself is untouched


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_are_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


def test_every_exercise_has_a_solution_and_a_check_cell():
    for name, (notebook, *_rest) in EXERCISES.items():
        nb = nbformat.read(ROOT / "solutions" / f"{notebook}.ipynb", as_version=4)
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        at = next(i for i, s in enumerate(sources) if f"check_{name}(" in s and "import" not in s)
        assert "### BEGIN SOLUTION" in sources[at - 1] or "### BEGIN SOLUTION" in sources[at - 2], \
            f"{notebook}: the check of {name} should come right after its exercise"


def test_blank_exercises_run_to_the_end_and_say_not_implemented(tmp_path):
    """Every exercise notebook runs without an error, and every check says "not implemented yet"."""
    verdicts = []
    for path in sorted((ROOT / "exercises").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any error
        verdicts += [line for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                     if out.get("name") == "stdout" for line in out.text.splitlines() if line.startswith("[")]
    titles = {spec[1]: name for name, spec in EXERCISES.items()}
    assert sorted(v.split("] ")[1].split(" (")[0] for v in verdicts) == sorted(titles)
    assert all(v.startswith("[TODO]") and v.endswith("not implemented yet") for v in verdicts), verdicts
