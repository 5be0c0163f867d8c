#!/usr/bin/env bash
# Builds the real Prometheus (github.com/prometheus/prometheus, cmd/prometheus) from the Go module pinned
# in go.mod/go.sum, with Kubernetes service discovery only (Debian's prometheus package is built without
# it), into a cache folder keyed by the hash of those files, and prints the folder. A second run with the
# same go.sum is a no-op.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
out="${MODELDEPLOY_CACHE:-$HOME/.cache/modeldeploy}/prometheus/$key"
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"
# One build at a time (make's target and the tests may start together): the second waits for the first.
exec 9>"$out/.lock"
flock 9
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
echo "building prometheus (first build takes 5-15 minutes on 2 cores)" >&2
# remove_all_sd + enable_kubernetes_sd: the only discovery the sandbox uses (Prometheus' own build tags).
go build -tags remove_all_sd,enable_kubernetes_sd -trimpath -ldflags='-s -w' \
  -o "$out/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus
mv "$out/prometheus.tmp" "$out/prometheus"
touch "$out/.complete"
echo "$out"
