# kinto-fxa developer commands. Every target creates the virtualenv it needs.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
INSTALL_STAMP := $(VENV)/.install.stamp
PYTEST_ARGS ?=

.PHONY: help install serve test lint format bench migrate clean

help:
	@echo "make serve   start a local FxA server and a Kinto using it (http://127.0.0.1:8888/v1/)"
	@echo "make test    run the whole test suite (PostgreSQL tests skip if none is reachable)"
	@echo "make lint    ruff + mypy"
	@echo "make bench   print the authentication benchmarks"
	@echo "make fuzz    the property-based tests at length (>= 10,000 examples per target)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALL_STAMP): $(BIN)/python setup.cfg setup.py
	$(BIN)/python -m pip install --quiet -e ".[test,scripts]"
	touch $(INSTALL_STAMP)

install: $(INSTALL_STAMP)

serve: $(INSTALL_STAMP)
	$(BIN)/kinto-fxa dev-server --ini config/dev.ini

# coverage starts before pytest loads its plugins (ours imports kinto_fxa), and follows
# the subprocesses the CLI tests start.
test: $(INSTALL_STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	@# A subprocess killed before it wrote its data leaves an empty file: nothing to combine.
	find . -maxdepth 1 -name '.coverage.*' -size 0 -delete
	$(BIN)/coverage combine -q
	$(BIN)/coverage report --fail-under=99

lint: $(INSTALL_STAMP)
	$(BIN)/ruff check kinto_fxa tests bench
	$(BIN)/ruff format --check kinto_fxa tests bench
	$(BIN)/mypy kinto_fxa

format: $(INSTALL_STAMP)
	$(BIN)/ruff check --fix kinto_fxa tests bench
	$(BIN)/ruff format kinto_fxa tests bench

bench: $(INSTALL_STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

# The fuzz tests (tests/test_fuzz.py) with the long Hypothesis profile: at least 10,000
# examples per target instead of make test's few hundred; the examples run per target are
# printed at the end ("fuzz examples: <target> = <count>").
.PHONY: fuzz
fuzz: $(INSTALL_STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py $(PYTEST_ARGS)
