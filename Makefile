# Every target is a README command; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
ENV    ?=
REPEATS ?= 3
BENCH_ENVS ?= env.ci.yaml
# Test workers: one per core this process may use (a hosted runner has 4), at most 8 (memory).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 8 ? n : 8 )))
# ENV=ci selects env.ci.yaml (the CI sample); empty selects env.yaml (the full year).
ENV_FILE := $(if $(ENV),env.$(ENV).yaml,env.yaml)

export PLOOMBER_STATS_ENABLED := false
export PLOOMBER_VERSION_CHECK_DISABLED := true
export UV_COMPILE_BYTECODE := 1
export JUPYTER_CONFIG_DIR := $(CURDIR)/.jupyter
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: help setup init build test test-fast test-pipeline lint lab plot lock clean clean-products \
	models promote rollback mlflow-ui nbval gates comment monitor-latest browser ci bench export-argo export-airflow \
	docs serve load soak backtest retrain propose follow live label-queue label-send ci-as-user airflow-run registry-server registry-server-stop postgres

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.ready: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' requirements.lock)"
	$(UV) pip sync --quiet --python $(BIN)/python requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

setup: $(BIN)/.ready ## create .venv from the lock (idempotent)

init: setup ## a new project for your data: make init NAME=churn SOURCE=data/churn.csv TARGET=churned [POSITIVE=yes] [TIME=signup_date]
	@test -n "$(NAME)" -a -n "$(SOURCE)" -a -n "$(TARGET)" || { echo "usage: make init NAME=… SOURCE=… TARGET=… [POSITIVE=…] [TIME=…]"; exit 2; }
	$(BIN)/nbmlops init "$(NAME)" --source "$(SOURCE)" --target "$(TARGET)" $(if $(POSITIVE),--positive "$(POSITIVE)") $(if $(TIME),--time "$(TIME)") $(if $(FORCE),--force)

build: setup ## run the pipeline (ENV=ci for the CI sample; ARGS="--env--seed 1" to override) and write reports/
	$(BIN)/python -m nbmlops.build.run --env $(ENV_FILE) $(ARGS)

test: setup browser postgres ## run every test: code, data, registry, model, nbval, browser, full builds
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup

test-fast: setup postgres ## unit, data and registry tests (no full builds)
	$(BIN)/python -m pytest -m "not pipeline" -n $(TEST_JOBS)

test-pipeline: setup browser postgres ## full builds in temporary copies: incremental, bad input, BYO data, site
	$(BIN)/python -m pytest -m pipeline -n $(TEST_JOBS) --dist loadgroup

lint: setup ## ruff (notebooks included), no committed .ipynb, workflows (actionlint, schema)
	$(BIN)/ruff check src tests notebooks features airflow
	$(BIN)/ruff format --check src tests notebooks features airflow
	@! git ls-files '*.ipynb' | grep . || (echo "notebooks are stored as .py; remove the .ipynb above" && false)
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

nbval: setup ## nbval on the notebooks of the last build, re-run with products in products/nbval
	$(BIN)/python -m nbmlops.commands.nbcheck --env $(ENV_FILE) --scratch products/nbval

gates: setup ## fail when the last build's challenger breaks a gate; model metric-range tests
	$(BIN)/nbmlops-report --env $(ENV_FILE) gates
	NBMLOPS_BUILD_DIR=$(CURDIR) $(BIN)/python -m pytest tests/model -q -p no:xdist

comment: setup ## write the pull-request comment of the last build and CI steps to reports/pr-comment.md (BASE=origin/main: the changes since)
	$(BIN)/nbmlops-report --env $(ENV_FILE) comment --output reports/pr-comment.md --steps "$$(bash .ci/step --folder)" $(if $(BASE),--base $(BASE))

bench: setup ## benchmark against same-run baselines (REPEATS=3; BENCH_ENVS="env.ci.yaml env.yaml" adds the full year); writes reports/bench/
	$(BIN)/python -m nbmlops.tools.bench run --repeats $(REPEATS) --envs $(BENCH_ENVS)

