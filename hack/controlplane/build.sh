#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kube-controller-manager) from the Go modules
# pinned in go.mod/go.sum, into a cache folder keyed by the hash of those two files, and prints the
# folder. A second run with the same go.sum is a no-op; a changed go.sum builds into a new folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
out="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}/controlplane/$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
for pkg in go.etcd.io/etcd/server/v3:etcd \
           k8s.io/kubernetes/cmd/kube-apiserver:kube-apiserver \
           k8s.io/kubernetes/cmd/kube-controller-manager:kube-controller-manager; do
  name="${pkg##*:}"
  echo "building $name (first build of the control plane takes 10-25 minutes on 2 cores)" >&2
  go build -trimpath -ldflags='-s -w' -o "$out/$name.tmp" "${pkg%%:*}"
  mv "$out/$name.tmp" "$out/$name"
done
touch "$out/.complete"
echo "$out"
