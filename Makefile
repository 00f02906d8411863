# Two commands for a fresh machine with nothing but Python 3.11+:
#   make run    creates .venv, installs the app, opens it on the demo project
#   make test   creates .venv with the test extras, runs the whole suite headless
# For the inner loop: make test-fast (everything not marked slow, ~2 minutes) and make lint.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=
# Test processes side by side (pytest-xdist): the tests are independent of each other (each has its
# own project, home folder and ports), and most of their time is one core's work. 1 runs them in turn.
TEST_WORKERS ?= 2

.PHONY: run test test-fast lint bench gpu-check clean help package selftest-package test-packaging

help:
	@echo "make run    open the app on the demo project (creates .venv on first use)"
	@echo "make test   run every test headless"
	@echo "make test-fast  run the tests not marked slow (the inner loop, ~2 minutes)"
	@echo "make lint   ruff, and the import contracts: layers, independent methods, a headless core"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make gpu-check  every method in bf16/fp16 (LoRA, checkpointing), a real OOM, the GPU benches (<8 min; no CUDA: says so)"
	@echo "make package          build the self-contained app folder dist/rlhf-workbench (PyInstaller)"
	@echo "make selftest-package run the built app's --selftest"
	@echo "make test-packaging   build, then run the tests marked packaging (selftest, window under Xvfb)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps re-run the install only when the dependency lists change.
$(VENV)/.installed-app: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -c constraints.txt -e ".[test]"
	@touch $@ $(VENV)/.installed-app

# TRL 1.16 beside the 1.12 the venv pins (one process imports one trl): its RLOO and GRPO trainers
# are what tests/test_rl_vs_trl.py checks our losses against, in a process of its own. Its
# dependencies are the venv's.
TRL_NEW := 1.16.0
$(VENV)/trl-$(TRL_NEW)/trl: | $(VENV)/.installed-test
	$(PIP) install --no-deps --target $(VENV)/trl-$(TRL_NEW) trl==$(TRL_NEW)

run: $(VENV)/.installed-app
	$(VENV)/bin/rlhf-workbench --demo

test: $(VENV)/.installed-test $(VENV)/trl-$(TRL_NEW)/trl
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test $(VENV)/trl-$(TRL_NEW)/trl
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n $(TEST_WORKERS) -m "not slow and not packaging" $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(VENV)/.installed-test
	$(PY) bench/import_bench.py

# The first thing to run on a machine with an NVIDIA GPU (bench/gpu_check.py). No install step:
# it uses the venv as it is, so that it needs no network (the benches run offline too).
gpu-check:
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) bench/gpu_check.py

# The installers (packaging/README.md). build.py makes its own venv (build/package-venv) with the
# app as a wheel, its pinned dependencies and PyInstaller; then dist/rlhf-workbench/.
package:
	$(PYTHON) packaging/build.py $(PACKAGE_ARGS)

selftest-package:
	dist/rlhf-workbench/rlhf-workbench --selftest

test-packaging: package $(VENV)/.installed-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m packaging tests/test_packaging.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
