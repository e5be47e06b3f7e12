# The two commands a newcomer needs: `make run` and `make test`. Everything they need is set up here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the tests talk to for real, as command:package pairs.
TEST_DEBS ?=
# Operations (issue 3): a real Prometheus and promtool, systemd-analyze, setpriv for the unprivileged run.
TEST_DEBS += /usr/bin/prometheus:prometheus promtool:prometheus systemd-analyze:systemd setpriv:util-linux
# Fleet (issue 5): a real Redis for the shared cache tests.
TEST_DEBS += redis-server:redis-server
# Benchmarks (issue 6): the smoke test drives wrk; `make bench` also needs nginx and Node.js.
TEST_DEBS += wrk:wrk
BENCH_DEBS ?= wrk:wrk /usr/sbin/nginx:nginx node:nodejs

.PHONY: run test lint typecheck pytest deps clean bench

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
	$(VENV)/bin/ruff check jwksd tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy jwksd

pytest: $(STAMP) deps
	$(VENV)/bin/pytest

test: lint typecheck pytest

# Not part of `make test`: about 18 minutes (BENCH_QUICK=1 for a short look); writes BENCHMARKS.md.
bench: $(STAMP)
	@scripts/debian-deps $(BENCH_DEBS)
	$(PY) -m pip install --quiet -e '.[test,demo,bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .coverage
