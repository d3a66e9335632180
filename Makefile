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

DEMO_PORT ?= 8765

demo: install
	$(VENV)/bin/liverec demo
	rm -rf runs/registry
	$(VENV)/bin/liverec export runs/demo-mf --to runs/registry
	@# serve the exported model, wait until it is ready, one curl round trip, stop the server
	@$(VENV)/bin/liverec serve runs/registry --port $(DEMO_PORT) & pid=$$!; \
	trap "kill $$pid 2>/dev/null" EXIT; \
	for i in $$(seq 1 100); do curl -sf http://127.0.0.1:$(DEMO_PORT)/readyz >/dev/null && break; sleep 0.2; done; \
	echo "$$ curl 'http://127.0.0.1:$(DEMO_PORT)/v1/recommend?user=196&k=5'"; \
	curl -sf 'http://127.0.0.1:$(DEMO_PORT)/v1/recommend?user=196&k=5'; echo
	@# closed feedback loop: simulated users click served items -> POST /v1/events -> embedded
	@# SQLite log -> liverec online -> hot swap; the hit rate is printed as it improves
	$(VENV)/bin/liverec demo-loop --seconds 60 --out runs/demo-loop

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_eval.py

clean:
	rm -rf $(VENV) runs .pytest_cache
