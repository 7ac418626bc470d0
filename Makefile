# vector-trainer: two commands matter, `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Exact versions with hashes (see "Installing and the lock" in the README): `make venv`,
# `make demo` and `make test` install requirements.txt (the lock), the Dockerfile requirements/runtime.txt.
LOCK        := requirements.txt
# The same pins in the standard lock format (PEP 751), made from $(LOCK) by `make lock`, for tools that read it.
PYLOCK      := pylock.toml
LOCK_NODEPS := requirements/vectorwave-nodeps.txt
# What building the lock's source-only packages (hnswlib) takes, locked too: installed first, then
# the lock with --no-build-isolation, so no unpinned build tool comes from the registry.
LOCK_BUILD  := requirements/build-sdists.txt
LOCK_INPUTS := pyproject.toml requirements/build.in requirements/vectorwave-nodeps.in requirements/build-sdists.in
# The lock tool itself, pinned with its hashes: `make lock` puts it in its own venv.
LOCK_TOOL   := requirements/lock-tool.txt
LOCK_VENV   ?= .venv-lock
PIP    := python -m pip install --quiet --disable-pip-version-check
# Re-install whenever the lock (or the project) changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK_BUILD) $(LOCK) $(LOCK_NODEPS) | cksum | cut -d' ' -f1)

MODELS_LOCK := requirements/models.txt

.PHONY: demo test test-faults test-latest test-models lock bench venv clean help

help:
	@echo "make demo   - embedded broker + processor + realistic traffic, then a summary"
	@echo "make test   - create/update the venv from the lock, check the import floors (lint-imports) and run the tests"
	@echo "make test-faults - fault injection: kill -9, broker stall, 1->2->1 rebalance, burst (minutes)"
	@echo "make bench  - run the benchmarks, JSON into bench-results/"
	@echo "make lock   - re-resolve requirements/*.txt (newest versions pyproject.toml allows, with hashes)"
	@echo "make test-latest - the tests in a separate venv (.venv-latest) with the newest allowed versions, no lock"
	@echo "make test-models - install the 'models' extra (torch CPU, transformers, peft, MiniLM) and run the model tests"

venv: $(STAMP)

# Everything from the lock, hashes checked; then the project itself without touching the network.
$(STAMP): pyproject.toml $(LOCK_BUILD) $(LOCK) $(LOCK_NODEPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) --require-hashes -r $(LOCK_BUILD)
	$(BIN)/$(PIP) --no-build-isolation --require-hashes -r $(LOCK)
	$(BIN)/$(PIP) --require-hashes --no-deps -r $(LOCK_NODEPS)
	$(BIN)/$(PIP) --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

lock: $(LOCK_INPUTS)
	@test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/$(PIP) --require-hashes -r $(LOCK_TOOL); }
	$(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --generate-hashes --python-version 3.11 --no-header \
	  pyproject.toml requirements/build.in --extra dev --extra vectorwave-lite -o requirements.txt
	$(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --no-header --format pylock.toml \
	  $(LOCK) -o $(PYLOCK)
	$(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --generate-hashes --python-version 3.11 --no-header \
	  pyproject.toml requirements/build.in -c requirements.txt -o requirements/runtime.txt
	$(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --generate-hashes --python-version 3.11 --no-header --no-deps \
	  requirements/vectorwave-nodeps.in -o requirements/vectorwave-nodeps.txt
	$(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --generate-hashes --python-version 3.11 --no-header \
	  requirements/build-sdists.in -c requirements.txt -o $(LOCK_BUILD)
	$(LOCK_VENV)/bin/uv pip compile --quiet --upgrade --generate-hashes --python-version 3.11 --no-header --find-links /opt/wheels \
	  pyproject.toml requirements/models.in --extra models -c requirements.txt -o $(MODELS_LOCK)
	@echo "lock refreshed: review 'git diff requirements.txt pylock.toml requirements/', run 'make test-latest' or 'make test', then commit"

# No lock: what a fresh `pip install` of the package gets today, in a venv of its own.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/$(PIP) --upgrade -e '.[dev,vectorwave-lite]'
	.venv-latest/bin/$(PIP) --upgrade --no-deps "$$(grep -E '^[a-z]' requirements/vectorwave-nodeps.in)"
	.venv-latest/bin/python -m pip list --format=freeze > .venv-latest/versions.txt
	.venv-latest/bin/lint-imports
	VT_TEST_LATEST=1 .venv-latest/bin/python -m pytest $(PYTEST_ARGS)

demo: venv
	$(BIN)/vector-trainer demo $(DEMO_ARGS)

# lint-imports first: the floors (pyproject.toml, [tool.importlinter]) are part of the tests.
test: venv
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The model parts for real (LocalTrainer LoRA, MiniLM embedder, semantic diff): none may skip here.
test-models: venv
	$(BIN)/$(PIP) --require-hashes -r $(MODELS_LOCK)
	VT_REQUIRE_MODELS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m models -rs $(PYTEST_ARGS) tests

# Tests that take minutes each (own broker per module); their figures are printed as FIGURE lines.
test-faults: venv
	$(BIN)/python -m pytest -m faults -s $(PYTEST_ARGS) tests

bench: venv
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-latest $(LOCK_VENV) .vt-state .vt-demo bench-results .pytest_cache plots
