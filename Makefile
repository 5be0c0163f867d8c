# The two commands of README: `make run` (the sandbox story) and `make test` (what .ci/run runs).
# Both create .venv and install what they need into it; `make test` also installs Prometheus (Debian).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
# uv (from PyPI, into the venv) installs: with its cache warm a full install takes seconds instead of pip's
# minutes. `.venv/bin/pip` stays available for extras (README).
PIP_INSTALL := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/uv pip install -q

.PHONY: run test lint typecheck pytest install system-deps controlplane cluster cluster-down

$(BIN)/python:
	python3 -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip 'uv>=0.5'

# Full install once (and again when pyproject.toml changes); the editable link tree is refreshed every
# time because `editable_mode=strict` (needed by mypy) does not see modules added after install.
$(VENV)/.deps-installed: pyproject.toml | $(BIN)/uv
	$(PIP_INSTALL) -e '.[test]' --config-settings editable_mode=strict
	touch $@

install: $(VENV)/.deps-installed
	$(PIP_INSTALL) --no-deps --reinstall-package modeldeploy -e . --config-settings editable_mode=strict

# actionlint (tests/test_release.py lints the workflows) from its Go module, into a cache folder; shellcheck
# lets it check the workflows' shell steps too.
ACTIONLINT := $(HOME)/.cache/modeldeploy/actionlint/bin/actionlint

system-deps:
	@command -v prometheus >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v shellcheck >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }
	@[ -x $(ACTIONLINT) ] || GOBIN=$(dir $(ACTIONLINT)) go install github.com/rhysd/actionlint/cmd/actionlint@latest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The cache outlives a fresh checkout (a warm CI run); mypy re-checks whatever changed.
MYPY_CACHE := $(HOME)/.cache/modeldeploy/mypy
typecheck: install
	$(BIN)/mypy --cache-dir $(MYPY_CACHE) -p modeldeploy
	$(BIN)/mypy --cache-dir $(MYPY_CACHE)

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

# The whole story on this machine (docs/sandbox.md): builds the control plane and Prometheus from Go
# modules on first use, then optimize → Ready → canary → promote → slow canary → rollback, live.
run: install
	$(BIN)/modeldeploy sandbox $(SANDBOX_ARGS)
