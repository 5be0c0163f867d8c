"""The sandbox's pods as local processes: what a kubelet and a container runtime would do, without
containers. The optimization Job's pod runs the real `modeldeploy optimize` with the arguments the operator
rendered; each Triton pod runs the real `tritonserver` on its own loopback address with the rendered ports,
Ready once Triton's own `/v2/health/ready` answers. Volumes become folders: a `persistentVolumeClaim` is
`PVC_ROOT/CLAIM` (with the mount's subPath), any other volume a folder of the pod.

Pod IPs stay in 10.244.0.0/16 (the EndpointSlice controller refuses loopback addresses); the process of
the pod with IP 10.A.B.C listens on 127.A.B.C, which on Linux is loopback too (`loopback_address`).

The one substitution: the pytriton build of tritonserver has only the python backend, so each ONNX model of
the revision's repository is served through `modeldeploy.sandbox.triton_onnx_adapter` (ONNX Runtime inside
a python-backend model, the same config.pbtxt). `LocalPods.slow(revision, ms)` asks that adapter to answer
every request of that revision's pods `ms` later: a slow revision on purpose.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy.cluster.node_agent import (
    REVISION_LABEL,
    StatusReport,
    Termination,
    is_job_pod,
    running_status,
    terminated_status,
)
from modeldeploy.cluster.processes import ServerProcess, http_ok, launch
from modeldeploy.rendering import PVC_ROOT
from modeldeploy.sandbox.triton_onnx_adapter import adapt_repository
from modeldeploy.sandbox.tritonserver import TritonDistribution

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096  # a kubelet keeps at most 4096 bytes of a termination message


def loopback_address(pod_ip: str) -> str:
    """10.A.B.C → 127.A.B.C: where the sandbox's process for that pod listens."""
    return "127." + pod_ip.split(".", 1)[1]


Mounts = list[tuple[str, Path]]


def pod_mounts(pod: Mapping[str, Any], container: Mapping[str, Any], pvc_root: Path, pod_dir: Path) -> Mounts:
    """(mount path, local folder) for each volume mount, longest path first; PVC_ROOT itself is the
    claims' root (the optimizer resolves pvc:// URIs below `$MODELDEPLOY_PVC_ROOT`)."""
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or ()}
    mounts: Mounts = [(PVC_ROOT, pvc_root)]
    for mount in container.get("volumeMounts") or ():
        claim = (volumes.get(mount["name"], {}).get("persistentVolumeClaim") or {}).get("claimName")
        base = pvc_root / claim if claim else pod_dir / "volumes" / mount["name"]
        local = base / mount.get("subPath", "")
        local.mkdir(parents=True, exist_ok=True)
        mounts.append((mount["mountPath"], local))
    return sorted(mounts, key=lambda item: -len(item[0]))


def local_path(text: str, mounts: Mounts) -> str:
    """`text` (a path, or `--flag=path`) with a mount path replaced by its local folder."""
    flag, equals, value = text.partition("=") if text.startswith("--") else ("", "", text)
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return f"{flag}{equals}{local}{value[len(mount_path) :]}"
    return text


def job_command(
    container: Mapping[str, Any], mounts: Mounts, local_message: Path, bin_dir: Path
) -> list[str]:
    """The Job container's command and args as a local process runs them: the image's `modeldeploy` is
    this install's (in `bin_dir`), mount paths in the arguments become their local folders, and the
    termination message path becomes `local_message`. The program's own path is never mapped into a volume
    (a checkout under /tmp would otherwise land in the pod's /tmp emptyDir)."""
    command = [*container.get("command", ()), *container.get("args", ())]
    executable = bin_dir / command[0]
    program = str(executable) if executable.is_file() else local_path(command[0], mounts)
    message_path = container.get("terminationMessagePath", "/dev/termination-log")
    rest = [str(local_message) if arg == message_path else local_path(arg, mounts) for arg in command[1:]]
    return [program, *rest]


@dataclass
class RunningPod:
    name: str
    process: ServerProcess


