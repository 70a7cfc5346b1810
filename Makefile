# Two commands matter to users: `make demo` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVERS := prometheus promtool prometheus-pushgateway prometheus-alertmanager amtool
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all servers venv lint test test-unit test-e2e demo bench clean

all: test

# Debian's Prometheus, Pushgateway and Alertmanager, installed only when missing.
servers:
	@missing=0; for b in $(SERVERS); do command -v $$b >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing prometheus, prometheus-pushgateway, prometheus-alertmanager (apt-get)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-pushgateway prometheus-alertmanager >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml lab/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3 python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev,notebooks,reference]' -e ./lab
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check anomaly lab tests bench
	$(VENV)/bin/ruff format --check anomaly lab tests bench
	$(VENV)/bin/mypy anomaly lab/anomaly_lab

test: servers venv lint
	$(VENV)/bin/pytest -q

test-unit: venv
	$(VENV)/bin/pytest -q -m "not e2e"

demo: servers venv
	$(PY) -m anomaly_lab.demo

bench: servers venv
	$(PY) -m bench

clean:
	rm -rf $(VENV) .demo build *.egg-info
