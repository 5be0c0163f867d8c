"""A node agent that stands in for the kubelet (none can run here): it registers a Node, binds every
unscheduled Pod to it (there is no scheduler either) and reports pod status the way a kubelet would:
Running with a pod IP, containers started and Ready (or not Ready, when the policy says so), and for pods
of a Job, the container's termination with an exit code and a termination message. Pods that are being
deleted are removed at once, as a kubelet confirms a graceful deletion. Like the kubelet's pod workers,
pods are handled concurrently (in `POD_WORKERS` threads), each pod's steps in order in one of them. What
the pods' containers would
compute is decided by a `PodPolicy` (scripted outcomes in tests and `make cluster`), or, with a
`LivePolicy`, by real local processes that report their status changes over time (the sandbox)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from modeldeploy.cluster.rest import MERGE_PATCH, ApiError, Credentials, RestClient

logger = logging.getLogger(__name__)

NODE_NAME = "modeldeploy-node"
REVISION_LABEL = "modeldeploy.io/revision"
# A pod's steps go to the worker its uid hashes to: in order for one pod, concurrent across pods (one
# thread doing every pod's requests in turn was the bottleneck of 200 objects in benchmarks/reconcile.py).
POD_WORKERS = 8
DEFAULT_JOB_MESSAGE = '{"v": 1, "cached": false, "chosen": "int8-dynamic", "after": {"sizeBytes": 1000}}'


@dataclass(frozen=True)
class Termination:
    """How a container of a run-to-completion pod ended."""

    exit_code: int
    message: str


class PodPolicy(Protocol):
    def job_result(self, pod: Mapping[str, Any]) -> Termination: ...

    def ready(self, pod: Mapping[str, Any]) -> bool: ...


JobScript = Callable[[Mapping[str, Any]], Termination]
StatusReport = Callable[[dict[str, Any]], None]


@runtime_checkable
class LivePolicy(Protocol):
    """Pods whose containers really run: `start` returns the pod's first status and calls `report` with
    every later one (ready, exited); `stop` ends the pod's processes before the agent confirms a deletion,
    as a kubelet kills the containers first."""

    def start(self, pod: Mapping[str, Any], ip: str, report: StatusReport) -> dict[str, Any]: ...

    def stop(self, uid: str) -> None: ...


@dataclass
class ScriptedPolicy:
    """Outcomes chosen by the caller, per namespace: Job pods succeed with `DEFAULT_JOB_MESSAGE` unless a
    script for their namespace says otherwise; pods of an `unavailable` revision never become Ready."""

    scripts: dict[str, JobScript] = field(default_factory=dict)
    unavailable: dict[str, set[str]] = field(default_factory=dict)

    def job_result(self, pod: Mapping[str, Any]) -> Termination:
        script = self.scripts.get(pod["metadata"]["namespace"])
        return script(pod) if script is not None else Termination(0, DEFAULT_JOB_MESSAGE)

    def ready(self, pod: Mapping[str, Any]) -> bool:
        revision = pod["metadata"].get("labels", {}).get(REVISION_LABEL)
        return revision not in self.unavailable.get(pod["metadata"]["namespace"], set())


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_job_pod(pod: Mapping[str, Any]) -> bool:
    return any(ref.get("kind") == "Job" for ref in pod["metadata"].get("ownerReferences", []))


def _conditions(ready: bool, reason: str | None = None) -> list[dict[str, Any]]:
    now = _now()
    conditions = []
    for kind, status in (("PodScheduled", True), ("Initialized", True), ("ContainersReady", ready)):
        conditions.append({"type": kind, "status": str(status), "lastTransitionTime": now})
    ready_condition: dict[str, Any] = {"type": "Ready", "status": str(ready), "lastTransitionTime": now}
    if reason:
        ready_condition["reason"] = reason
    conditions.append(ready_condition)
    return conditions


def running_status(pod: Mapping[str, Any], ip: str, ready: bool) -> dict[str, Any]:
    now = _now()
    return {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": _conditions(ready),
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": "",
                "containerID": f"modeldeploy-agent://{pod['metadata']['uid']}/{container['name']}",
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for container in pod["spec"]["containers"]
        ],
    }


def terminated_status(pod: Mapping[str, Any], ip: str, result: Termination) -> dict[str, Any]:
    now = _now()
    status = running_status(pod, ip, ready=False)
    status["phase"] = "Succeeded" if result.exit_code == 0 else "Failed"
    status["conditions"] = _conditions(False, "PodCompleted" if result.exit_code == 0 else "PodFailed")
    for container in status["containerStatuses"]:
        container["started"] = False
        container["state"] = {
            "terminated": {
                "exitCode": result.exit_code,
                "reason": "Completed" if result.exit_code == 0 else "Error",
                "message": result.message,
                "startedAt": now,
                "finishedAt": now,
            }
        }
    return status


class PodAddresses:
    """Pod IPs from a private range (the EndpointSlice controller refuses loopback addresses)."""

    def __init__(self, network: str = "10.244.0.0/16") -> None:
        self._hosts = ipaddress.ip_network(network).hosts()
        self._by_uid: dict[str, str] = {}
        self._lock = threading.Lock()  # pod workers ask concurrently

    def for_pod(self, uid: str) -> str:
        with self._lock:
            if uid not in self._by_uid:
                self._by_uid[uid] = str(next(self._hosts))
            return self._by_uid[uid]


class NodeAgent:
    """Runs in a thread: `start()` registers the Node and follows pods; `stop()` ends it."""

    def __init__(
        self,
        credentials: Credentials,
        policy: PodPolicy | LivePolicy | None = None,
        *,
        node_name: str = NODE_NAME,
        addresses: PodAddresses | None = None,
    ) -> None:
        self.client = RestClient(credentials)
        self.policy: PodPolicy | LivePolicy = policy or ScriptedPolicy()
        self.node_name = node_name
        self.addresses = addresses or PodAddresses()
        self._stopping = threading.Event()
        self._relist = threading.Event()  # a pod worker failed: list every pod again
        self._thread: threading.Thread | None = None
        self._workers = [ThreadPoolExecutor(1, f"pod-worker-{n}") for n in range(POD_WORKERS)]
        self._clients = [RestClient(credentials) for _ in range(POD_WORKERS)]
        self._started: set[str] = set()
        self._terminating: set[str] = set()

    # --- scripting (tests) ---------------------------------------------------------------------------
    def _scripted(self) -> ScriptedPolicy:
        if not isinstance(self.policy, ScriptedPolicy):
            raise TypeError("this agent's pods follow a policy that is not scripted")
        return self.policy

    def job_message(self, namespace: str, script: JobScript) -> None:
        """Job pods in `namespace` end as `script(pod)` says."""
        self._scripted().scripts[namespace] = script

    def unavailable(self, namespace: str, revisions: set[str]) -> None:
        """Pods of these revisions in `namespace` run but never become Ready."""
        self._scripted().unavailable[namespace] = set(revisions)

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.register_node()
        self._thread = threading.Thread(target=self._follow_pods, name="node-agent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.client.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for worker, client in zip(self._workers, self._clients, strict=True):
            worker.shutdown(wait=False, cancel_futures=True)
            client.close()

    def register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {"kubernetes.io/hostname": self.node_name}},
        }
        with contextlib.suppress(ApiError):
            self.client.request("POST", "/api/v1/nodes", node)
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000", "nvidia.com/gpu": "8"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "AgentReady", "lastHeartbeatTime": _now()}
            ],
        }
        self.client.request(
            "PATCH", f"/api/v1/nodes/{self.node_name}/status", {"status": status}, content_type=MERGE_PATCH
        )

    def _follow_pods(self) -> None:
        while not self._stopping.is_set():
            try:
                self._relist.clear()
                listing = self.client.request("GET", "/api/v1/pods")
                for pod in listing.get("items", []):
                    self._dispatch(pod)
                version = listing["metadata"]["resourceVersion"]
                while not self._stopping.is_set() and not self._relist.is_set():
                    for event in self.client.watch("/api/v1/pods", version, timeout_s=30):
                        if event["type"] == "ERROR":
                            raise ApiError(event["object"].get("code", 500), "WATCH", "/api/v1/pods", "")
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] != "DELETED":
                            self._dispatch(event["object"])
                        if self._relist.is_set():
                            break
            except Exception as error:  # a broken watch, a restarted API server: list again
                if self._stopping.is_set():
                    return
                logger.info("node agent: re-listing pods after %s", error)
                self._stopping.wait(0.5)

    def _dispatch(self, pod: Mapping[str, Any]) -> None:
        lane = zlib.crc32(pod["metadata"]["uid"].encode()) % POD_WORKERS
        with contextlib.suppress(RuntimeError):  # the agent is stopping: its workers are shut down
            self._workers[lane].submit(self._work, pod, lane)

    def _work(self, pod: Mapping[str, Any], lane: int) -> None:
        try:
            self.handle(pod, self._clients[lane])
        except Exception as error:  # the step is retried from a fresh listing
            if not self._stopping.is_set():
                logger.info("node agent: pod %s: %s; listing pods again", pod["metadata"]["name"], error)
                self._relist.set()

    def handle(self, pod: Mapping[str, Any], client: RestClient | None = None) -> None:
        """Move one pod one step, as a kubelet (and the scheduler) would."""
        client = client or self.client
        meta, spec = pod["metadata"], pod["spec"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        try:
            if meta.get("deletionTimestamp") and isinstance(self.policy, LivePolicy):
                if meta["uid"] not in self._terminating:
                    self._terminating.add(meta["uid"])
                    threading.Thread(target=self._terminate, args=(pod,), daemon=True).start()
            elif meta.get("deletionTimestamp"):
                body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
                client.request("DELETE", path, body)
            elif not spec.get("nodeName"):
                target = {"apiVersion": "v1", "kind": "Node", "name": self.node_name}
                binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]}}
                client.request("POST", f"{path}/binding", {**binding, "target": target})
            elif spec["nodeName"] == self.node_name and meta["uid"] not in self._started:
                self._started.add(meta["uid"])
                client.request(
                    "PATCH", f"{path}/status", {"status": self.status_for(pod)}, content_type=MERGE_PATCH
                )
        except ApiError as error:
            if error.status not in (404, 409):  # gone or changed meanwhile: the next event brings it
                raise

    def _terminate(self, pod: Mapping[str, Any]) -> None:
        """Stop the pod's processes, then confirm the deletion (in a thread: stopping takes seconds)."""
        meta = pod["metadata"]
        assert isinstance(self.policy, LivePolicy)
        self.policy.stop(meta["uid"])
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        with contextlib.suppress(ApiError):
            self.client.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)

    def _report(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        if self._stopping.is_set():
            return
        try:
            self.client.request("PATCH", path, {"status": status}, content_type=MERGE_PATCH)
        except (ApiError, OSError) as error:  # the pod is gone, or the agent is stopping
            logger.info("node agent: status of %s not reported: %s", meta["name"], error)

    def status_for(self, pod: Mapping[str, Any]) -> dict[str, Any]:
        ip = self.addresses.for_pod(pod["metadata"]["uid"])
        if isinstance(self.policy, LivePolicy):
            return self.policy.start(pod, ip, lambda status: self._report(pod, status))
        if is_job_pod(pod):
            return terminated_status(pod, ip, self.policy.job_result(pod))
        return running_status(pod, ip, self.policy.ready(pod))
