# Two commands set up a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow bench bench-slow bench-real lint clean

install: $(STAMP)

# torch is pinned and installed first so pip never resolves a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/sarfuse demo

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

# The speed suite (benchmarks/README.md): one table, benchmarks/results/latest.json (~10 min on a
# quiet 2-core machine once its scenes exist; the first run generates them, ~10 min more).
bench: install
	$(BIN)/python benchmarks/run_all.py

# The same plus a synthetic full Sentinel-2 tile (10980^2) generated and mapped (~10 min more).
bench-slow: install
	$(BIN)/python benchmarks/run_all.py --full-tile

# Few-label mapping on the real chips in ../shared/data (not part of make test; ~1 h on 2 cores).
bench-real: install
	$(BIN)/python benchmarks/real_fewlabel.py

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) demo_out demo_data .pytest_cache
