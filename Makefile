# Harbour: build, check and demo targets.
#
# Everything runs inside a project-local virtualenv ($(VENV)); the only thing
# assumed to be installed on the machine is python3 (3.11 or newer).
#
#   make demo    distributed key generation + signing for every FROST scheme and threshold ECDSA
#   make test    ruff, mypy and pytest; fails if any of them fails
#   make bench   every bench/*.py script (each prints JSON)
#   make lint    ruff and mypy only
#   make clean   caches and build output (make distclean also removes $(VENV))

PYTHON3 ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PY      := $(BIN)/python
STAMP   := $(VENV)/.installed

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help install demo test lint ruff mypy pytest bench clean distclean

help:
	@echo "make demo    run DKG and threshold signing for each FROST scheme and threshold ECDSA"
	@echo "make test    ruff + mypy + pytest (non-zero exit on any failure)"
	@echo "make bench   run bench/*.py (JSON on stdout)"
	@echo "make lint    ruff + mypy"
	@echo "make clean   remove caches and build output; distclean also removes $(VENV)"

# The interpreter is an order-only prerequisite of the stamp: creating the venv
# must not by itself look like a change that needs a reinstall, but a changed
# pyproject.toml must.
$(PY):
	$(PYTHON3) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/harbour demo

lint: ruff mypy

ruff: $(STAMP)
	$(BIN)/ruff check src tests bench

mypy: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# Sequential on purpose: each step runs only if the previous one passed, and make
# exits non-zero at the first failure (also under make -j).
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest

# Modules whose name starts with an underscore are shared code, not benchmarks.
bench: $(STAMP)
	@set -e; found=0; \
	for script in bench/[!_]*.py; do \
		[ -e "$$script" ] || continue; \
		found=1; \
		echo "# $$script" >&2; \
		$(PY) "$$script"; \
	done; \
	if [ "$$found" = 0 ]; then echo "no benchmarks under bench/" >&2; exit 1; fi

clean:
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
