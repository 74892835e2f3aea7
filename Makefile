# `make run` and `make test` set everything up on first use (a .venv in the repo) and then do their job.
# CPU machines get the CPU build of PyTorch; on a GPU machine install your own first:
#   make TORCH_SPEC="torch" run        (or any pip spec, e.g. a CUDA wheel index via PIP_EXTRA_INDEX_URL)
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
ARGS        ?=
DIR         ?= submissions
PYTHONS     ?= 3.10 3.12 3.13
PY          := $(VENV)/bin/python

.PHONY: setup run fast test test-pythons lessons exercises grade clean

# The 15,000 modules of torch, Jupyter & co. are compiled to bytecode once, on every core (pip does it on one: 84 s
# of a 2 min 34 s set-up on 2 cores, against 54 s here), so that no process compiles them again when it imports
# them (with PYTHONDONTWRITEBYTECODE set, as on this machine, each process would, for about 15 s per notebook kernel).
# compileall exits 1 on the few test files of other Python versions that torch ships: that is not a failure.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --no-compile -e ".[notebooks,test]"
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
	$(PY) -m ipykernel install --sys-prefix --name minirlhf --display-name "minirlhf" >/dev/null
	@if [ -d "$$HOME/.local/share/jupyter/kernels/minirlhf" ]; then \
	  echo "note: a user-wide kernel 'minirlhf' (from an older checkout) hides this checkout's own one from Jupyter:"; \
	  echo "      remove it with: rm -r $$HOME/.local/share/jupyter/kernels/minirlhf"; fi
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m minirlhf run $(ARGS)

fast: setup
	$(PY) -m minirlhf run --fast $(ARGS)

# one pytest worker per core (pytest-xdist), each file on one worker (a notebook's cells run in order in one
# kernel), in the order tests/conftest.py sets (not xdist's, by number of tests); workers that need the same
# trained run wait for the one training it (the stage cache's lock)
test: setup
	MINIRLHF_FAST=1 MINIRLHF_THREADS=1 MINIRLHF_JOBS=1 $(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --nbval-lax -p no:cacheprovider $(ARGS)

# Outside `make test`: on each Python of PYTHONS (from pyenv or PATH), in its own .venv-<version>, the tests
# of tests/ and a fast main job. Other Pythons than 3.11 download the PyPI build of torch (a CUDA build, GBs).
test-pythons:
	@for v in $(PYTHONS); do \
	  py=$$(ls -d $$HOME/.pyenv/versions/$$v*/bin/python$$v 2>/dev/null | tail -1); py=$${py:-$$(command -v python$$v)}; \
	  test -n "$$py" || { echo "python$$v not found: install it (pyenv install $$v) or leave it out of PYTHONS"; exit 1; }; \
	  echo "== Python $$v: $$py"; \
	  { test -x .venv-$$v/bin/python || $$py -m venv .venv-$$v; } && \
	  .venv-$$v/bin/python -m pip install --quiet --upgrade pip && \
	  .venv-$$v/bin/python -m pip install --quiet "$(TORCH_SPEC)" && \
	  .venv-$$v/bin/python -m pip install --quiet -e ".[notebooks,test]" && \
	  MINIRLHF_FAST=1 MINIRLHF_THREADS=1 MINIRLHF_HOME=runs-py$$v .venv-$$v/bin/python -m pytest -q -p no:cacheprovider tests && \
	  MINIRLHF_THREADS=1 MINIRLHF_HOME=runs-py$$v .venv-$$v/bin/python -m minirlhf run --fast || exit 1; \
	done

lessons: setup
	$(PY) -m minirlhf lessons --setting fast --seeds 0 1 2 $(ARGS)

exercises: setup
	$(PY) -m minirlhf make-exercises

grade: setup
	$(PY) -m minirlhf grade $(DIR) $(ARGS)

clean:
	rm -rf runs runs-py* .pytest_cache
