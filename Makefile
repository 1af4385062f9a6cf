# Keel: `make demo` runs a real pipeline end to end; `make test` runs every test.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: setup demo demo-data test bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "Python 3.11 is needed: install python3.11, or run make PY=/path/to/python3.11"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The demo needs the core and NumPy; the tests also need Ray, moto, Optuna, the k8s client...
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[data]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,data]'
	touch $(STAMP) $(DEMO_STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	bash examples/demo.sh

# The Atlas pipeline: penguins CSV -> Spark ML preprocessing -> Parquet -> RowGroupLoader training
demo-data: $(STAMP)
	$(BIN)/python examples/atlas/penguins.py run

test: $(STAMP)
	bash scripts/test.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/tracking_bench.py
	$(BIN)/python benchmarks/metric_write_bench.py
	$(BIN)/python benchmarks/ray_overhead.py
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/queue_bench.py
	$(BIN)/python benchmarks/alerts_bench.py --soak 1000 --real 10
	$(BIN)/python benchmarks/data_bench.py
	$(BIN)/python benchmarks/project_validate_bench.py
	$(BIN)/python benchmarks/cache_bench.py
	$(BIN)/python benchmarks/ui_bench.py --mlflow --store benchmarks/.stores/ui

clean:
	rm -rf $(VENV) .keel .pytest_cache
