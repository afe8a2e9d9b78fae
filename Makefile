# vireid: the two commands are `make demo` and `make test`; everything else supports them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= train,export,onnx,dev
STAMP  := $(VENV)/.installed-$(shell echo $(EXTRAS) | tr ',' '-')
DEMO   ?= demo

.PHONY: venv test test-slow lint format demo clean

venv: $(STAMP)

# Re-installs only when the project's dependency files change; pins come from constraints.txt.
$(STAMP): pyproject.toml setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) tools/typecheck.py

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest

test-slow: venv
	$(VENV)/bin/pytest -m slow

demo: venv
	$(PY) -m vireid.demo --out $(DEMO)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache .typecheck $(DEMO)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
