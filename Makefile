# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
# Both create .venv and install what is needed. torch is installed only when missing,
# and then as the CPU build (torch==2.13.0) so that pip never pulls CUDA wheels.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
STAMP   = $(VENV)/.genpolicy-installed
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

export OMP_NUM_THREADS ?= 1
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: install demo test bench clean help

help:
	@echo "make demo   - set up .venv and run the closed-loop demo on the shipped model"
	@echo "make test   - set up .venv and run the whole test suite"
	@echo "make bench  - run the benchmarks (not part of make test)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(STAMP): $(PY) setup.py
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "torch==$(TORCH_VERSION)"
	$(PIP) install --quiet -e ".[all]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/genpolicy demo

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS) test

bench: install
	$(VENV)/bin/genpolicy bench --help

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
