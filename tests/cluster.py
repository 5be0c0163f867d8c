"""The real control plane (modeldeploy.cluster) as tests use it: one per test session, with the node
agent playing the kubelet, modeldeploy's CRD installed, the real kubectl, and a fresh namespace per test.

Building the binaries the first time takes 10-25 minutes (hack/controlplane/build.sh, cached by go.sum);
without Go the tests that need the cluster skip, or fail under CI=true."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from realparts import missing
from toolbin import REPO_ROOT, kubectl_path

from modeldeploy.cluster.binaries import BinariesMissingError, ensure_binaries
from modeldeploy.cluster.controlplane import ControlPlane, start_control_plane
from modeldeploy.cluster.node_agent import NodeAgent
from modeldeploy.cluster.rest import ApiError
from modeldeploy.cluster.thirdparty import third_party_crds

CRD_FILE = REPO_ROOT / "crds" / "modeldeployment.yaml"
_namespaces = itertools.count(1)


def run_kubectl(
    kubeconfig: Path, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real kubectl with `kubeconfig`; with `check`, a failure raises with kubectl's own message."""
    result = subprocess.run(
        [str(kubectl_path()), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
    return result


@dataclass
class Cluster:
    """A running control plane with its node agent."""

    plane: ControlPlane
    agent: NodeAgent

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def server(self) -> str:
        return self.plane.server

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The real kubectl against this cluster (as admin unless `kubeconfig` says otherwise)."""
        return run_kubectl(kubeconfig or self.kubeconfig, *args, check=check, input=input)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        return self.plane.request(method, path, body, **kw)

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        try:
            return self.plane.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def audit_events(self) -> list[dict[str, Any]]:
        return self.plane.audit_events()

    def logs(self) -> str:
        return self.plane.logs()

    def create_namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{next(_namespaces)}-{uuid.uuid4().hex[:6]}"
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        return name

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.request("DELETE", f"/api/v1/namespaces/{name}")


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 30.0, context: str = "") -> Any:
    """Poll `check` (sync) against a deadline; returns its first truthy result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{context}")
        time.sleep(0.05)


def install_crds(cluster: Cluster, files: list[Path]) -> None:
    """Apply CRD manifests with server-side apply and wait until the API serves them."""
    for path in files:
        cluster.kubectl("apply", "--server-side", "--field-manager=test-setup", "-f", str(path))
    names = [yaml.safe_load(path.read_text())["metadata"]["name"] for path in files]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))


@contextlib.contextmanager
def running_cluster(
    workdir: Path, *, install_crd: bool = True, third_party: bool = True
) -> Iterator[Cluster]:
    """Start (building first if needed) a control plane and node agent; stop both afterwards. The cluster
    serves modeldeploy's CRD and, with `third_party`, the KEDA, Prometheus Operator and Gateway API CRDs
    (from their Go modules), as a cluster prepared by docs/install.md does."""
    try:
        binaries = ensure_binaries()
        extra = third_party_crds() if third_party else []
    except BinariesMissingError as error:
        missing("control plane (hack/controlplane)", str(error))
    plane = start_control_plane(binaries, workdir)
    agent = NodeAgent(plane.credentials)
    try:
        agent.start()
        cluster = Cluster(plane, agent)
        install_crds(cluster, ([CRD_FILE] if install_crd else []) + extra)
        yield cluster
    finally:
        agent.stop()
        plane.stop()


def use_cluster_kubeconfig(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make `path` current for kopf and the Kubernetes client (both read $KUBECONFIG once, at import)."""
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    monkeypatch.setattr("kubernetes.aio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path
