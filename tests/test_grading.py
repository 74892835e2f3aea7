"""`grade` on a class an instructor really gets: a full solution, a blank exercise, a partly correct one,
one that raises, six cheats, a vandal, a killer, junk, a malformed notebook, and a late one that runs past
its time limit. The honest get exactly their points, the cheats 0 with a note, and none may touch another."""
import csv
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from minirlhf.course.checks.core import POINTS
from minirlhf.course.grading import STATUSES, grade, labels

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 240  # per notebook: the full PPO notebook must fit
SLOW_TIMEOUT_S = 30   # the slow student is graded after the class, with --resume and a short limit
# (10 s was too short on a busy 2-core CI machine: the first cell's imports alone could take it)


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


def notebook(*sources) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    return nb


RIGHT_PAIRS = ("from minirlhf.course.checks import check_ranking_to_pairs\n"
               "check_ranking_to_pairs(lambda r: [(r[i], r[j]) for i in range(len(r)) for j in range(i + 1, len(r))])")
KL_CHECK = "from minirlhf.course.checks import check_kl_estimators\ncheck_kl_estimators(kl_k1, kl_k2, kl_k3)"
BLANK_KL = "def kl_k1(a, b): raise NotImplementedError\nkl_k2 = kl_k3 = kl_k1"
MARKER = "minirlhf-detached-cheat"


