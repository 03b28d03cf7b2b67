# Harbour: build, check and demo targets.
#
# Everything runs inside a project-local virtualenv ($(VENV)); the only thing
# assumed to be installed on the machine is python3 (3.11 or newer). The system
# packages the tests need, SoftHSM2 (a software PKCS#11 token standing in for the
# HSM that holds a signer node's key-encryption key) and PostgreSQL (the tests
# start their own server), are installed from Debian by `make system-deps`,
# which install, test and pytest run first.
#
#   make demo    distributed key generation + signing for every FROST scheme and threshold ECDSA
#   make test    ruff, mypy and pytest (three workers, coverage, the slowest 25); fails if any of them fails
#   make test-fast  the in-process tests only (no slow, process or postgres marker), in under a minute
#   make bench   every bench/*.py script (each prints JSON)
#   make lint    ruff (lint and format check) and mypy (src, bench, tests) only
#   make lock    re-pin requirements/dev.lock after a dependency change (UPGRADE=1: newest allowed)
#   make system-deps  Debian's softhsm2 and postgresql (apt-get, through sudo when not root), if missing
#   make clean   caches and build output (make distclean also removes $(VENV))

PYTHON3 ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PY      := $(BIN)/python
STAMP   := $(VENV)/.installed
LOCK    := requirements/dev.lock

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help install system-deps demo test test-fast lint ruff mypy pytest bench lock clean distclean

help:
	@echo "make demo    run DKG and threshold signing for each FROST scheme and threshold ECDSA"
	@echo "make test    ruff + mypy + pytest (non-zero exit on any failure)"
	@echo "make test-fast  pytest on the in-process tests only (no nodes, subprocesses or PostgreSQL), under a minute"
	@echo "make bench   run bench/*.py (JSON on stdout)"
	@echo "make lint    ruff + mypy"
	@echo "make lock    re-pin requirements/dev.lock (hashes) after changing dependencies; UPGRADE=1 for newest"
	@echo "make system-deps  install Debian's softhsm2 and postgresql (for the tests) if missing"
	@echo "make clean   remove caches and build output; distclean also removes $(VENV)"

# The interpreter is an order-only prerequisite of the stamp: creating the venv
# must not by itself look like a change that needs a reinstall, but a changed
# pyproject.toml or lock file must.
#
# Installs come from requirements/dev.lock: the exact versions the tests ran
# with, each with its hashes (pip refuses any file whose hash differs, and any
# dependency the lock does not pin). The build backend is in the lock too, and
# the project is installed without build isolation, so nothing unpinned is
# fetched. `pip install harbour` for library users keeps pyproject's ranges.
$(PY):
	$(PYTHON3) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(PY)
	$(PY) -m pip install --require-hashes -r $(LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

# Re-pin after changing dependencies in pyproject.toml: versions already in the
# lock are kept where they still fit. `make lock UPGRADE=1` moves every pin to
# the newest version allowed. Then run `make test` and commit the lock.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra dev --generate-hashes \
		--python-version 3.11 --no-header $(if $(UPGRADE),--upgrade) -o $(LOCK)

# No stamp file: the checks are a `command -v` and a glob, and a stamp would
# outlive a package removed since. Missing packages are installed in one apt-get
# call. Installing needs root, so sudo is used when we are not root; without
# either (or without apt-get) this stops with what to do by hand.
# SoftHSM2 stands in for a signer node's HSM; PostgreSQL's server binaries are
# what tests/postgres.py runs its own throwaway server with (on a free port: the
# cluster and service the Debian package sets up are not used).
system-deps:
	@missing=; \
	command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	set -- /usr/lib/postgresql/*/bin/initdb; \
	{ [ -x "$$1" ] || command -v initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "error: missing$$missing and apt-get is unavailable; install by hand: SoftHSM2 (package softhsm2), the PostgreSQL server (package postgresql) and npm (packages nodejs, npm)" >&2; \
		exit 1; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else \
		echo "error: missing$$missing; as root run: apt-get update && apt-get install -y$$missing" >&2; \
		exit 1; \
	fi; \
	echo "installing$$missing (PKCS#11 software token, PostgreSQL server, and npm to fetch anvil: used by the tests)" >&2; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing && \
	{ command -v softhsm2-util >/dev/null || { echo "error: softhsm2 installed, but softhsm2-util is not on PATH" >&2; exit 1; }; } && \
	{ set -- /usr/lib/postgresql/*/bin/initdb; [ -x "$$1" ] || { echo "error: postgresql installed, but there is no /usr/lib/postgresql/*/bin/initdb" >&2; exit 1; }; } && \
	{ command -v npm >/dev/null || { echo "error: npm installed, but it is not on PATH" >&2; exit 1; }; }

install: $(STAMP) system-deps

demo: $(STAMP)
	$(BIN)/harbour demo

lint: ruff mypy

# tests/ is checked on its own: it and bench/ both have a module named cluster.
ruff: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

mypy: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy tests

# Three workers (pytest-xdist) on two cores: most process tests wait on node
# processes, the chain or the database (a run uses about two thirds of two cores'
# time with two workers), so a third keeps them busy. --dist loadscope keeps a module on one
# worker, so a module's shared deployment is built once. Coverage is of the pytest
# processes (the node subprocesses are not measured); COV_FLOOR is the figure on
# main when the floor was set, rounded down.
WORKERS   ?= 3
COV_FLOOR ?= 92
PYTEST_FULL := -n $(WORKERS) --dist loadscope --durations=25 \
	--cov=harbour --cov-report=term:skip-covered --cov-fail-under=$(COV_FLOOR)
FAST_MARKERS := not slow and not process and not postgres

pytest: $(STAMP) system-deps
	$(BIN)/pytest $(PYTEST_FULL)

# Sequential on purpose: each step runs only if the previous one passed, and make
# exits non-zero at the first failure (also under make -j).
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/mypy tests
	$(BIN)/pytest $(PYTEST_FULL)

# No system packages needed: nothing marked process or postgres runs.
test-fast: $(STAMP)
	$(BIN)/pytest -n $(WORKERS) -m "$(FAST_MARKERS)" --durations=10

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
	rm -rf build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis .coverage .coverage.*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
