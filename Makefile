# vector-trainer: two commands matter, `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,vectorwave-lite
# vectorwave without its dependencies (they would pull torch); its Lite-mode needs come from the extra above.
VECTORWAVE_NODEPS ?= vectorwave==1.0.2
# Re-install whenever pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell { cat pyproject.toml; echo '$(VECTORWAVE_NODEPS)'; } | cksum | cut -d' ' -f1)

.PHONY: demo test test-faults bench venv clean help

help:
	@echo "make demo   - embedded broker + processor + realistic traffic, then a summary"
	@echo "make test   - create/update the venv, check the import floors (lint-imports) and run the tests"
	@echo "make test-faults - fault injection: kill -9, broker stall, 1->2->1 rebalance, burst (minutes)"
	@echo "make bench  - run the benchmarks, JSON into bench-results/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps '$(VECTORWAVE_NODEPS)'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: venv
	$(BIN)/vector-trainer demo $(DEMO_ARGS)

# lint-imports first: the floors (pyproject.toml, [tool.importlinter]) are part of the tests.
test: venv
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Tests that take minutes each (own broker per module); their figures are printed as FIGURE lines.
test-faults: venv
	$(BIN)/python -m pytest -m faults -s $(PYTEST_ARGS) tests

bench: venv
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .vt-state .vt-demo bench-results .pytest_cache plots
