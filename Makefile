# Two entry points (see README):
#   make demo   set up .venv, build the synthetic shards, train + test musicnn with log_learn
#   make test   set up .venv, run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
LT := $(VENV)/bin/lt
DEMO_DATA ?= data/synthetic
DEMO_CLIPS ?= 2000

.PHONY: demo test lint install clean-demo system-deps

# Reinstalls whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(LT) data build synthetic --out $(DEMO_DATA) --n-clips $(DEMO_CLIPS) --valid-fraction 0.05 --seed 0
	$(LT) run --config experiments/demo.yaml

# What the tests need outside .venv: Slurm and munge for the one-node cluster of tests/test_slurm.py,
# and g++ for torch.compile's CPU kernels (tests/test_fused_branch.py's compiled epilogues).
# As root it apt-installs them when missing; otherwise it says what to install (and those tests fail saying so).
system-deps:
	bash slurm/system-deps.sh

test: $(VENV)/.installed system-deps
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf runs/demo
