# netprov: the two commands a newcomer needs.
#   make demo   run the main job (validate -> plan -> apply -> plan) against the built-in TrueNAS simulator
#   make test   install everything the tests need (Debian packages, a venv) and run the whole suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test deps venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

deps:
	scripts/install-test-deps.sh

demo: venv
	$(VENV)/bin/netprov demo

test: deps venv
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
