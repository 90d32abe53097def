# Two commands for a newcomer: `make demo` and `make test`. Both bootstrap the
# virtual environment from requirements.lock on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test lint pytest torture demo sim run bench lock clean

$(VENV)/.installed: requirements.lock pyproject.toml
	@# System tools the tests use: shellcheck lints the install script.
	command -v shellcheck >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; } || \
		echo "shellcheck unavailable: the install script will not be linted"
	@# chromium renders the storefront in its browser test (which installs it too, or skips).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium unavailable: the storefront's browser test will be skipped"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

test: lint pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

# Two workers: most tests wait on simulated time, not on the CPU. A test module stays
# on one worker (its tests may share a simulator's fixed ports); parallel worlds get
# loopback pools of their own (sim/loopback.py).
pytest: $(VENV)/.installed
	$(BIN)/pytest -q -n 2 --dist loadfile

# The full torture tests (crash, chaos, bad input, secrets, load): each prints what it
# tried and a last line `NAME lost=N PASS|FAIL`. Their quick versions run in `make test`.
torture: $(VENV)/.installed
	TORTURE=full $(BIN)/pytest -q -s -p no:logging tests/torture

demo: $(VENV)/.installed
	$(BIN)/openclaw-hosted demo

sim: $(VENV)/.installed
	$(BIN)/openclaw-hosted sim

run: $(VENV)/.installed
	$(BIN)/openclaw-hosted run

# Five benchmarks, each a ratio measured in one run (as root: simulated servers);
# each ends with `NAME ratio=… target=… PASS|FAIL`, and a FAIL does not stop the others.
BENCHES := webhook_ingest time_to_ready health_sweep admin_scale memory
bench: $(VENV)/.installed
	-@for name in $(BENCHES); do echo "== bench.$$name"; $(BIN)/python -u -m bench.$$name; done

# Re-pin after changing pyproject.toml dependencies.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q --upgrade pip && .lockenv/bin/pip install -q -e '.[dev]'
	.lockenv/bin/pip freeze --exclude-editable > requirements.lock && rm -rf .lockenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
