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
TIMEOUT_S = 240  # per notebook: the full PPO notebook must fit
ENDLESS_TIMEOUT_S = 60   # the endless student is graded after the class, with --resume and a shorter limit


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
    out = class_dir / "grades.csv"
    grade(class_dir, out, timeout_s=TIMEOUT_S, jobs=2, verbose=True)
    # a late submission that never ends: graded into the same CSV, the class's rows kept (--resume)
    nbformat.write(edited("01_logprobs_and_sft", lambda cells: insert_after(
        cells, "check_response_logprobs(response_logprobs)", "import time\nwhile True:\n    time.sleep(0.1)")),
        class_dir / "endless.ipynb")
    rows = grade(class_dir, out, timeout_s=ENDLESS_TIMEOUT_S, verbose=True, resume=True)
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


# -- no grade is ever lost (each without the class above: short, and kernels only where they matter) --------

def notebook(*sources) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    return nb


RIGHT_PAIRS = ("from minirlhf.course.checks import check_ranking_to_pairs\n"
               "check_ranking_to_pairs(lambda r: [(r[i], r[j]) for i in range(len(r)) for j in range(i + 1, len(r))])")


def test_junk_in_the_check_log_and_a_malformed_notebook_cost_only_their_own_student(tmp_path):
    import json
    import os

    nbformat.write(notebook(RIGHT_PAIRS), tmp_path / "honest.ipynb")
    nbformat.write(notebook(RIGHT_PAIRS, "import os\nopen(os.environ['MINIRLHF_CHECK_LOG'], 'a').write('junk\\n[1, 2]\\n')"),
                   tmp_path / "junk.ipynb")
    broken = json.loads(nbformat.writes(notebook(RIGHT_PAIRS)))
    broken["cells"][0]["source"] = 42   # a cell whose source is not text
    (tmp_path / "malformed.ipynb").write_text(json.dumps(broken))
    rows = {r["student"]: r for r in grade(tmp_path, timeout_s=120, verbose=False)}
    assert sorted(rows) == ["honest", "junk", "malformed"]
    assert rows["honest"]["total"] == rows["junk"]["total"] == POINTS["ranking_to_pairs"]
    assert "2 line(s) of the check log were not check results" in rows["junk"]["notes"]
    assert rows["malformed"]["total"] == 0 and "unreadable" in rows["malformed"]["notes"]
    assert os.path.exists(tmp_path / "grades.csv")


def test_the_time_limit_is_the_whole_notebooks(tmp_path):
    from minirlhf.course.grading import run_notebook

    nbformat.write(notebook(*["import time\ntime.sleep(0.9)"] * 20), tmp_path / "slow.ipynb")
    run = run_notebook(tmp_path / "slow.ipynb", timeout_s=6)
    # each cell once got at least 1 s after the deadline: 60 cells of 0.9 s ran 58 s against a 30 s limit
    assert run.status == "timeout after 6 s" and run.seconds < 6 + 2


def test_a_grader_stopped_half_way_keeps_its_rows_and_resumes(tmp_path, monkeypatch):
    import minirlhf.course.grading as grading

    for student in ("ann", "bob", "cat"):
        nbformat.write(notebook("1 + 1"), tmp_path / f"{student}.ipynb")
    seen = []

    def fake(path, timeout_s, student=""):   # no kernels: what the grader keeps is the question here
        seen.append(student)
        if student == "bob" and len(seen) == 2:
            raise KeyboardInterrupt   # the instructor's Ctrl-C, or a killed grader
        return grading.NotebookRun(student, path.name, "finished", 0.1, [],
                                   [{"exercise": "sft_loss", "status": "passed"}])

    monkeypatch.setattr(grading, "run_notebook", fake)
    with pytest.raises(KeyboardInterrupt):
        grade(tmp_path, timeout_s=10, verbose=False)
    with open(tmp_path / "grades.csv") as f:
        assert [r["student"] for r in csv.DictReader(f)] == ["ann"]
    rows = grade(tmp_path, timeout_s=10, verbose=False, resume=True)
    assert seen == ["ann", "bob", "bob", "cat"], "ann is not graded twice"
    assert [r["student"] for r in rows] == ["ann", "bob", "cat"] and all(r["total"] == POINTS["sft_loss"] for r in rows)
