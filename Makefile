# tunesched: every target installs into .venv first (created if missing).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PB2    := proto/tunesched_pb2.py

.PHONY: demo test test-fast bench lint proto install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.lock setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(MAKE) --no-print-directory proto
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) $(PB2)
	$(VENV)/bin/tunesched demo

test: $(STAMP) $(PB2)
	$(PY) -m pytest -q

test-fast: $(STAMP) $(PB2)
	$(PY) -m pytest -q -m "not tvm and not slow"

bench: $(STAMP) $(PB2)
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_build.py
	$(PY) bench/bench_policies.py
	$(PY) bench/bench_overhead.py
	$(PY) bench/bench_memory.py
	$(PY) bench/bench_single.py
	$(PY) bench/bench_ways.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

proto: $(PY)
	$(PY) -m proto.generate

# generated code is not committed: regenerate when the contract changes
$(PB2): proto/tunesched.proto | $(STAMP)
	$(PY) -m proto.generate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
