# The project's commands. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/interop/node_modules/.package-lock.json

.PHONY: run test test-fast lint build bench events pipeline registry-tools sam-local clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): tests/interop/package.json tests/interop/package-lock.json
	npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error

run: $(STAMP)  ## the whole service on https://127.0.0.1:8443 (spec §7); VERBOSE=1 adds the functions' logs
	$(BIN)/python -m local.stack $(if $(VERBOSE),--verbose)

registry-tools:  ## Debian's docker-registry and skopeo, for the release tests (apt, as root)
	bash .ci/registry.sh

test: $(STAMP) $(NODE_STAMP) registry-tools lint build  ## lint, sam build, the in-process suite, then the containers tier
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not containers"
	$(MAKE) sam-local

test-fast: $(STAMP) $(NODE_STAMP) registry-tools  ## the in-process suite, without the template tools and containers
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not containers"

lint: $(STAMP)  ## ruff, mypy, cfn-lint, sam validate --lint, statelint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	bash .ci/sam-venv.sh
	bash .ci/sam-check.sh

build: $(STAMP)  ## sam build (aws-sam-cli in its own venv)
	bash .ci/sam-venv.sh
	bash .ci/sam-build.sh

bench: $(STAMP)  ## in-process cost per signature vs the floor, AWS calls, import times
	$(BIN)/python -m bench.signing

pipeline: $(STAMP)  ## a batch SigningPipeline execution against the running local stack (make run)
	$(BIN)/python -m local.client pipeline $(or $(INPUT),events/signing_pipeline/batch.json)

events: $(STAMP)  ## regenerate events/ (realistic API Gateway and direct-invocation events)
	$(BIN)/python -m local.make_events

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

.PHONY: sam-local
sam-local: $(STAMP)  ## every function in its Lambda-like container (sam local invoke) against moto; root (docs/sam-local.md)
	$(BIN)/python -m pytest -m containers -s -q tests/containers
