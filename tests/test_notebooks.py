"""The notebooks as a product: all ten present and in order, each one a lecture with learning goals,
the setting it runs in, and check-your-understanding questions — and stored WITHOUT outputs.

Storage policy (notebooks/README.md): the committed .ipynb files carry no outputs and no execution
counts, so diffs stay readable and no stale numbers from another setting are shipped. Clear them before
committing: `.venv/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`.

nbval executes the notebooks themselves (`make test`: pytest --nbval-lax collects notebooks/ through
pyproject's testpaths); the results that matter are assertions inside the notebooks.
"""
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _markdown(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def test_the_ten_notebooks_are_numbered_00_to_09():
    names = [p.name for p in PATHS]
    assert [n[:2] for n in names] == [f"{i:02d}" for i in range(10)], (
        f"expected notebooks 00_… to 09_… in notebooks/, found {names}")
    assert not [p.name for p in NOTEBOOKS.glob("*.ipynb") if p not in PATHS], \
        "every notebook in notebooks/ should be numbered (NN_name.ipynb)"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (
        f"{path.name}: code cells {dirty} carry outputs or execution counts; notebooks are stored without "
        "them. Run: .venv/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_is_a_lecture(path):
    nb = nbformat.read(path, as_version=4)
    md = _markdown(nb)
    assert md and md[0].startswith(f"# {path.name[:2]} · "), f"{path.name}: the first cell should be the title '# {path.name[:2]} · …'"
    assert "**Learning goals.**" in md[0], f"{path.name}: the title cell should list the learning goals"
    assert any("## Check your understanding" in m for m in md[-2:]), \
        f"{path.name}: one of the last cells should hold the check-your-understanding questions"
    assert any("## Recap" in m for m in md[-2:]), f"{path.name}: the notebook should end with a recap"
    assert any("Which setting does this notebook run in?" in m for m in md), \
        f"{path.name}: a cell should say which setting the notebook runs in"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "minirlhf" in code, f"{path.name}: notebooks import the package rather than copying its code"


def test_every_section_of_the_source_article_names_notebook_headings_that_exist():
    """notebooks/README.md maps the article's sections A1–A11 to `NN › heading`; each heading must be a heading
    of that notebook, and no section may be left without one."""
    import re

    readme = (NOTEBOOKS / "README.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (A\d+) \| [^|]+ \| ([^|]*) \|", readme, re.M)}
    assert sorted(rows, key=lambda a: int(a[1:])) == [f"A{i}" for i in range(1, 12)], sorted(rows)
    headings = {p.name[:2]: {line.lstrip("#").strip() for m in _markdown(nbformat.read(p, as_version=4))
                             for line in m.splitlines() if line.startswith("#")} for p in PATHS}
    for section, cell in rows.items():
        refs = [r.strip() for r in cell.split(";") if r.strip()]
        assert refs, f"{section} names no notebook"
        for ref in refs:
            number, _, heading = ref.partition(" › ")
            assert heading in headings.get(number, set()), f"{section}: notebook {number} has no heading {heading!r}"
