# The two commands: `make run` (local stack on 127.0.0.1:8000) and `make test` (the whole suite).
# Both create .venv and install what they need on first use; nothing else is required but
# Python 3.11 and make.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

PORT        ?= 8000
DEMO_PEOPLE ?= 1000
FUTURE_DAYS ?= 400

.PHONY: run test package test-unit test-integration test-e2e test-deploy test-fuzz test-flood test-future fire wecom-callback door-events import demo-csv bench bench-import bench-health bench-trace clean help

help:
	@echo "make run                 start the local stack on 127.0.0.1:$(PORT) (PORT, DEMO_PEOPLE override)"
	@echo "make test                install into .venv and run the whole test suite"
	@echo "make package             the deployable SAM template and Lambda zip in build/ (no AWS account needed)"
	@echo "make fire JOB=<name>     run one scheduled job now against the running stack (AT=<ISO time> moves its clock)"
	@echo "make door-events         post signed gate events for demo people to the running stack (COUNT, PEOPLE)"
	@echo "make import FILE=x.csv   import people into the running stack (any size, batches of 1000)"
	@echo "make wecom-callback CHANGE=update_user USERID=s001 NAME=x   play WeCom: a signed contact change"
	@echo "make demo-csv N=16022 FILE=people.csv   write a generated import file"
	@echo "make bench               cold start, AWS calls, peak, jobs, zip size into bench/results.md (~15 min; BENCH_PEOPLE=2000)"
	@echo "make bench-import        time a 16,022-row import through a fresh local stack"
	@echo "make bench-trace         contact tracing over a generated day of 100,000 gate passages"
	@echo "make bench-health        the morning peak: 16,022 people file today's health report (BENCH_PEOPLE=500 for a quick run)"
	@echo "make test-unit | test-integration | test-e2e | test-deploy   one layer of the suite"
	@echo "make test-fuzz           every API operation fuzzed from /openapi.json, $(FUZZ_EXAMPLES) examples each (make test: 15)"
	@echo "make test-future         unit and integration tests on a clock $(FUTURE_DAYS) days ahead (FUTURE_DAYS, FUTURE_HOURS override)"
	@echo "make clean               remove .venv and local state"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	PORT=$(PORT) DEMO_PEOPLE=$(DEMO_PEOPLE) $(PY) -m infra.local run

fire: $(STAMP)
	@test -n "$(JOB)" || { echo "usage: make fire JOB=<scheduled function name>"; exit 2; }
	$(PY) -m infra.local fire $(JOB) $(if $(AT),--at $(AT))

door-events: $(STAMP)
	$(PY) -m infra.local door-events $(if $(COUNT),--count $(COUNT)) $(if $(PEOPLE),--people $(PEOPLE))

wecom-callback: $(STAMP)
	@test -n "$(CHANGE)" -a -n "$(USERID)" || { echo "usage: make wecom-callback CHANGE=delete_user USERID=s020 [NAME=...]"; exit 2; }
	$(PY) -m infra.local wecom-callback $(CHANGE) $(USERID) $(if $(NAME),--name "$(NAME)")

import: $(STAMP)
	@test -n "$(FILE)" || { echo "usage: make import FILE=people.csv"; exit 2; }
	$(PY) -m infra.tools.import_directory $(FILE)

demo-csv: $(STAMP)
	$(PY) -m infra.local.demo $(or $(N),16022) $(or $(FILE),people.csv)

# Not a test: targets are reported, never enforced. Sizes: BENCH_PEOPLE (the peak), BENCH_JOB_SIZES (the jobs).
bench: $(STAMP)
	BENCH_PEOPLE=$(or $(BENCH_PEOPLE),2000) BENCH_JOB_SIZES="$(or $(BENCH_JOB_SIZES),16022 100000)" \
	BENCH_COLD_RUNS=$(or $(BENCH_COLD_RUNS),7) $(PY) -m bench.suite

bench-import: $(STAMP)
	$(PY) -m bench.import_directory

bench-health: $(STAMP)
	$(PY) -m bench.health_peak

bench-trace: $(STAMP)
	$(PY) -m bench.door_trace

test: $(STAMP)
	$(PY) -m pytest

# The template merges infra/aws/resources.json (regenerate with `python -m infra.aws.template`).
# DEPLOY_REGION only names ARNs in the template; packaging talks to no AWS account.
DEPLOY_REGION ?= cn-north-1
package: $(STAMP)
	$(PY) -m infra.aws.package --out build --region $(DEPLOY_REGION)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-deploy: $(STAMP)
	$(PY) -m pytest tests/deploy

FUZZ_EXAMPLES ?= 200
test-fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration

test-e2e: $(STAMP)
	$(PY) -m pytest tests/e2e

test-flood: $(STAMP)
	$(PY) -m pytest -m flood tests/integration

# Tests that pass today but fail once the real date moves past their fixed dates (SQS retention, TTLs, expiry).
test-future: $(STAMP)
	FUTURE_DAYS=$(FUTURE_DAYS) FUTURE_HOURS=$(or $(FUTURE_HOURS),0) $(PY) -m pytest -p tests.support.future_clock tests/unit tests/integration

clean:
	rm -rf $(VENV) .local .pytest_cache build
