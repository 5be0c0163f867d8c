"""The CRDs of the third-party APIs modeldeploy writes objects for (KEDA ScaledObject, Prometheus Operator
PodMonitor, Gateway API HTTPRoute), taken from the manifests those projects ship in their Go modules, pinned
in hack/controlplane/crds/go.mod (go.sum verifies them). Nothing is copied into this repository."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from modeldeploy.cluster.binaries import BinariesMissingError, source_folder

# module → the CRD manifests it ships that a cluster running modeldeploy may need
CRD_MANIFESTS: dict[str, tuple[str, ...]] = {
    "github.com/kedacore/keda/v2": ("config/crd/bases/keda.sh_scaledobjects.yaml",),
    "github.com/prometheus-operator/prometheus-operator": (
        "example/prometheus-operator-crd-full/monitoring.coreos.com_podmonitors.yaml",
    ),
    "sigs.k8s.io/gateway-api": (
        "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
        "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
    ),
}


def pinned_versions() -> dict[str, str]:
    """module → version, as hack/controlplane/crds/go.mod pins them."""
    source = _module_folder()
    versions = {}
    for line in (source / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in CRD_MANIFESTS:
            versions[parts[0]] = parts[1]
    return versions


def _module_folder() -> Path:
    source = source_folder()
    if source is None:
        raise BinariesMissingError("hack/controlplane not found (run from a modeldeploy checkout)")
    return source / "crds"


def third_party_crds() -> list[Path]:
    """The CRD files, downloaded through the Go module proxy on first use (then from Go's module cache)."""
    if shutil.which("go") is None:
        raise BinariesMissingError("the Go toolchain is needed to fetch the third-party CRDs")
    result = subprocess.run(
        ["go", "mod", "download", "-json", *CRD_MANIFESTS],
        cwd=_module_folder(),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise BinariesMissingError(f"go mod download failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    decoder, text, files = json.JSONDecoder(), result.stdout, []
    position = 0
    while position < len(text.rstrip()):
        module, position = decoder.raw_decode(text, position)
        position = len(text) - len(text[position:].lstrip())
        for manifest in CRD_MANIFESTS[module["Path"]]:
            files.append(Path(module["Dir"]) / manifest)
    return files