def cheats(class_dir: Path) -> dict[str, nbformat.NotebookNode]:
    """The six ways to full marks without the work the issue lists, and the ways to hurt a classmate."""
    grades = class_dir / "grades.csv"
    classmate = class_dir / "full" / "03_kl.ipynb"
    fake = '{"exercise": "kl_estimators", "status": "passed", "message": "", "points": 10, "max_points": 10}'
    return {
        # 1. "passed" lines where the old grader read its results, and a forged reply of the grader's protocol
        "forger": notebook(BLANK_KL, KL_CHECK, f"import os\nfor f in ('checks.jsonl', os.environ.get('MINIRLHF_CHECK_LOG', "
                           f"'log.jsonl')):\n    open(f, 'a').write({fake!r} + '\\n')\nprint({fake!r})",
                           "from IPython.display import publish_display_data\nfrom minirlhf.course.worker import MIME\n"
                           "from minirlhf.course.wire import encode\n"
                           "publish_display_data({MIME: encode({'value': {'kl_estimators': ()}})})"),
        # 2. the recorder called directly with a passing result
        "recorder": notebook(BLANK_KL, KL_CHECK, "from minirlhf.course.checks.core import CheckResult, record\n"
                             "record(CheckResult('kl_estimators', 'passed', 'trust me', 10, 10))"),
        # 3. the check's cases replaced by a no-op
        "noop": notebook(BLANK_KL, "import minirlhf.course.checks.kl as k\nk.cases_kl_estimators = lambda *a: None\n"
                         "import minirlhf.course.checks as c\nc.CASES['kl_estimators'] = lambda *a: None", KL_CHECK),
        # 4. one-line wrappers around the reference, by module attribute and by an alias kept early
        "wrapper": notebook("import minirlhf.kl\nfrom minirlhf.kl import kl_k3 as ref3\n"
                            "def kl_k1(a, b): return minirlhf.kl.kl_k1(a, b)\n"
                            "def kl_k2(a, b): return minirlhf.kl.kl_k2(a, b)\n"
                            "def kl_k3(a, b):\n    try:\n        return ref3(a, b)\n    except BaseException:\n"
                            "        return minirlhf.kl.kl_k3(a, b)", KL_CHECK),
        # 4b. the references kept before their names are rebound to decoys, and a controller whose `value`
        # replays its updates through the reference when the grader reads it
        "decoy": notebook("import minirlhf.kl as K\nreal = (K.kl_k1, K.kl_k2, K.kl_k3)\n"
                          "K.kl_k1 = K.kl_k2 = K.kl_k3 = lambda a, b: a * 0\n"
                          "def kl_k1(a, b): return real[0](a, b)\ndef kl_k2(a, b): return real[1](a, b)\n"
                          "def kl_k3(a, b): return real[2](a, b)", KL_CHECK,
                          "from minirlhf.kl import AdaptiveKLController as Ref\n"
                          "class AdaptiveKLController:\n"
                          "    def __init__(self, *args):\n        self.args, self.calls = args, []\n"
                          "    def update(self, kl, n):\n        self.calls.append((kl, n))\n"
                          "    @property\n    def value(self):\n        c = Ref(*self.args)\n"
                          "        for call in self.calls:\n            c.update(*call)\n        return c.value\n"
                          "from minirlhf.course.checks import check_adaptive_kl\n"
                          "check_adaptive_kl(AdaptiveKLController)"),
        # 5. the solution cells executed from solutions/ next to the installed package
        "reader": notebook("import json, minirlhf, pathlib\nsol = pathlib.Path(minirlhf.__file__).parent.parent / "
                           "'solutions' / '03_kl.ipynb'\nimport torch\nexec(json.loads(sol.read_text())['cells'][3]['source'] "
                           "if isinstance(json.loads(sol.read_text())['cells'][3]['source'], str) else "
                           "''.join(json.loads(sol.read_text())['cells'][3]['source']))", KL_CHECK),
        # 6. a detached process that rewrites grades.csv after the grader is done
        "detached": notebook(RIGHT_PAIRS, f"import subprocess\nsubprocess.Popen(['bash', '-c', 'exec -a {MARKER} "
                             f"bash -c \"sleep 3; echo student,999 > {grades}\"'], start_new_session=True)"),
        # a classmate's notebook overwritten, and the grader's process killed
        "vandal": notebook(RIGHT_PAIRS, f"import shutil\nopen({str(classmate)!r}, 'w').write('{{}}')\n"
                           f"shutil.rmtree({str(class_dir / 'full')!r})"),
        "killer": notebook(RIGHT_PAIRS, "import os, signal\nfor pid in (os.getppid(), int(os.environ.get("
                           "'JPY_PARENT_PID', 0))):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
                           "    except OSError as e:\n        print(e)\nos.kill(-1, signal.SIGKILL)"),
        # junk where a check log was, and on stdout: costs nothing
        "junk": notebook(RIGHT_PAIRS, "print('junk')\nopen('checks.jsonl', 'a').write('junk\\n[1, 2]\\n')"),
    }


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
    for name, nb in cheats(class_dir).items():
        nbformat.write(nb, class_dir / f"{name}.ipynb")
    # a folder with a link to a file only the grader's user may read: copied as a link, never followed
    secret = tmp_path_factory.mktemp("instructor") / "secret.txt"
    secret.write_text("the answers")
    secret.chmod(0o600)
    (class_dir / "linker").mkdir()
    (class_dir / "linker" / "notes.txt").symlink_to(secret)
    nbformat.write(notebook(RIGHT_PAIRS, "print(open('notes.txt').read())"), class_dir / "linker" / "mine.ipynb")
    broken = json.loads(nbformat.writes(notebook(RIGHT_PAIRS)))
    broken["cells"][0]["source"] = 42   # a cell whose source is not text
    (class_dir / "malformed.ipynb").write_text(json.dumps(broken))
    out = class_dir / "grades.csv"
    grade(class_dir, out, timeout_s=TIMEOUT_S, jobs=2, verbose=True, as_json=True)
    time.sleep(4)   # the detached process would have written grades.csv by now
    alive = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    csv_after_class = out.read_text()
    # a late submission: 120 cells of 0.9 s, a check handed in first, graded into the same CSV with a 30 s limit
    nbformat.write(notebook(RIGHT_PAIRS, *["import time\ntime.sleep(0.9)"] * 120), class_dir / "slow.ipynb")
    # and one whose second cell never ends (a blocking kernel client waited for it forever)
    nbformat.write(notebook(RIGHT_PAIRS, "while True:\n    pass"), class_dir / "endless.ipynb")
    started = time.monotonic()
    rows = grade(class_dir, out, timeout_s=SLOW_TIMEOUT_S, verbose=True, resume=True, jobs=2)
    yield {"rows": {r["student"]: r for r in rows}, "out": out, "alive": alive, "csv_after_class": csv_after_class,
           "slow_seconds": time.monotonic() - started, "secret": secret}
    mp.undo()


def test_full_solution_gets_full_marks(graded):
    full = graded["rows"]["full"]
    assert full["total"] == sum(POINTS.values()) == full["max"]
    # an exact copy of the solution is noted, not zeroed
    assert full["notes"].startswith("the solution's code, character for character: 1.1, 1.2,"), full["notes"]


def test_blank_exercise_scores_zero(graded):
    blank = graded["rows"]["blank"]
    assert blank["total"] == 0
    assert {blank["exercises"][n]["status"] for n in ("ranking_to_pairs", "bradley_terry_loss")} == {"not implemented"}
    assert blank["exercises"]["gae"]["status"] == "not run"


def test_partly_correct_gets_the_right_partial_score(graded):
    partial = graded["rows"]["partial"]
    assert partial["bradley_terry_loss"] == 0 and partial["exercises"]["bradley_terry_loss"]["status"] == "failed"
    assert partial["total"] == POINTS["ranking_to_pairs"] + POINTS["score_at_last_token"]


