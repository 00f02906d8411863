# Two commands for a fresh machine with nothing but Python 3.11+:
#   make run    creates .venv, installs the app, opens it on the demo project
#   make test   creates .venv with the test extras, runs the whole suite headless
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: run test lint bench clean help

help:
	@echo "make run    open the app on the demo project (creates .venv on first use)"
	@echo "make test   run every test headless"
	@echo "make lint   check that the core never imports Qt (import-linter)"
	@echo "make bench  run the benchmarks in bench/"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install only when the dependency lists change.
$(VENV)/.installed-app: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt -e ".[test]"
	@touch $@ $(VENV)/.installed-app

run: $(VENV)/.installed-app
	$(VENV)/bin/rlhf-workbench --demo

test: $(VENV)/.installed-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed-test
	$(PY) bench/import_bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