backtest: setup ## replay the env's retraining policies over the labelled periods (ENV=ci: the sample); writes its page and JSON
	$(BIN)/python -m nbmlops.build.run --env $(ENV_FILE) --partially features
	$(BIN)/python -m nbmlops.commands.backtest --env $(ENV_FILE)

retrain: setup ## when the env's retraining policy is due, build again training on the latest periods
	$(BIN)/python -m nbmlops.commands.retrain retrain --env $(ENV_FILE)

propose: setup ## write the challenger into the baseline file when the policy is due and it wins on the rows both scored
	$(BIN)/python -m nbmlops.commands.retrain propose --env $(ENV_FILE) $(if $(OUTPUT),--output $(OUTPUT))

follow: setup ## move the registry's champion to the version the committed baseline file names
	$(BIN)/python -m nbmlops.commands.retrain follow --env $(ENV_FILE)

live: setup ## live performance of every model from the service's archive and the labels sent to /feedback
	$(BIN)/python -m nbmlops.commands.live --env $(ENV_FILE)

label-queue: setup ## queue serving.label_sample of the answered records for labelling (stratified); writes label-queue.csv beside the archive
	$(BIN)/python -m nbmlops.commands.labels queue --env $(ENV_FILE)

label-send: setup ## post a filled-in label-queue.csv (FILE=..., URL=http://127.0.0.1:8000) to the service's /feedback
	@test -n "$(FILE)" || { echo "make label-send needs FILE=path/to/label-queue.csv" >&2; exit 2; }
	$(BIN)/python -m nbmlops.commands.labels send $(FILE) $(if $(URL),--url $(URL))

serve: setup ## the scoring service on the registry's champion (ENV=ci for the CI model); Ctrl-C stops it
	$(BIN)/nbmlops-serve --env $(ENV_FILE)

load: setup ## load test of the scoring service (open-loop client and locust, on loopback; ENV=ci for the CI model); writes reports/load/
	$(BIN)/python -m nbmlops.tools.loadtest --env $(ENV_FILE)

soak: setup ## the scoring service for MINUTES (30) at RATE (300) req/s with a shadow, a canary and labels: memory, p99 and the archive checked; writes reports/soak/
	$(BIN)/python -m nbmlops.tools.soak --env $(ENV_FILE) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(RATE),--rate $(RATE))

export-argo: setup ## Argo Workflows Workflow of the pipeline in argo/ (IMAGE=registry/name:tag, built from Dockerfile; CLAIM=the shared volume claim)
	@test -n "$(IMAGE)" || { echo "make export-argo needs IMAGE=registry/name:tag (the image built from Dockerfile)" >&2; exit 2; }
	$(BIN)/python -m nbmlops.commands.engines argo --env $(ENV_FILE) --image $(IMAGE) $(if $(CLAIM),--claim $(CLAIM))

export-airflow: setup ## Airflow DAG spec of the pipeline in airflow/specs/, for airflow/nbmlops_dag.py (WORKER_PROJECT=, WORKER_PYTHON=: the project and its Python on the workers)
	$(BIN)/python -m nbmlops.commands.engines airflow --env $(ENV_FILE) $(if $(WORKER_PROJECT),--project $(WORKER_PROJECT)) $(if $(WORKER_PYTHON),--python $(WORKER_PYTHON))

AIRFLOW := .airflow
$(AIRFLOW)/venv/.ready: airflow/requirements.lock | setup
	@test -x $(AIRFLOW)/venv/bin/python || $(UV) venv --quiet --python $(PYTHON) $(AIRFLOW)/venv
	$(UV) pip sync --quiet --python $(AIRFLOW)/venv/bin/python airflow/requirements.lock
	@touch $@

