"""Everything the sandbox starts on this machine, and stops again: the real control plane, the CRDs, the
node agent running pods as local processes, the real operator (`modeldeploy run`) and a real Prometheus
discovering pods from the API server. `Stack.stop()` ends every process it started (also after Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.cluster.binaries import ensure_binaries, source_folder
from modeldeploy.cluster.controlplane import ControlPlane, start_control_plane, wait_for
from modeldeploy.cluster.node_agent import NodeAgent
from modeldeploy.cluster.processes import ServerProcess, free_port, launch
from modeldeploy.cluster.rest import ApiError
from modeldeploy.cluster.thirdparty import third_party_crds
from modeldeploy.sandbox import monitoring
from modeldeploy.sandbox.pods import LocalPods
from modeldeploy.sandbox.tritonserver import find_triton

Say = Callable[[str], None]
PODMONITOR_CRD = "monitoring.coreos.com_podmonitors.yaml"


@dataclass
class Stack:
    workdir: Path
    say: Say
    plane: ControlPlane | None = None
    agent: NodeAgent | None = None
    pods: LocalPods | None = None
    operator: ServerProcess | None = None
    prometheus: ServerProcess | None = None
    prometheus_url: str = ""
    prometheus_binary: Path | None = None
    prometheus_port: int = field(default_factory=free_port)  # chosen first: the ModelDeployments name it
    started_pids: list[int] = field(default_factory=list)

    @property
    def pvc_root(self) -> Path:
        return self.workdir / "volumes"

    def start(self, namespace: str) -> None:
        """Build what is missing (first use), then start the cluster, the agent and the operator."""
        binaries = ensure_binaries(self.say)
        self.prometheus_binary = monitoring.ensure_prometheus(self.say)
        triton = find_triton()
        crds = [_repository_root() / "crds" / "modeldeployment.yaml"]
        crds += [path for path in third_party_crds() if path.name == PODMONITOR_CRD]
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.say("starting the control plane (etcd, kube-apiserver, kube-controller-manager)")
        self.plane = start_control_plane(binaries, self.workdir / "cluster", progress=None)
        self.started_pids += [p.process.pid for p in self.plane.processes.values()]
        for path in crds:
            self._install_crd(path)
        self.plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        self.pods = LocalPods(self.workdir / "pods", self.pvc_root, triton)
        self.agent = NodeAgent(self.plane.credentials, self.pods)
        self.agent.start()
        self.say("starting the operator (modeldeploy run) and the node agent (pods as local processes)")
        env = dict(os.environ, KUBECONFIG=str(self.plane.kubeconfig))
        self.operator = launch(
            "operator",
            [
                sys.executable,
                "-m",
                "modeldeploy.sandbox.operator_process",
                "run",
                "--standalone",
                f"--namespace={namespace}",
                "--health-port=0",
                "--metrics-port=0",
            ],
            self.workdir / "operator.log",
            env,
        )
        self.started_pids.append(self.operator.process.pid)

    def _install_crd(self, path: Path) -> None:
        assert self.plane is not None
        crd: dict[str, Any] = yaml.safe_load(path.read_text())
        self.plane.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        name = crd["metadata"]["name"]

        def established() -> bool:
            assert self.plane is not None
            body = self.plane.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            conditions = (body.get("status") or {}).get("conditions") or ()
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, f"CRD {name} established", 60)

    def start_prometheus(self, pod_monitor: dict[str, Any]) -> str:
        """Prometheus scraping what the PodMonitor selects, discovered from the API server."""
        assert self.plane is not None and self.prometheus_binary is not None
        config = monitoring.scrape_config(pod_monitor, self.plane.credentials)
        self.prometheus, self.prometheus_url = monitoring.start_prometheus(
            self.prometheus_binary, self.workdir / "prometheus", [config], self.prometheus_port
        )
        self.started_pids.append(self.prometheus.process.pid)
        return self.prometheus_url

    def get(self, path: str) -> dict[str, Any] | None:
        assert self.plane is not None
        try:
            return self.plane.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def logs(self) -> str:
        parts = [self.plane.logs(1500)] if self.plane is not None else []
        for process in (self.operator, self.prometheus):
            if process is not None:
                parts.append(f"--- {process.name}:\n{process.log_tail(3000)}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop everything, each step even if one before it failed: servers are signalled together and
        then waited for; the API server goes before the agent, which ends the agent's watch at once."""
        steps: list[Callable[[], None]] = []
        servers = [process for process in (self.operator, self.prometheus) if process is not None]
        steps += [process.signal_stop for process in servers]
        if self.pods is not None:
            steps.append(self.pods.stop_all)
        if self.plane is not None:
            steps.append(self.plane.stop)
        if self.agent is not None:
            steps.append(self.agent.stop)
        steps += [process.wait_stopped for process in servers]
        for step in steps:
            with contextlib.suppress(Exception):
                step()


def _repository_root() -> Path:
    source = source_folder()
    if source is None:
        raise FileNotFoundError("the sandbox runs from a modeldeploy checkout (crds/, hack/)")
    return source.parent.parent


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` whose process group still has a process (each server was started as the leader of
    its own group, so this covers its children too, e.g. Triton's python-backend stubs); zombies of ours
    are reaped first."""
    running = []
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:  # the group id was reused by someone else's processes: not ours
            continue
        running.append(pid)
    return running


def wait_gone(pids: list[int], timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
