# Two commands on a fresh machine with only Python 3.11 and pip: `make demo`, `make test`.
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_HOME ?= $(CURDIR)/var/prefect
# The ephemeral server needs longer than its default 20 s to start on a busy 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: setup demo test lint bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

setup: $(VENV)/.synced

# Prefect makes its home but not the folders above it; a fresh checkout has no var/ yet.
demo: setup
	mkdir -p $(PREFECT_HOME)
	$(VENV)/bin/permitwatch demo

test: setup
	mkdir -p $(PREFECT_HOME)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf var .pytest_cache
