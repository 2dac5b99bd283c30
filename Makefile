# Two commands do everything on a fresh machine: `make demo` (the main job) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
UV := python3 -m uv
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install system-deps test test-fast demo airflow stack lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv with the locked stack (installs uv first if missing)

$(VENV)/.installed: pyproject.toml uv.lock
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode --python python3.11  # .pyc up front: imports 3x faster
	@touch $@

system-deps:  ## Debian packages the tests need (chromium, postgresql, redis-server); skipped when present
	bash scripts/install-system-deps.sh

test: install system-deps  ## install if needed, then the whole suite (unit to end-to-end)
	$(PY) -m pytest -n 2 --dist loadgroup --no-loadscope-reorder

test-fast: install  ## the tests that need no Beam/TF/TFMA/Airflow run
	$(PY) -m pytest -m "not slow and not e2e"

demo: install  ## the main job: stage Adult, a real Airflow run of retrain_adult, print the outcome
	bash scripts/demo.sh

airflow: install  ## airflow standalone on 127.0.0.1 with these DAGs
	bash scripts/airflow-standalone.sh

stack: install system-deps  ## the CeleryExecutor stack without Docker (PostgreSQL, Redis, 2 workers)
	bash scripts/stack.sh

lint: install  ## ruff and the type checker (mypy, settings in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install  ## every benchmarks/bench_*.py; results land in benchmarks/results/
	@set -e; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:  ## remove the artifact store (var/); keeps .venv
	rm -rf var
