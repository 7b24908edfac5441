# crmstream developer entry points; CI runs `make test` through .ci/run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# bytewax 0.21.1 has wheels for CPython 3.10-3.12 only (pip would pick an ancient one on 3.13).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
# Reinstall only when the dependencies may have changed.
STAMP := $(VENV)/.installed-from-pyproject

define CHECK_PYTHON
import sys
if not (3, 10) <= sys.version_info[:2] <= (3, 12):
    sys.exit(f"{sys.executable} is Python {sys.version.split()[0]}; crmstream needs 3.10-3.12 "
             "(bytewax 0.21.1 ships wheels only for those): install python3.11, or run "
             "`make PYTHON=/path/to/python3.12 ...`, after `rm -rf .venv` if it was made with another")
endef
export CHECK_PYTHON

.PHONY: help venv demo test test-long lint format bench clean distclean need-redis-server

help:
	@echo "make venv       create .venv and install crmstream with its test tools"
	@echo "make demo       start what is missing, run the simulator and the flow for ~60 s"
	@echo "make test       lint and run the tests (what CI runs); installs redis-server as root"
	@echo "make test-long  long fault and load scenarios (pytest -m slow)"
	@echo "make lint       ruff check and format check;  make format  fix both"
	@echo "make bench      run the benchmarks"
	@echo "make clean      stop dev services, remove caches and logs;  make distclean  also .venv"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH: install Python 3.10-3.12" >&2; exit 1; }
	@$(PYTHON) -c "$$CHECK_PYTHON"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV) || { \
	  rm -rf $(VENV); \
	  echo "creating the virtualenv failed; on Debian install the venv module: apt-get install python3-venv (or python3.11-venv)" >&2; \
	  exit 1; }
	@$(VENV)/bin/python -c "$$CHECK_PYTHON"
	$(VENV)/bin/python -m pip install --disable-pip-version-check -e '.[test]'
	@touch $@

demo: venv
	$(VENV)/bin/crmstream demo

# The tests start a private redis-server on a free port, so the binary must exist.
need-redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "redis-server is missing (the tests start a private one): sudo apt-get install redis-server" >&2; \
	    exit 1; \
	  fi; \
	  command -v apt-get >/dev/null 2>&1 || { \
	    echo "redis-server is missing and there is no apt-get: install Redis 7 with your package manager" >&2; \
	    exit 1; }; \
	  echo "installing redis-server (the tests start a private one)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends redis-server \
	    || { apt-get update && apt-get install -y --no-install-recommends redis-server; }; \
	}

test: venv need-redis-server
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow"

test-long: venv need-redis-server
	$(VENV)/bin/pytest -m slow

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The peer (Quix Streams) pins an older confluent-kafka, so it gets its own virtualenv.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed-from-pyproject

$(PEER_STAMP): pyproject.toml
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --disable-pip-version-check -e '.[peer]'
	@touch $@

bench: venv $(PEER_STAMP)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[bench]'
	$(VENV)/bin/python -m benchmarks

# Stop recorded dev services first: deleting .run/dev.json would orphan them.
clean:
	@if [ -f .run/dev.json ] && [ -x $(VENV)/bin/python ]; then \
	  $(VENV)/bin/python -c "from crmstream.devservices import dev_down; dev_down()"; fi
	rm -rf .run .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(PEER_VENV)
