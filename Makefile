# netprov: the two commands a newcomer needs.
#   make demo   run the main job (validate -> plan -> apply -> plan) against the TrueNAS simulator (sim/)
#   make test   install everything the tests need (Debian packages, a venv with netprov and the simulator)
#               and run the whole suite
#   make wheel  build dist/netprov-<version>-py3-none-any.whl (install it with pipx, or pip in any venv)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test deps venv wheel bench clean

venv: $(VENV)/.installed

# netprov and the TrueNAS simulator (its own distribution, sim/: not in the netprov wheel), both editable
$(VENV)/.installed: pyproject.toml sim/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./sim -e '.[test]'
	touch $@

deps:
	scripts/install-test-deps.sh

demo: venv
	$(VENV)/bin/netprov demo

test: deps venv
	$(PY) -m pytest $(PYTEST_ARGS)

wheel: venv
	$(PY) -m build --wheel --no-isolation --outdir dist .

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) build dist *.egg-info sim/*.egg-info sim/build .pytest_cache
