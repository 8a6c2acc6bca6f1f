# tunesched: every target installs into .venv first (created if missing).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PB2    := proto/tunesched_pb2.py

.PHONY: demo test test-fast bench lint proto install browser clean

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

test: $(STAMP) $(PB2) browser
	$(PY) -m pytest -q

test-fast: $(STAMP) $(PB2) browser
	$(PY) -m pytest -q -m "not tvm and not slow"

bench: $(STAMP) $(PB2)
	$(PY) bench/bench_stages.py
	$(PY) bench/bench_build.py
	$(PY) bench/bench_policies.py
	$(PY) bench/bench_overhead.py
	$(PY) bench/bench_memory.py
	$(PY) bench/bench_single.py
	$(PY) bench/bench_ways.py

# the dashboard's tests drive a real headless Chromium (Debian's chromium and chromium-driver)
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "the dashboard tests need chromium and chromedriver: run as root, or" \
	      "sudo apt-get install chromium chromium-driver" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

proto: $(PY)
	$(PY) -m proto.generate

# generated code is not committed: regenerate when the contract changes
$(PB2): proto/tunesched.proto | $(STAMP)
	$(PY) -m proto.generate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
