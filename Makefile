# `make run` and `make test` set everything up on first use (a .venv in the repo) and then do their job.
# CPU machines get the CPU build of PyTorch; on a GPU machine install your own first:
#   make TORCH_SPEC="torch" run        (or any pip spec, e.g. a CUDA wheel index via PIP_EXTRA_INDEX_URL)
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
ARGS        ?=
DIR         ?= submissions
PY          := $(VENV)/bin/python

.PHONY: setup run fast test lessons exercises grade clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[notebooks,test]"
	$(PY) -m ipykernel install --user --name minirlhf --display-name "minirlhf" >/dev/null
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m minirlhf run $(ARGS)

fast: setup
	$(PY) -m minirlhf run --fast $(ARGS)

test: setup
	MINIRLHF_FAST=1 MINIRLHF_THREADS=1 $(PY) -m pytest -q --nbval-lax -p no:cacheprovider $(ARGS)

lessons: setup
	$(PY) -m minirlhf lessons --setting fast --seeds 0 1 2 $(ARGS)

exercises: setup
	$(PY) -m minirlhf make-exercises

grade: setup
	$(PY) -m minirlhf grade $(DIR) $(ARGS)

clean:
	rm -rf runs .pytest_cache
