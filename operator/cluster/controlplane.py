"""etcd, kube-apiserver and kube-controller-manager on free loopback ports, started the way
controller-runtime's envtest starts them (generated certificates, a service-account key pair, an admin
client identity, RBAC), plus the controllers that make Deployments, ReplicaSets, Jobs, EndpointSlices,
autoscaling and garbage collection behave as on a cluster. There is no scheduler or kubelet: the node agent
(`modeldeploy.cluster.node_agent`) binds pods and reports their status."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy.cluster.binaries import Binaries
from modeldeploy.cluster.certs import CertificateAuthority, service_account_keys
from modeldeploy.cluster.processes import ServerProcess, free_port, http_ok, launch
from modeldeploy.cluster.rest import ApiError, Credentials, RestClient, write_kubeconfig

# The controllers a cluster needs for what the operator writes (kube-controller-manager --controllers).
CONTROLLERS = (
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "endpointslice-controller",
    "horizontal-pod-autoscaler-controller",
    "serviceaccount-controller",
    "namespace-controller",
)
READY_TIMEOUT_S = 120.0
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


@dataclass
class ControlPlane:
    """A running control plane. `stop()` ends every process it started."""

    workdir: Path
    binaries: Binaries
    credentials: Credentials
    kubeconfig: Path
    etcd_url: str
    audit_log: Path
    authority: CertificateAuthority
    processes: dict[str, ServerProcess] = field(default_factory=dict)
    _client: RestClient | None = None

    @property
    def server(self) -> str:
        return self.credentials.server

    @property
    def client(self) -> RestClient:
        if self._client is None:
            self._client = RestClient(self.credentials)
        return self._client

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        return self.client.request(method, path, body, **kw)

    def user_kubeconfig(self, user: str, group: str | None = None) -> Path:
        """A kubeconfig for a client-certificate identity of its own (so the audit log tells it apart)."""
        pair = self.authority.issue(f"user-{user}", user, organization=group)
        credentials = Credentials(self.server, self.credentials.ca, pair.cert, pair.key)
        return write_kubeconfig(self.workdir / f"{user}.kubeconfig", credentials, user=user)

    def audit_events(self) -> list[dict[str, Any]]:
        """Every request the API server has answered so far (audit level Metadata, stage ResponseComplete)."""
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name}:\n{p.log_tail(chars)}" for name, p in self.processes.items())

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port and storage (an upgrade or a crash)."""
        old = self.processes.pop("kube-apiserver")
        old.stop()
        self.processes["kube-apiserver"] = _start_apiserver(
            self.binaries,
            self.workdir,
            credentials=self.credentials,
            etcd_url=self.etcd_url,
            audit_log=self.audit_log,
            port=_port(self.server),
        )
        _wait_apiserver_ready(self.processes["kube-apiserver"], self.client)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process is not None:
                # A few seconds for a graceful stop, then the process group is killed: kube-apiserver
                # otherwise drains open watches for up to a minute, and nothing here needs that.
                process.signal_stop()
                process.wait_stopped(timeout_s=3)


def _port(server: str) -> int:
    return int(server.rsplit(":", 1)[1])


