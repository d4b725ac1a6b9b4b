# Every target makes its own virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
JS_SOURCES := $(shell find js/src js/scripts -name '*.ts' -o -name '*.css' -o -name '*.mjs' 2>/dev/null) js/build.mjs

.PHONY: demo test truth bench lint js clean browser help

help:
	@echo "make demo   - train the default model once, run every method, write report/index.html"
	@echo "make test   - lint, type-check the JS, and run every test (Python, notebooks, JS, browser)"
	@echo "make truth  - the slow truth checks on every registered architecture, not only the ResNet"
	@echo "make bench  - run the benchmarks (one JSON object each)"
	@echo "make lint   - ruff check + format check, tsc --noEmit"
	@echo "make clean  - remove the virtual environment, JS build and reports"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PINS)
	touch $@

# `npm ci` installs exactly what the lock file lists and never rewrites it.
js/node_modules/.package-lock.json: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund --loglevel=error

repwidgets/static/gallery.js: js/node_modules/.package-lock.json $(JS_SOURCES)
	cd js && npm run --silent build

js: repwidgets/static/gallery.js

$(VENV)/.installed: pyproject.toml $(VENV)/.torch repwidgets/static/gallery.js
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,bench]"
	touch $@

browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != "0" ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

demo: $(VENV)/.installed
	$(BIN)/repwidgets demo --report report/index.html

lint: $(VENV)/.installed-test js
	$(BIN)/ruff check repwidgets tests benchmarks hatch_build.py
	$(BIN)/ruff format --check repwidgets tests benchmarks hatch_build.py
	cd js && npm run --silent typecheck

test: lint browser
	$(BIN)/python -m pytest

truth: $(VENV)/.installed-test
	REPWIDGETS_TRUTH_MODELS=all $(BIN)/python -m pytest tests/test_truth.py

bench: $(VENV)/.installed-test browser
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) js/node_modules repwidgets/static/*.js repwidgets/static/*.css report
