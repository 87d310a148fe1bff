# Two commands do all set-up on a fresh machine:
#   make run    train the default experiment (creates .venv on first use)
#   make test   run the test suite on every backend (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gankit-installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test docs clean

# The CPU builds of the frameworks first: a plain `torch` requirement would pull a
# multi-GB CUDA build. GPU users install gankit[torch] / gankit[tensorflow] / gankit[jax]
# (with jax's CUDA wheels) instead.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q "tensorflow-cpu==2.21.*"
	$(BIN)/python -m pip install -q jax==0.10.2 jaxlib==0.10.2 optax==0.2.8
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/gankit train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

docs: $(STAMP)
	GANKIT_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/gankit config reference > docs/configuration.md

clean:
	rm -rf $(VENV) build dist *.egg-info runs