def start_control_plane(
    binaries: Binaries,
    workdir: Path,
    *,
    controllers: tuple[str, ...] = CONTROLLERS,
    progress: Callable[[str], None] | None = None,
) -> ControlPlane:
    """Start etcd, kube-apiserver and kube-controller-manager; return once the API answers /readyz and the
    controller manager has created the default ServiceAccount (so pods can be admitted)."""
    say = progress or (lambda _message: None)
    workdir.mkdir(parents=True, exist_ok=True)
    pki = workdir / "pki"
    authority = CertificateAuthority(pki)
    authority.issue("apiserver", "kube-apiserver", hosts=("127.0.0.1", "localhost"))
    admin = authority.issue("admin", "admin", organization="system:masters")
    manager = authority.issue("controller-manager", "system:kube-controller-manager")
    service_account_keys(pki)
    server = f"https://127.0.0.1:{free_port()}"
    credentials = Credentials(server, authority.cert_path, admin.cert, admin.key)
    plane = ControlPlane(
        workdir=workdir,
        binaries=binaries,
        credentials=credentials,
        kubeconfig=write_kubeconfig(workdir / "kubeconfig", credentials),
        etcd_url=f"http://127.0.0.1:{free_port()}",
        audit_log=workdir / "audit.log",
        authority=authority,
    )
    try:
        say("starting etcd")
        plane.processes["etcd"] = _start_etcd(binaries, workdir, plane.etcd_url)
        say("starting kube-apiserver")
        plane.processes["kube-apiserver"] = _start_apiserver(
            binaries,
            workdir,
            credentials=credentials,
            etcd_url=plane.etcd_url,
            audit_log=plane.audit_log,
            port=_port(server),
        )
        _wait_apiserver_ready(plane.processes["kube-apiserver"], plane.client)
        say("starting kube-controller-manager")
        manager_config = write_kubeconfig(
            workdir / "controller-manager.kubeconfig",
            Credentials(server, authority.cert_path, manager.cert, manager.key),
            user="system:kube-controller-manager",
        )
        plane.processes["kube-controller-manager"] = _start_controller_manager(
            binaries, workdir, manager_config, controllers
        )
        _wait_service_account(plane)
    except BaseException:
        plane.stop()
        raise
    return plane


def _start_etcd(binaries: Binaries, workdir: Path, url: str) -> ServerProcess:
    peer = f"http://127.0.0.1:{free_port()}"
    process = launch(
        "etcd",
        [
            str(binaries.path("etcd")),
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            # A test cluster: losing the last writes on a power cut is fine, fsync per write is slow.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        workdir / "etcd.log",
    )
    process.wait_until(lambda: http_ok(f"{url}/health"), "healthy", READY_TIMEOUT_S)
    return process


def _start_apiserver(
    binaries: Binaries, workdir: Path, *, credentials: Credentials, etcd_url: str, audit_log: Path, port: int
) -> ServerProcess:
    pki = workdir / "pki"
    policy = workdir / "audit-policy.yaml"
    policy.write_text(_AUDIT_POLICY)
    return launch(
        "kube-apiserver",
        [
            str(binaries.path("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={credentials.ca}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            # No kubernetes Service endpoints: the API server listens on loopback, which they refuse.
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
            "--v=1",
        ],
        workdir / "kube-apiserver.log",
    )


def _wait_apiserver_ready(process: ServerProcess, client: RestClient) -> None:
    process.wait_until(client.healthy, "ready (/readyz)", READY_TIMEOUT_S)


def _start_controller_manager(
    binaries: Binaries, workdir: Path, kubeconfig: Path, controllers: tuple[str, ...]
) -> ServerProcess:
    pki = workdir / "pki"
    return launch(
        "kube-controller-manager",
        [
            str(binaries.path("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--controllers={','.join(controllers)}",
            # Each controller acts as its own ServiceAccount (system:serviceaccount:kube-system:NAME), as on
            # a real cluster, so RBAC is exercised for them too.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false",
            # The default client limit (20 requests/s per controller) would make the Job, ReplicaSet and
            # Deployment controllers, not the operator, the bottleneck of benchmarks/reconcile.py.
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
            "--v=1",
        ],
        workdir / "kube-controller-manager.log",
    )


def _wait_service_account(plane: ControlPlane) -> None:
    def exists() -> bool:
        with contextlib.suppress(ApiError, OSError):
            plane.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return True
        return False

    plane.processes["kube-controller-manager"].wait_until(
        exists, "running (default ServiceAccount created)", READY_TIMEOUT_S
    )


@contextlib.contextmanager
def running_control_plane(binaries: Binaries, workdir: Path) -> Iterator[ControlPlane]:
    plane = start_control_plane(binaries, workdir)
    try:
        yield plane
    finally:
        plane.stop()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll `check` against a deadline (for callers outside a ServerProcess)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)
