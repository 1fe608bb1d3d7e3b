# chatops: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
ENVPY := $(PY) env/localenv.py

.PHONY: help venv build image env-up env-down env-status test unit e2e lint crds demo operator

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv with chatops and its dev tools

build: ## build the local environment's binaries from the Go module proxy (cached)
	env/build.sh

image: ## build the operator image: Docker when an engine runs, else buildah on a local base (cached)
	env/image.sh

env-up: venv ## start the local environment (builds what is missing); writes .chatops-env/env
	$(ENVPY) up

env-down: venv ## stop everything env-up started
	$(ENVPY) down

env-status: venv
	$(ENVPY) status

crds: venv ## regenerate crds/ from the models
	$(PY) -m chatops.cli crds --out crds

lint: venv ## ruff and mypy --strict
	$(VENV)/bin/ruff check operator tests env bench
	$(VENV)/bin/mypy

unit: venv ## unit tests: no network, no cluster
	$(PY) -m pytest tests/unit -q

# Tests run on WORKERS pytest-xdist workers (they mostly wait on the cluster), then the
# tests marked serial run alone (see tests/e2e/conftest.py and CONTRIBUTING.md).
WORKERS  ?= 2
PARALLEL := -n $(WORKERS) --dist loadgroup -m 'not serial'
SERIAL   := -n 0 -m serial
# pytest exits 5 when every test is deselected: no serial test is no failure
NONE_OK  := || test \$$? = 5

e2e: venv build ## e2e tests against the local environment (started and stopped if not up)
	$(ENVPY) session "$(PY) -m pytest tests/e2e -q $(PARALLEL)" \
		"$(PY) -m pytest tests/e2e -q $(SERIAL) $(NONE_OK)"

test: venv build lint ## the whole suite: lint, then unit and e2e (in parallel, then the serial ones)
	$(ENVPY) session "$(PY) -m pytest tests -q $(PARALLEL)" \
		"$(PY) -m pytest tests/e2e -q $(SERIAL) $(NONE_OK)"

operator: env-up ## run the operator in the foreground against the local cluster
	source .chatops-env/env && $(VENV)/bin/chatops run

demo: env-up ## bring up the environment, install the CRDs, run the operator, apply the examples
	$(PY) env/demo.py

.PHONY: bench bench-releases bench-backups bench-pitr bench-dataplane bench-notify bench-sidebyside bench-memory
bench: bench-releases bench-backups bench-pitr bench-dataplane bench-notify ## run the benchmarks and print their results (see bench/)

bench-releases: env-up ## ChatRelease benchmarks: rollback reaction time, 200 releases at once
	source .chatops-env/env && PATH=$$CHATOPS_TOOLS_PATH:$$PATH $(PY) bench/release_reaction.py
	source .chatops-env/env && PATH=$$CHATOPS_TOOLS_PATH:$$PATH $(PY) bench/release_scale.py

bench-backups: env-up ## backup and restore vs mongodump/mongorestore and the raw read, two sizes
	source .chatops-env/env && PATH=$$CHATOPS_TOOLS_PATH:$$PATH $(PY) bench/backup_bench.py --sizes 50000,200000

bench-pitr: env-up ## RPO of the oplog archive under 200 writes/s, 10-minute slices
	source .chatops-env/env && PATH=$$CHATOPS_TOOLS_PATH:$$PATH $(PY) bench/pitr_bench.py --rate 200 --seconds 120

bench-dataplane: env-up ## what a release costs users through Traefik: floor, bad canary, WebSocket drain
	source .chatops-env/env && PATH=$$CHATOPS_TOOLS_PATH:$$PATH $(PY) bench/dataplane_bench.py

bench-sidebyside: venv ## chatops, Argo Rollouts and Flagger on one private control plane (RUNS=5), then SCALE=200 releases each
	env/build.sh k8s etcd kwok gatewayapi prometheus flagger argo-rollouts argo-gatewayapi-plugin
	$(PY) bench/sidebyside.py --runs $${RUNS:-5} $${JSON:+--json $$JSON}
	$(PY) bench/sidebyside.py --scale $${SCALE:-200} $${SCALE_JSON:+--json $$SCALE_JSON}

bench-memory: env-up ## operator RSS at idle, under a burst of 200 ChatReleases, after they settle and are deleted
	source .chatops-env/env && PATH=$$CHATOPS_TOOLS_PATH:$$PATH $(PY) bench/memory_bench.py $${TRACE:+--trace} $${JSON:+--json $$JSON}

bench-notify: ## notification delivery through a receiver away 10 s (refused, then 500s)
	$(PY) bench/notify_outage.py --outage 10 --notifications 20