def test_a_notebook_that_raises_keeps_what_ran(graded):
    raises = graded["rows"]["raises"]
    assert raises["total"] == POINTS["kl_estimators"]
    assert "RuntimeError" in raises["notes"] and "SyntaxError" in raises["notes"]


@pytest.mark.parametrize("student", ["forger", "recorder", "noop", "wrapper", "decoy", "reader"])
def test_a_cheat_scores_zero_for_the_cheated_exercise(graded, student):
    row = graded["rows"][student]
    assert row["total"] == 0, (student, row["exercises"]["kl_estimators"])


def test_each_cheat_leaves_a_note_naming_what_was_seen(graded):
    rows = graded["rows"]
    assert rows["forger"]["exercises"]["kl_estimators"]["status"] == "not implemented"
    assert "published an answer of the grader's protocol itself" in rows["forger"]["notes"]
    assert "printed a verdict the grader did not give" in rows["recorder"]["notes"]
    assert rows["noop"]["exercises"]["kl_estimators"]["status"] == "not implemented"
    assert "the notebook replaced the checks'" in rows["noop"]["notes"]
    assert "minirlhf.course.checks.kl.cases_kl_estimators" in rows["noop"]["notes"]
    assert "called the package's minirlhf.kl.kl_k1" in rows["wrapper"]["notes"]
    assert "called the package's minirlhf.kl.kl_k1" in rows["decoy"]["notes"]
    assert "called the package's minirlhf.kl.AdaptiveKLController.__init__" in rows["decoy"]["notes"]
    assert "FileNotFoundError" in rows["reader"]["notes"]   # no solutions/ in the sandbox


def test_a_detached_process_dies_with_the_notebook(graded):
    assert graded["alive"] == []
    assert "999" not in graded["csv_after_class"]
    assert graded["rows"]["detached"]["total"] == POINTS["ranking_to_pairs"]


def test_a_classmate_cannot_touch_your_grade(graded):
    rows = graded["rows"]
    assert rows["full"]["total"] == sum(POINTS.values())   # the vandal ran beside them (--jobs 2)
    assert rows["vandal"]["total"] == POINTS["ranking_to_pairs"] and "FileNotFoundError" in rows["vandal"]["notes"]
    assert rows["junk"]["total"] == POINTS["ranking_to_pairs"]
    # the grader's process is out of its reach (another PID namespace, another user): only the kernel could die
    assert rows["killer"]["total"] == POINTS["ranking_to_pairs"] and "ProcessLookupError" in rows["killer"]["notes"]
    assert rows["malformed"]["total"] == 0 and "unreadable" in rows["malformed"]["notes"]


def test_a_link_in_a_submission_reaches_nothing_of_the_graders(graded):
    linker = graded["rows"]["linker"]
    assert linker["total"] == POINTS["ranking_to_pairs"]
    assert "cell 1: FileNotFoundError" in linker["notes"] or "cell 1: PermissionError" in linker["notes"]
    stat = graded["secret"].stat()
    assert (stat.st_uid, stat.st_mode & 0o777) == (os.getuid(), 0o600)   # not handed to the sandbox's user


def test_the_time_limit_is_the_whole_notebooks_and_what_ran_counts(graded):
    slow = graded["rows"]["slow"]
    assert f"timeout after {SLOW_TIMEOUT_S} s" in slow["notes"]
    assert slow["total"] == POINTS["ranking_to_pairs"], slow["notes"]
    # a limit per cell would let 120 cells of 0.9 s run 108 s
    assert graded["slow_seconds"] < SLOW_TIMEOUT_S + 45   # + the sandbox's start and the checks
    endless = graded["rows"]["endless"]   # interrupted at the limit, its handed-in check graded
    assert f"timeout after {SLOW_TIMEOUT_S} s" in endless["notes"]
    assert endless["total"] == POINTS["ranking_to_pairs"], endless["notes"]


def test_the_csvs_have_a_row_per_student_and_the_same_labels_as_the_console(graded):
    out = graded["out"]
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert [r["student"] for r in table] == sorted(graded["rows"])
    assert list(labels().values()) == list(table[0])[1:len(POINTS) + 1]
    with open(out.with_name("grades-exercises.csv")) as f:
        long = list(csv.DictReader(f))
    assert len(long) == len(table) * len(POINTS)
    assert set(r["status"] for r in long) <= set(STATUSES)
    wrapper = next(r for r in long if r["student"] == "wrapper" and r["exercise"] == "3.1")
    assert wrapper["status"] == "failed" and "kl_k1" in wrapper["message"] and wrapper["points"] == "0"
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["exercises"]["3.1"]["name"] == "kl_estimators"


