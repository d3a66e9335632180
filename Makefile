# Two entry points for a fresh machine: `make demo` and `make test` (both install first if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export LIVEREC_DATA ?= $(abspath ../shared/data)

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned here: plain `pip install torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: install
	$(VENV)/bin/liverec demo

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_eval.py

clean:
	rm -rf $(VENV) runs .pytest_cache