class LocalPods:
    """A `LivePolicy` for `modeldeploy.cluster.node_agent.NodeAgent`: each pod is a local process."""

    def __init__(self, workdir: Path, pvc_root: Path, triton: TritonDistribution) -> None:
        self.workdir = workdir
        self.pvc_root = pvc_root
        self.triton = triton
        self._pods: dict[str, RunningPod] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.launched: list[int] = []  # every process ever started, for checks that none is left
        self.delays: dict[str, float] = {}  # revision → ms the adapter waits before each answer

    def slow(self, revision: str, delay_ms: float) -> None:
        """Pods of `revision` started from now on answer every request `delay_ms` later."""
        self.delays[revision] = delay_ms

    # --- LivePolicy -----------------------------------------------------------------------------------
    def start(self, pod: Mapping[str, Any], ip: str, report: StatusReport) -> dict[str, Any]:
        meta = pod["metadata"]
        pod_dir = self.workdir / f"{meta['namespace']}.{meta['name']}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        container = pod["spec"]["containers"][0]
        mounts = pod_mounts(pod, container, self.pvc_root, pod_dir)
        try:
            if is_job_pod(pod):
                process, watch = self._start_job(pod_dir, container, mounts), self._watch_job
            else:
                delay_ms = self.delays.get(meta.get("labels", {}).get(REVISION_LABEL, ""), 0.0)
                process = self._start_triton(pod_dir, container, mounts, ip, delay_ms)
                watch = self._watch_triton
        except Exception as error:  # the container could not start: the pod fails, as with a bad image
            logger.warning("sandbox pod %s did not start: %s", meta["name"], error)
            return terminated_status(pod, ip, Termination(128, f"sandbox could not start it: {error}"))
        with self._lock:
            if self._closed:
                process.stop()
                return running_status(pod, ip, ready=False)
            self._pods[meta["uid"]] = RunningPod(meta["name"], process)
            self.launched.append(process.process.pid)
        threading.Thread(target=watch, args=(pod, ip, process, report, pod_dir), daemon=True).start()
        return running_status(pod, ip, ready=False)

    def stop(self, uid: str) -> None:
        with self._lock:
            running = self._pods.pop(uid, None)
        if running is not None:
            running.process.stop()

    def stop_all(self) -> None:
        with self._lock:
            self._closed = True
            pods, self._pods = list(self._pods.values()), {}
        for running in pods:
            running.process.signal_stop()
        for running in pods:
            running.process.wait_stopped()

    def process_ids(self) -> list[int]:
        with self._lock:
            return [running.process.process.pid for running in self._pods.values()]

    # --- the optimization Job -------------------------------------------------------------------------
    def _environment(self, container: Mapping[str, Any], mounts: Mounts) -> dict[str, str]:
        env = {
            item["name"]: local_path(str(item.get("value", "")), mounts)
            for item in container.get("env") or ()
        }
        return self.triton.environment(env)

    def _start_job(self, pod_dir: Path, container: Mapping[str, Any], mounts: Mounts) -> ServerProcess:
        local_message = pod_dir / "termination-log"
        local_message.unlink(missing_ok=True)
        args = job_command(container, mounts, local_message, Path(sys.executable).parent)
        return launch(
            f"pod {pod_dir.name}", args, pod_dir / "container.log", self._environment(container, mounts)
        )

    def _watch_job(
        self, pod: Mapping[str, Any], ip: str, process: ServerProcess, report: StatusReport, pod_dir: Path
    ) -> None:
        code = process.process.wait()
        message = ""
        with contextlib.suppress(OSError):
            message = (pod_dir / "termination-log").read_text(errors="replace")
        if not message and code != 0:  # terminationMessagePolicy: FallbackToLogsOnError
            message = process.log_tail(MESSAGE_LIMIT)
        report(terminated_status(pod, ip, Termination(code, message[-MESSAGE_LIMIT:])))

    # --- Triton -----------------------------------------------------------------------------------------
    def _start_triton(
        self, pod_dir: Path, container: Mapping[str, Any], mounts: Mounts, ip: str, delay_ms: float
    ) -> ServerProcess:
        args = container.get("args") or ()
        address = loopback_address(ip)
        served = pod_dir / "models"
        rendered: list[str] = []
        for arg in args:
            if arg.startswith("--model-repository="):
                source = Path(local_path(arg, mounts).partition("=")[2])
                adapt_repository(source, served, delay_ms=delay_ms)
                rendered.append(f"--model-repository={served}")
            else:
                rendered.append(arg)
        command = [
            str(self.triton.server),
            *rendered,
            f"--backend-directory={self.triton.backend_directory(pod_dir / 'backends')}",
            f"--http-address={address}",
            f"--grpc-address={address}",
            f"--metrics-address={address}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=false",
            "--exit-timeout-secs=5",
            # Shared-memory regions are named by prefix: two servers with the same prefix collide.
            f"--backend-config=python,shm-region-prefix-name=md-{pod_dir.name[-40:]}-",
        ]
        return launch(
            f"pod {pod_dir.name}", command, pod_dir / "container.log", self._environment(container, mounts)
        )

    def _watch_triton(
        self, pod: Mapping[str, Any], ip: str, process: ServerProcess, report: StatusReport, pod_dir: Path
    ) -> None:
        health = f"http://{loopback_address(ip)}:{_http_port(pod)}/v2/health/ready"
        ready = False
        while (code := process.process.poll()) is None:
            now_ready = http_ok(health)
            if now_ready != ready:
                ready = now_ready
                report(running_status(pod, ip, ready=ready))
            time.sleep(0.5 if ready else 0.2)
        with self._lock:
            stopped = pod["metadata"]["uid"] not in self._pods
        if not stopped:
            report(terminated_status(pod, ip, Termination(code, process.log_tail(MESSAGE_LIMIT))))


def _http_port(pod: Mapping[str, Any]) -> int:
    for port in pod["spec"]["containers"][0].get("ports") or ():
        if port.get("name") == "http":
            return int(port["containerPort"])
    return 8000
