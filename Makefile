# `make demo` and `make test` are the README's two first commands; both work
# on a fresh clone. The virtual environment lives in .venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spoolgate demo

deps:
	scripts/install-test-deps.sh

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

test: $(STAMP) deps lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# As root: the lab, bastion with RPC policy, tunnel, login and an NFS copy;
# docs/nfs-demo.md describes it.
.PHONY: nfs-demo
nfs-demo: $(STAMP)
	SPOOLGATE=$(abspath $(BIN))/spoolgate scripts/nfs-demo.sh
