# The two commands of README: `make run` (the main job) and `make test` (what .ci/run runs).
# Both create .venv and install what they need into it; `make test` also installs Prometheus (Debian).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/pip install -q --disable-pip-version-check

.PHONY: run test lint typecheck pytest install system-deps controlplane cluster cluster-down

$(BIN)/python:
	python3 -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

# Full install once (and again when pyproject.toml changes); the editable link tree is refreshed every
# time because `editable_mode=strict` (needed by mypy) does not see modules added after install.
$(VENV)/.deps-installed: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]' --config-settings editable_mode=strict
	touch $@

install: $(VENV)/.deps-installed
	$(PIP_INSTALL) --no-deps -e . --config-settings editable_mode=strict

system-deps:
	@command -v prometheus >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy -p modeldeploy
	$(BIN)/mypy

# The real control plane (etcd, kube-apiserver, kube-controller-manager) from the Go modules pinned in
# hack/controlplane; cached by the hash of go.mod/go.sum, so this is a no-op until they change.
controlplane:
	hack/controlplane/build.sh >/dev/null

# A local cluster for people: `make cluster`, then `export KUBECONFIG=.cache/cluster/kubeconfig`.
cluster: install controlplane
	$(BIN)/modeldeploy cluster up --dir .cache/cluster
	@cd tests && ../$(BIN)/python -c 'import toolbin; print("kubectl:", toolbin.tools_dir() / "kubectl")' 

cluster-down: install
	$(BIN)/modeldeploy cluster down --dir .cache/cluster

pytest: install system-deps controlplane
	$(BIN)/pytest -q --durations=25 $(PYTEST_ARGS)

test: lint typecheck pytest

run: install
	$(BIN)/modeldeploy render -f examples/cnn-int8-hpa.yaml
