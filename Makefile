# anomalyd: `make run` serves on 127.0.0.1:8000 with data in ./data; `make test` tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean package

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

# Benchmarks, never part of `make test`: installs wrk and nginx if missing (Debian, as
# root), runs every scenario and ratio (~7 min), writes bench/results/latest.md; then
# the streams' figures (~3 min, bench/results/streams.md) and NAB in process and over
# HTTP (~1 min).
# Durations: BENCH_SECONDS, BENCH_WRK_SECONDS, BENCH_ROUNDS (see bench/run.py).
.PHONY: bench
bench: $(STAMP)
	sh bench/tools.sh
	$(BIN)/python bench/run.py
	$(BIN)/python bench/record_latency.py
	$(BIN)/python bench/healthcheck_p95.py
	$(BIN)/python bench/streams.py
	$(BIN)/python bench/nab.py --mode both

# Not in CI: 10 minutes of mixed load (SOAK_SECONDS to change), memory/fds/readers.
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python bench/soak.py

# dist/anomalyd-<version>.pyz (shiv zipapp) and dist/anomalyd_<version>_amd64.deb.
package: $(STAMP)
	PYTHON=$(BIN)/python sh packaging/build_pyz.sh
	PYTHON=$(BIN)/python sh packaging/build_deb.sh

# docs/plot.png, docs/stream.png and docs/dashboard.png, from a real server with the
# sample data (needs chromium).
.PHONY: screenshots
screenshots: $(STAMP)
	$(BIN)/python docs/make_screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check anomalyd tests bench
	$(BIN)/ruff format --check anomalyd tests bench

clean:
	rm -rf $(VENV) dist build *.egg-info