@pytest.mark.parametrize("home", ["default", "relative"])
def test_a_student_previews_the_graders_verdict(home, tmp_path, capsys, monkeypatch):
    """Also with a relative MINIRLHF_HOME (`make test-pythons` sets one): the sandboxed kernel starts in the
    submission's folder, and was once handed that relative path, which it could not mount (every kernel died)."""
    from minirlhf.course.grading import main
    from minirlhf.pipeline import default_home
    if home == "relative":
        monkeypatch.setenv("MINIRLHF_HOME", os.path.relpath(default_home(), tmp_path))
        monkeypatch.chdir(tmp_path)
        assert default_home().is_absolute() and default_home().samefile(Path(os.environ["MINIRLHF_HOME"]))
    nbformat.write(notebook(RIGHT_PAIRS, BLANK_KL, KL_CHECK), tmp_path / "mine.ipynb")
    assert main(["--self", str(tmp_path / "mine.ipynb"), "--timeout", "120"]) == 0
    out = capsys.readouterr().out
    assert "2.1 Rankings to pairs: passed, 5/5 points" in out
    assert "3.1 KL estimators k1, k2, k3: not implemented, 0/10 points" in out


def test_a_grader_stopped_half_way_keeps_its_rows_and_resumes(tmp_path, monkeypatch):
    import minirlhf.course.grading as grading

    for student in ("ann", "bob", "cat"):
        nbformat.write(notebook("1 + 1"), tmp_path / f"{student}.ipynb")
    seen = []

    def fake(path, timeout_s, student="", isolate=True):   # no kernels: what the grader keeps is the question here
        seen.append(student)
        if student == "bob" and len(seen) == 2:
            raise KeyboardInterrupt   # the instructor's Ctrl-C, or a killed grader
        return grading.NotebookRun(student, path.name, "finished", 0.1, [],
                                   [{"exercise": "sft_loss", "status": "passed", "message": ""}])

    monkeypatch.setattr(grading, "run_notebook", fake)
    with pytest.raises(KeyboardInterrupt):
        grade(tmp_path, timeout_s=10, verbose=False)
    with open(tmp_path / "grades.csv") as f:
        assert [r["student"] for r in csv.DictReader(f)] == ["ann"]
    rows = grade(tmp_path, timeout_s=10, verbose=False, resume=True)
    assert seen == ["ann", "bob", "bob", "cat"], "ann is not graded twice"
    assert [r["student"] for r in rows] == ["ann", "bob", "cat"] and all(r["total"] == POINTS["sft_loss"] for r in rows)


def test_the_grader_reads_the_cache_beside_a_run_that_is_building_a_stage(tmp_path):
    """A notebook tested beside the grader builds a stage in the same cache: its temporary folder (renamed into
    place at any moment) and lock are no stage a kernel loads, so the grader's cache checks leave them alone."""
    from minirlhf.course.grading import GraderError, readable_by_all, verify_cache
    from minirlhf.pipeline import cache

    stage = tmp_path / "fast" / "reward-0123456789"
    (stage / "model").mkdir(parents=True)
    (stage / "model" / "model.safetensors").write_bytes(b"weights")
    (stage / cache.LOG).write_text("{}")
    cache.write_manifest(stage, {})
    stage_file = stage / "model" / "model.safetensors"
    stage_file.chmod(0o600)   # as safetensors writes it
    # a run half-way through writing the next stage: its log written, its manifest not yet true to its files
    building = tmp_path / "fast" / ".reward-abcdef0123.k2x9q1"
    shutil.copytree(stage, building)
    (building / "model" / "model.safetensors").write_bytes(b"half-written")
    (building / "model" / "model.safetensors").chmod(0o000)
    (tmp_path / "fast" / ".reward-abcdef0123.lock").touch()

    verify_cache(tmp_path)   # not refused: the finished stage is sound, the other is not finished
    readable_by_all(tmp_path)   # not refused as unreadable (a user), or made readable (root): not the cache's yet
    assert (building / "model" / "model.safetensors").stat().st_mode & 0o777 == 0o000
    assert stage_file.stat().st_mode & 0o777 == (0o644 if os.getuid() == 0 else 0o600)
    stage_file.write_bytes(b"other weights")   # and a damaged finished stage is still refused (another size:
    # the cache trusts a file whose size and time are those it checked, and the time may not have moved yet)
    with pytest.raises(GraderError, match="damaged"):
        verify_cache(tmp_path)
