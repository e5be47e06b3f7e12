# The two commands a newcomer needs: `make run` and `make test`. Everything they need is set up here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the tests talk to for real, as command:package pairs.
TEST_DEBS ?=

.PHONY: run test lint typecheck pytest deps clean

$(STAMP): setup.cfg pyproject.toml
	@# Debian's python3 has no venv module until python3-venv is installed.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); scripts/debian-deps python3-venv:python3-venv \
		&& $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo]'
	@touch $@

deps:
	@scripts/debian-deps $(TEST_DEBS)

run: $(STAMP)
	$(VENV)/bin/jwksd demo

lint: $(STAMP)
	$(VENV)/bin/ruff check jwksd tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy jwksd

pytest: $(STAMP) deps
	$(VENV)/bin/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .coverage
