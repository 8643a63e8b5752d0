# anomalyd: `make run` serves on 127.0.0.1:8000 with data in ./data; `make test` tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/anomalyd serve --bind 127.0.0.1:8000 --data-dir ./data

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check anomalyd tests bench
	$(BIN)/ruff format --check anomalyd tests bench

clean:
	rm -rf $(VENV) dist build *.egg-info