airflow-run: setup $(AIRFLOW)/venv/.ready ## the pipeline on a real Airflow, task by task (own env in .airflow/, from airflow/requirements.lock; ENV=ci for the CI sample)
	$(BIN)/python -m nbmlops.commands.airflowrun --env $(ENV_FILE) --venv $(AIRFLOW)/venv --home $(AIRFLOW)

monitor-latest: setup ## monitor only the newest batch; fail when its drift or performance gate trips
	$(BIN)/python -m nbmlops.build.run --env $(ENV_FILE) --env--monitor_last 1
	$(BIN)/nbmlops-report --env $(ENV_FILE) monitoring

browser: setup ## find a Chromium or Chrome for the browser test (NBMLOPS_BROWSER=path), else install Debian's chromium (root or sudo)
	@$(BIN)/python -m nbmlops.tools.browser

ci: ## the pull-request CI sequence, as the workflow runs it: every step (nbval and gates after a build that passed), the comment, then fail if a step failed
	@bash .ci/step --clear
	-bash .ci/step lint $(MAKE) lint
	-bash .ci/step test-fast $(MAKE) test-fast
	-bash .ci/step build $(MAKE) build ENV=ci
	-bash .ci/step nbval --after build $(MAKE) nbval ENV=ci
	-bash .ci/step gates --after build $(MAKE) gates ENV=ci
	-bash .ci/step test-pipeline $(MAKE) test-pipeline
	$(MAKE) comment ENV=ci
	@! grep -vP '\t(0|skipped)\t' "$$(bash .ci/step --folder)/steps.tsv"

ci-as-user: ## make ci as a user who is not root, in a fresh clone of HEAD, with a runner-deep temporary folder: proves it needs no root
	bash .ci/as-user.sh ci

lab: setup ## open JupyterLab (ENV=ci for the CI sample's parameters; the .py notebooks open as notebooks)
	PLOOMBER_ENV_FILENAME=$(ENV_FILE) $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

docs: setup ## the documentation site (README.md and docs/) in reports/docs/, strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build

plot: setup ## draw the pipeline graph to reports/pipeline.html
	$(BIN)/ploomber plot --output reports/pipeline.html

models: setup ## list the registered versions, champion and challenger
	$(BIN)/nbmlops-models --env $(ENV_FILE) list

promote: setup ## make the challenger (or VERSION=N) champion, rewrite the baseline, rescore
	$(BIN)/nbmlops-models --env $(ENV_FILE) promote $(VERSION) $(if $(FORCE),--force)
	$(BIN)/python -m nbmlops.build.run --env $(ENV_FILE)

rollback: setup ## make the previous champion champion again, rewrite the baseline, rescore
	$(BIN)/nbmlops-models --env $(ENV_FILE) rollback
	$(BIN)/python -m nbmlops.build.run --env $(ENV_FILE)

registry-server: setup ## a shared MLflow tracking server on PostgreSQL, on loopback (REGISTRY_PORT=5005; data in .registry/); then export MLFLOW_TRACKING_URI=http://127.0.0.1:5005
	$(BIN)/python -m nbmlops.commands.registryserver start --home .registry $(if $(REGISTRY_PORT),--port $(REGISTRY_PORT))

registry-server-stop: setup ## stop the shared MLflow server and its PostgreSQL (their data stays in .registry/)
	$(BIN)/python -m nbmlops.commands.registryserver stop --home .registry

postgres: setup ## find PostgreSQL for the shared-registry test (NBMLOPS_PG_BIN=folder), else install Debian's postgresql (root or sudo)
	@$(BIN)/python -m nbmlops.commands.registryserver find

mlflow-ui: setup ## open the MLflow UI on the embedded store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port 5000

lock: ## re-resolve requirements.lock from pyproject.toml
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean-products: ## delete build products and reports (the raw snapshot store is kept)
	rm -rf products reports/*.html reports/*.json reports/monitoring reports/notebooks

clean: clean-products ## also delete the virtual environments (the project's and Airflow's)
	rm -rf $(VENV) $(AIRFLOW)
