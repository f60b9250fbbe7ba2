# Two commands for a new user: `make demo` and `make test`. Each bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BA := $(VENV)/bin/batch-admin
export BATCH_ADMIN_HOME ?= $(CURDIR)/.batch_admin
MONTH ?= $(shell $(PYTHON) -c "import datetime as d; t=d.date.today(); print(f'{t.year + (t.month == 12)}-{t.month % 12 + 1:02d}')")
UI_PORT ?= 3000
# pytest-xdist workers of `make test` (auto: one per core); groups of tests sharing a resource stay on one
# worker (tests/conftest.py), handed out longest first (its order, not xdist's by group size). TEST_WORKERS=0
# runs the suite in this process.
TEST_WORKERS ?= auto

.PHONY: demo test ui ui-postgres bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

demo: $(VENV)/.installed  ## Run the monthly batch on demo data for next month (embedded default)
	$(BA) demo-data $(MONTH) --requests 2000 --resources 120 --seed 7
	$(BA) run $(MONTH) --actor alice --note "demo run"
	$(BA) status $(MONTH)

test: $(VENV)/.installed  ## Lint, layering contract, types, then the whole test suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

ui: $(VENV)/.installed  ## The admin view on UI_PORT, `dagster dev` (webserver and daemon) on UI_PORT+1; embedded default
	$(BA) ui --port $(UI_PORT)

ui-postgres: $(VENV)/.installed  ## The same on PostgreSQL (BATCH_ADMIN_POSTGRES_URL must be set)
	@test -n "$$BATCH_ADMIN_POSTGRES_URL" || (echo "error: set BATCH_ADMIN_POSTGRES_URL=postgresql://user@host:5432/db" >&2; exit 1)
	$(BA) ui --port $(UI_PORT)

bench: $(VENV)/.installed  ## Benchmarks of docs/performance.md (about 80 minutes); JSON under bench/results/
	mkdir -p bench/results
	$(PY) -m bench.demo --json bench/results/demo.json
	$(PY) -m bench.churn --requests 20000 --resources 1000 --time-limit 20 --json bench/results/churn_20k.json
	$(PY) -m bench.scale --requests 20000 --resources 1000 --time-limit 20 --baselines greedy,plain_cpsat --json bench/results/scale_20k.json
	$(PY) -m bench.scale --requests 20000 --resources 1000 --time-limit 20 --workers 1 --baselines greedy --json bench/results/scale_20k_w1.json
	$(PY) -m bench.scale --requests 100000 --resources 5000 --time-limit 60 --baselines greedy,plain_cpsat --json bench/results/scale_100k.json
	$(PY) -m bench.scale --requests 100000 --resources 5000 --time-limit 60 --workers 1 --baselines greedy --json bench/results/scale_100k_w1.json
	$(PY) -m bench.scale --requests 1000000 --resources 50000 --time-limit 600 --cross-region 0.1 --baselines greedy --reference-seconds 120 --json bench/results/scale_1m.json
	$(PY) -m bench.gap --time-limit 60 --json bench/results/gap_hard.json ../shared/benchmarks/gap/chu1997/d10200 ../shared/benchmarks/gap/chu1997/d20100 ../shared/benchmarks/gap/chu1997/d20200 ../shared/benchmarks/gap/yagiura2004/d20400 ../shared/benchmarks/gap/yagiura2004/d40400 ../shared/benchmarks/gap/yagiura2004/d60900
	$(PY) -m bench.gap --time-limit 60 --baselines greedy --best-known ../shared/benchmarks/gap/best_known.csv --json bench/results/gap.json ../shared/benchmarks/gap/chu1997/* ../shared/benchmarks/gap/yagiura2004/*
	$(PY) -m bench.exports > bench/results/exports.json
	$(PY) -m bench.run_path --json bench/results/run_path.json
	$(PY) -m bench.celery --requests 100000 --resources 5000 --time-limit 60 --workers 2 --json bench/results/celery.json
	$(PY) -m bench.whatif --json bench/results/whatif.json
	$(PY) -m bench.advice --json bench/results/advice.json

clean:
	rm -rf $(VENV) .batch_admin
