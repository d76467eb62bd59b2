# D-Scope Blink — set-up and common jobs. Needs only Python 3.11+ on the machine.
#   make run    set up, generate the built-in sample images and inspect them (results in demo/results/)
#   make test   set up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.dscope-installed
SAMPLES = demo/samples
RESULTS = demo/results

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/dscope synth --out $(SAMPLES) --n 12 --seed 1
	$(BIN)/dscope inspect $(SAMPLES) --out $(RESULTS) --fiber-type sm-pc --no-prompt

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_localization.py
	$(BIN)/python benchmarks/bench_detection.py
	$(BIN)/python benchmarks/bench_speed.py
	$(BIN)/python benchmarks/bench_grading.py

clean:
	rm -rf $(VENV) demo build dist *.egg-info .pytest_cache
