# The two commands a newcomer needs: `make run` and `make test`. Everything they need is set up here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the tests talk to for real, as command:package pairs.
TEST_DEBS ?=
# Operations (issue 3): a real Prometheus and promtool, systemd-analyze, and setpriv with a python3.11
# that an unprivileged user can run, for the wheel test.
TEST_DEBS += /usr/bin/prometheus:prometheus promtool:prometheus systemd-analyze:systemd setpriv:util-linux \
	/usr/bin/python3.11:python3.11
# Fleet (issue 5): a real Redis for the shared cache tests.
TEST_DEBS += redis-server:redis-server
# Benchmarks (issue 6): the smoke test drives wrk; `make bench` also needs nginx and Node.js.
TEST_DEBS += wrk:wrk
BENCH_DEBS ?= wrk:wrk /usr/sbin/nginx:nginx node:nodejs

# Reliability (issue 7): Node.js jose as a real verifier, unshare/mount for a full or read-only state dir.
TEST_DEBS += node:nodejs npm:npm unshare:util-linux mount:mount
# Federation (issue 13): Debian's nginx in front of jwksd, with the shipped config/nginx/jwksd.conf.
TEST_DEBS += /usr/sbin/nginx:nginx
# Status page (issue 15): Debian's chromium, driven headless by playwright-core from tests/node.
TEST_DEBS += /usr/bin/chromium:chromium
NODE_DIR   := tests/node
NODE_STAMP := $(NODE_DIR)/node_modules/.package-lock.json
FUZZ_STAMP := $(VENV)/.fuzz-installed
FUZZ_SECONDS ?= 60
DURATION ?= 300

.PHONY: run test lint typecheck pytest deps clean bench fuzz soak

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

# jose from the npm registry into tests/node/node_modules (git-ignored), exactly as locked.
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json | deps
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund
	@touch $@

$(FUZZ_STAMP): $(STAMP) setup.cfg
	$(PY) -m pip install --quiet -e '.[fuzz]'
	@touch $@

# Coverage-guided fuzzing of the validator (atheris); crashes land in fuzz/crashes/.
fuzz: $(FUZZ_STAMP)
	@mkdir -p build/fuzz-corpus fuzz/crashes
	$(PY) fuzz/fuzz_validate.py -max_total_time=$(FUZZ_SECONDS) -dict=fuzz/jwk.dict \
		-artifact_prefix=fuzz/crashes/ build/fuzz-corpus fuzz/corpus

# Load, rotations and AWS faults against a real jwksd for DURATION seconds (a 30 s form runs in make test).
soak: $(STAMP)
	$(PY) -m tests.soak --duration $(DURATION)

pytest: $(STAMP) deps $(NODE_STAMP) $(FUZZ_STAMP)
	@# 89% when the floor was set; daemon.py and demo.py run only in subprocesses and are not counted.
	$(VENV)/bin/pytest --cov=jwksd --cov-report=term:skip-covered --cov-fail-under=85

test: lint typecheck pytest

# Not part of `make test`: about 20 minutes (BENCH_QUICK=1 for a short look); writes BENCHMARKS.md.
bench: $(STAMP)
	@scripts/debian-deps $(BENCH_DEBS)
	$(PY) -m pip install --quiet -e '.[test,demo,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .coverage
