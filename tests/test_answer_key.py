"""The instructors' answer key keeps up with the notebooks' "Check your understanding" questions.

For every notebook in notebooks/ that has a "## Check your understanding" section, instructors/answer_key.md
must have a section "## NN · <the notebook's title>" with as many numbered answers as the notebook has
questions, and each answer's first line (the question, in italics) must start with the first six words of
the notebook's question. A question edited in a notebook without its answer fails here.

Fast: the notebooks are read as JSON and nothing is executed; this file imports no torch (tests/conftest.py,
which pytest loads for the whole suite, still does).
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KEY = ROOT / "instructors" / "answer_key.md"
HEADING = "## Check your understanding"
ITEM = re.compile(r"^(\d+)\. (.*)")           # a numbered line at the start of a line
KEY_SECTION = re.compile(r"^## (\d\d) · (.*)$")
WORDS = 6


def numbered_items(lines: list[str]) -> list[list[str]]:
    """The numbered items of a list: each item's lines, its first line (without "N. ") first."""
    items = []
    for line in lines:
        match = ITEM.match(line)
        if match:
            items.append([match.group(2)])
        elif items:
            items[-1].append(line)
    return items


def first_words(text: str, n: int = WORDS) -> list[str]:
    """The first n words, with markdown emphasis (asterisks) left out: the key puts questions in italics."""
    return text.replace("*", "").split()[:n]


def notebook_title_and_questions(path: Path) -> tuple[str, list[str]]:
    """The title after "# NN · " and the text of each question under "## Check your understanding"
    (the lines after the heading, up to the next heading in that cell)."""
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "markdown"]
    sources = ["".join(c["source"]) for c in cells]
    title = sources[0].splitlines()[0].removeprefix(f"# {path.name[:2]} · ")
    questions = []
    for source in sources:
        lines = source.splitlines()
        for start in [i for i, line in enumerate(lines) if line.strip() == HEADING]:
            section = []
            for line in lines[start + 1:]:
                if line.startswith("#"):
                    break
                section.append(line)
            questions += [" ".join(part.strip() for part in item) for item in numbered_items(section)]
    return title, questions


def key_sections() -> dict[str, tuple[str, list[list[str]]]]:
    """The answer key's sections: {"NN": (title, answers)}, each answer its list of lines."""
    sections, current = {}, None
    for line in KEY.read_text(encoding="utf-8").splitlines():
        match = KEY_SECTION.match(line)
        if match:
            current = match.group(1)
            sections[current] = (match.group(2), [])
        elif line.startswith("#"):
            current = None
        elif current is not None:
            sections[current][1].append(line)
    return {nn: (title, numbered_items(lines)) for nn, (title, lines) in sections.items()}


def test_the_key_exists_and_every_notebook_is_found():
    assert KEY.is_file(), f"{KEY.relative_to(ROOT)} is missing: it holds the answers to the notebooks' questions"
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_key_answers_every_question_of_the_notebook(path):
    title, questions = notebook_title_and_questions(path)
    nn = path.name[:2]
    if not questions:
        pytest.skip(f"{path.name} has no '{HEADING}' questions")
    sections = key_sections()
    fix = "update instructors/answer_key.md"
    assert nn in sections, (
        f"{path.name} has {len(questions)} questions but the answer key has no '## {nn} · {title}' section: {fix}")
    key_title, answers = sections[nn]
    assert key_title == title, f"{path.name} is titled {title!r}, its answer-key section {key_title!r}: {fix}"
    assert len(answers) == len(questions), (
        f"{path.name} has {len(questions)} questions, the answer key's section {nn} has {len(answers)} answers: {fix}")
    for number, (question, answer) in enumerate(zip(questions, answers), start=1):
        assert answer[0].startswith("*") and answer[0].endswith("*") and answer[0].count("*") == 2, (
            f"{path.name}, question {number}: the answer key's first line should be the question in italics, "
            f"*…*, with no other asterisk in it; got {answer[0]!r}: {fix}")
        assert first_words(answer[0]) == first_words(question), (
            f"{path.name}, question {number}: the notebook asks {question!r}, the answer key answers "
            f"{answer[0]!r}; its first line must start with the question's first {WORDS} words: {fix}")
        assert any(line.strip() for line in answer[1:]), (
            f"{path.name}, question {number}: the answer key repeats the question but gives no answer: {fix}")


def test_the_key_has_no_section_for_a_notebook_without_questions():
    with_questions = {p.name[:2] for p in NOTEBOOKS if notebook_title_and_questions(p)[1]}
    stale = sorted(set(key_sections()) - with_questions)
    assert not stale, (f"instructors/answer_key.md has sections {stale} for notebooks that do not exist or have no "
                       f"'{HEADING}' questions: remove them or update the notebooks")
