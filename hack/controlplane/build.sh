#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kube-controller-manager) from the Go modules
# pinned in go.mod/go.sum, into a cache folder keyed by the hash of those two files, and prints the
# folder. A second run with the same go.sum is a no-op; a changed go.sum builds into a new folder.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)"
out="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}/controlplane/$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
# One build at a time (make's target and the tests' fixture may start together): the second waits, then
# finds the first one's binaries.
exec 9>"$out/.lock"
flock 9
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
# Stamp the Kubernetes version the modules are (as Kubernetes' own build does): without it /version says
# v0.0.0-master and clients that check it refuse the server (helm: the chart's kubeVersion). Only the link
# step sees -X, so with Go's build cache warm a re-stamp is a relink, not a rebuild.
k8s_version="$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes v\([0-9.]*\).*/\1/p' go.mod | head -1)"
IFS=. read -r k8s_major k8s_minor _ <<< "$k8s_version"
pkg_version=k8s.io/component-base/version
stamp="-X $pkg_version.gitVersion=v$k8s_version -X $pkg_version.gitMajor=$k8s_major"
stamp="$stamp -X $pkg_version.gitMinor=$k8s_minor -X $pkg_version.gitTreeState=clean"
for pkg in go.etcd.io/etcd/server/v3:etcd \
           k8s.io/kubernetes/cmd/kube-apiserver:kube-apiserver \
           k8s.io/kubernetes/cmd/kube-controller-manager:kube-controller-manager; do
  name="${pkg##*:}"
  echo "building $name (first build of the control plane takes 10-25 minutes on 2 cores)" >&2
  go build -trimpath -ldflags="-s -w $stamp" -o "$out/$name.tmp" "${pkg%%:*}"
  mv "$out/$name.tmp" "$out/$name"
done
touch "$out/.complete"
echo "$out"
