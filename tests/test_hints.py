"""Every mistake a check names fires its own hint: for each exercise, each (hint, submission) of the check's
own list of known mistakes is handed to the check, which must fail and say that hint. INSTRUCTORS.md's table
of mistakes is made from the same lists."""
import re
from pathlib import Path

import pytest

from minirlhf.course.checks import CASES, known_mistakes, mistakes_table
from minirlhf.course.checks.core import judge

ROOT = Path(__file__).resolve().parent.parent
MISTAKES = [(exercise, i, hint, submission) for exercise, found in known_mistakes().items()
            for i, (hint, submission) in enumerate(found)]


def as_student(obj):
    """The check refuses the package's own functions: hand in each one as a student's code would."""
    if isinstance(obj, type):
        return type(obj.__name__, (obj,), {"__module__": __name__})
    if callable(obj):
        def student(*args, **kwargs):
            return obj(*args, **kwargs)
        return student
    return obj


@pytest.mark.parametrize("exercise,i,hint,submission", MISTAKES,
                         ids=[f"{e}-{i}" for e, i, _, _ in MISTAKES])
def test_each_known_mistake_gets_its_own_hint(exercise, i, hint, submission):
    result = judge(exercise, CASES[exercise], *(as_student(obj) for obj in submission))
    assert result.status == "failed" and hint in result.message, (hint, result.status, result.message)


def test_instructors_table_of_mistakes_is_made_from_the_checks():
    text = (ROOT / "INSTRUCTORS.md").read_text()
    table = re.search(r"<!-- mistakes table[^\n]*-->\n(.*?)\n<!-- end of the mistakes table -->", text, re.S)
    assert table, "INSTRUCTORS.md lost the markers of its table of mistakes"
    assert table.group(1).strip() == mistakes_table(), \
        "the table of mistakes drifted from the checks: paste `python -c 'from minirlhf.course.checks import " \
        "mistakes_table; print(mistakes_table())'` between its markers"
