"""`grade` on a class of five: a full solution, a blank exercise, a partly correct one, one that
raises, one that never ends. Each must get exactly its points, and none may stop the others."""
import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from minirlhf.course.checks.core import POINTS
from minirlhf.course.grading import grade

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 240  # per notebook: the full PPO notebook must fit, the endless one must hit it
# two notebooks at a time: the endless one waits out its time limit while the others run


def edited(notebook: str, edit) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "solutions" / f"{notebook}.ipynb", as_version=4)
    edit(nb.cells)
    return nb


def replace_in(cells, old: str, new: str) -> None:
    cell = next(c for c in cells if old in c.source)
    cell.source = cell.source.replace(old, new)


def insert_after(cells, marker: str, source: str) -> None:
    i = next(i for i, c in enumerate(cells) if marker in c.source)
    cells.insert(i + 1, nbformat.v4.new_code_cell(source))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINIRLHF_FAST", "1")  # the kernels inherit it: the small PPO
    # train (or load) the stages once here, so the PPO notebook's time limit covers PPO only
    from minirlhf.pipeline import Pipeline
    Pipeline().stage_dir("reward")

    class_dir = tmp_path_factory.mktemp("submissions")
    (class_dir / "full").mkdir()
    for src in sorted((ROOT / "solutions").glob("*.ipynb")):
        shutil.copy(src, class_dir / "full" / src.name)
    shutil.copy(ROOT / "exercises" / "02_reward_model.ipynb", class_dir / "blank.ipynb")
    # right pairs and reward head, Bradley-Terry with the wrong sign
    nbformat.write(edited("02_reward_model", lambda cells: replace_in(
        cells, "return -F.logsigmoid(r_chosen - r_rejected).mean()",
        "return F.logsigmoid(r_chosen - r_rejected).mean()")), class_dir / "partial.ipynb")

    def crash(cells):  # a cell that raises, and an exercise that does not even compile
        insert_after(cells, "check_kl_estimators(kl_k1", 'raise RuntimeError("the student broke this")')
        replace_in(cells, "class AdaptiveKLController:", "class AdaptiveKLController(:")
    nbformat.write(edited("03_kl", crash), class_dir / "raises.ipynb")
    nbformat.write(edited("01_logprobs_and_sft", lambda cells: insert_after(
        cells, "check_response_logprobs(response_logprobs)", "import time\nwhile True:\n    time.sleep(0.1)")),
        class_dir / "endless.ipynb")

    out = class_dir / "grades.csv"
    rows = grade(class_dir, out, timeout_s=TIMEOUT_S, jobs=2, verbose=True)
    yield {r["student"]: r for r in rows}, out
    mp.undo()


def test_full_solution_gets_full_marks(graded):
    rows, _ = graded
    assert rows["full"]["total"] == sum(POINTS.values()) == rows["full"]["max"]
    assert rows["full"]["notes"] == ""


def test_blank_exercise_scores_zero(graded):
    rows, _ = graded
    assert rows["blank"]["total"] == 0


def test_partly_correct_gets_the_right_partial_score(graded):
    rows, _ = graded
    assert rows["partial"]["bradley_terry_loss"] == 0
    assert rows["partial"]["total"] == POINTS["ranking_to_pairs"] + POINTS["score_at_last_token"]


def test_a_notebook_that_raises_keeps_what_ran(graded):
    rows, _ = graded
    assert rows["raises"]["total"] == POINTS["kl_estimators"]
    assert "RuntimeError" in rows["raises"]["notes"] and "SyntaxError" in rows["raises"]["notes"]


def test_an_endless_notebook_times_out_and_keeps_what_ran(graded):
    rows, _ = graded
    assert rows["endless"]["total"] == POINTS["response_logprobs"]
    assert "timeout" in rows["endless"]["notes"]


def test_the_csv_has_a_row_per_student_and_a_column_per_exercise(graded):
    _, out = graded
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert [r["student"] for r in table] == ["blank", "endless", "full", "partial", "raises"]
    assert set(POINTS) <= set(table[0])
