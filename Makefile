# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
# Both create .venv and install what is needed. torch is installed only when missing,
# and then as the CPU build (torch==2.13.0) so that pip never pulls CUDA wheels.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
STAMP   = $(VENV)/.genpolicy-installed
TORCH_VERSION ?= 2.13.0
GYM_ALOHA_VERSION ?= 0.1.5
ALOHA_STAMP = $(VENV)/.gym-aloha-assets
PYTEST_ARGS ?=

export OMP_NUM_THREADS ?= 1
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: install sim-deps demo demo-aloha test lint bench clean help

help:
	@echo "make demo   - set up .venv and run the closed-loop demo on the shipped model"
	@echo "make demo-aloha - only the demo's ALOHA transfer-cube episode (models/aloha_state_flow) + a GIF"
	@echo "make test   - set up .venv, lint, and run the whole test suite"
	@echo "make lint   - ruff (rules in pyproject.toml)"
	@echo "make bench  - run the benchmarks (not part of make test)"

# On a machine with a sourced ROS 2 installation (ROS_DISTRO set) the venv sees the system
# rclpy and messages; elsewhere the ROS 2 Python wheels from PyPI are installed.
ifdef ROS_DISTRO
VENV_FLAGS = --system-site-packages
EXTRAS     = onnx,data,sim,test
else
VENV_FLAGS =
EXTRAS     = all
endif

$(PY):
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(STAMP): $(PY) setup.py
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install --quiet "torch==$(TORCH_VERSION)"
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# Headless MuJoCo rendering uses OSMesa (Debian libosmesa6) when present, else EGL.
# Best effort: needs root and apt; the simulation falls back to EGL without it.
sim-deps:
	@ldconfig -p 2>/dev/null | grep -q libOSMesa || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq libosmesa6 >/dev/null 2>&1) \
	  || echo "note: libosmesa6 not installed; MuJoCo will render with EGL"; }

# The ALOHA bimanual scene (genpolicy_ros/sim/aloha) uses the MJCF files and meshes shipped in
# the gym-aloha wheel (Apache-2.0), read from its gym_aloha/assets/ folder; none of its Python
# code is imported. It is installed with --no-deps, after everything else, on purpose: gym-aloha
# pins mujoco<3.9 and requires dm-control, so as a setup.py extra pip would downgrade our MuJoCo
# (4.x, which loads these files fine) or refuse to resolve. Only the wheel's files are wanted.
# `pip check` therefore reports gym-aloha's unmet requirements; that is expected.
$(ALOHA_STAMP): $(STAMP)
	$(PIP) install --quiet --no-deps "gym-aloha==$(GYM_ALOHA_VERSION)"
	@touch $(ALOHA_STAMP)

install: $(STAMP) $(ALOHA_STAMP) sim-deps

demo: install
	$(VENV)/bin/genpolicy demo
	$(MAKE) --no-print-directory demo-aloha

# One ALOHA transfer-cube episode of models/aloha_state_flow over ROS 2 (sim node + policy node,
# task from the model's metadata; ~40 s with start-up, part of `make demo`), then a GIF of the
# episode with the same reset seed rolled out ROS-free (simulated time, no latency: the same
# start, not the same commands) in demo_report/.
demo-aloha: install
	@mkdir -p demo_report
	$(VENV)/bin/genpolicy eval models/aloha_state_flow --episodes 1 --seed 2 --json demo_report/aloha_eval.json
	$(PY) -m genpolicy_ros.sim.aloha.episode_gif --model models/aloha_state_flow --seed 2 \
	  --out demo_report/aloha_episode.gif

# One pytest process per suite (and per ROS test file): nodes, DDS participants, the
# generation processes and MuJoCo GL contexts of one file cannot disturb the next.
ROS_TEST_FILES = $(sort $(wildcard test/ros/test_*.py))

# Lint: ruff with the rules in pyproject.toml (the first step of `make test`).
LINT_PATHS = genpolicy_ros test scripts launch setup.py

lint: install
	$(PY) -m ruff check $(LINT_PATHS)

test: install lint
	@status=0; \
	for suite in test/core test/runtime test/training test/data test/sim $(ROS_TEST_FILES); do \
	  echo "== $$suite"; \
	  $(PY) -m pytest -q $(PYTEST_ARGS) $$suite || status=1; \
	done; \
	exit $$status

bench: install
	$(VENV)/bin/genpolicy bench --help

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
