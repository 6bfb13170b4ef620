# Two commands matter: `make demo` and `make test` (each sets everything up first).
PYTHON_VERSION := 3.10
VENV := .venv
PY := $(VENV)/bin/python
UV := python3 -m uv
PYTEST_ARGS ?=
# pytest-xdist, one test file a worker (module fixtures stay shared): much of the suite is
# single-threaded (subprocess start-ups, Beam's DirectRunner), so 2 workers use 2 cores.
# At most 4: every worker holds TensorFlow and its own session fixtures.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

.PHONY: setup demo lint test test-fast bench lock clean

setup: $(VENV)/.installed

# uv installs the locked set in ~30 s; pip's resolver does not finish on TFX.
# --compile-bytecode: without .pyc files every process compiles TensorFlow, Beam and TFX again
# (importing them: 17.6 CPU s instead of 6.8), as happens wherever PYTHONDONTWRITEBYTECODE is set.
$(VENV)/.installed: requirements.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) venv --quiet --allow-existing --python $(PYTHON_VERSION) $(VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

demo: setup
	$(VENV)/bin/colorize run --config configs/demo.yaml

# Google Python style checks (ruff.toml says which rules and why some are off).
lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: lint
	$(PY) -m pytest -m "not slow" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.run

# Re-pin every dependency after changing pyproject.toml (the pins already in the lock are kept).
lock:
	$(UV) pip compile pyproject.toml --extra kfp --extra test --python-version $(PYTHON_VERSION) \
	  --python-platform x86_64-manylinux_2_36 -o requirements.lock

clean:
	rm -rf colorize_runs bench_results
