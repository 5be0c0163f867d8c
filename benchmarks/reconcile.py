"""How fast the operator brings N new ModelDeployments to serving, on the real control plane.

Starts the real kube-apiserver, etcd and kube-controller-manager (hack/controlplane, as the tests do) and
the node agent that plays the kubelet (every optimization Job's pod completes at once, every Triton pod is
Running and Ready at once), then runs `modeldeploy run` as its own process with an identity of its own, and
creates N ModelDeployments in 10 namespaces: in one burst, or paced at `--rate` objects per second (the
steady state). In the same run, before the operator starts, a plain client writes the same children for
N other objects with server-side apply (8 concurrent writers): the API server's raw rate for this work,
so the operator's rate is a ratio, not a number that depends on the machine.

    .venv/bin/python benchmarks/reconcile.py                  # 200 objects, burst
    .venv/bin/python benchmarks/reconcile.py --rate 5         # 200 objects, 5 per second
    .venv/bin/python benchmarks/reconcile.py --count 1000

Prints p50/p99 from create to the children (the stable Deployment) and to phase Ready, objects/s against
the raw rate, the operator's API requests per object by verb and resource (from the audit log), and the
operator process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import calendar
import concurrent.futures
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from toolbin import REPO_ROOT, kubectl_path

from modeldeploy.cluster.binaries import ensure_binaries
from modeldeploy.cluster.controlplane import ControlPlane, start_control_plane
from modeldeploy.cluster.node_agent import NodeAgent
from modeldeploy.cluster.processes import free_port, http_ok
from modeldeploy.cluster.rest import APPLY_PATCH, ApiError, RestClient
from modeldeploy.cluster.thirdparty import third_party_crds
from modeldeploy.rendering import Owner, RenderPlan, render_all
from modeldeploy.revision import compute_revision
from modeldeploy.spec import parse_spec

MDEPS_PATH = "/apis/modeldeploy.io/v1alpha1"
NAMESPACES = [f"team-{index}" for index in range(10)]
OPERATOR_USER = "modeldeploy-operator"
WRITE_VERBS = {"create", "patch", "update", "delete"}


def manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": f"model-{index:04d}"},
        "spec": {
            "model": {"name": "ocr", "uri": f"s3://models/ocr-{index}.onnx"},
            "storage": {"uri": "s3://artifacts/modeldeploy"},
            "serving": {"replicas": 2},
        },
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def object_path(obj: dict[str, Any]) -> str:
    group_version, kind = obj["apiVersion"], obj["kind"]
    plural = {"Deployment": "deployments", "Service": "services", "Job": "jobs"}.get(kind, kind.lower() + "s")
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}/{obj['metadata']['name']}"


def raw_rate(plane: ControlPlane, count: int) -> float:
    """Objects/s at which a plain client writes the children of `count` objects (SSA, 8 writers)."""
    client = RestClient(plane.credentials)
    spec = parse_spec(manifest(0)["spec"])
    revision = compute_revision(spec)

    def write(index: int) -> None:
        owner = Owner(f"raw-{index:04d}", NAMESPACES[index % len(NAMESPACES)])
        plan = RenderPlan(stable_revision=revision, optimize_revision=revision)
        for obj in render_all(owner, spec, plan):
            if obj["kind"] in {"Deployment", "Service", "Job"}:
                client.request(
                    "PATCH",
                    object_path(obj),
                    obj,
                    content_type=APPLY_PATCH,
                    params={"fieldManager": "raw-client", "force": "true"},
                )

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(count)))
    rate = count / (time.monotonic() - start)
    for namespace in NAMESPACES:  # leave the API server as the operator will find it
        for kind in ("apps/v1/deployments", "v1/services", "batch/v1/jobs"):
            group_version, plural = kind.rsplit("/", 1)
            prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
            if plural == "services":  # services have no collection delete
                for item in client.request("GET", f"{prefix}/namespaces/{namespace}/services")["items"]:
                    client.request(
                        "DELETE", f"{prefix}/namespaces/{namespace}/services/{item['metadata']['name']}"
                    )
            else:
                client.request("DELETE", f"{prefix}/namespaces/{namespace}/{plural}")
    client.close()
    return rate


def create_all(plane: ControlPlane, count: int, rate: float | None) -> dict[str, float]:
    """Create the ModelDeployments: paced at `rate`, or in a burst by 8 writers (as the raw client writes);
    returns when each was created."""
    created: dict[str, float] = {}
    clients = threading.local()
    start = time.monotonic()

    def create(index: int) -> None:
        if rate:
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
        client = getattr(clients, "client", None) or RestClient(plane.credentials)
        clients.client = client
        namespace = NAMESPACES[index % len(NAMESPACES)]
        body = manifest(index)
        created[f"{namespace}/{body['metadata']['name']}"] = time.monotonic()
        client.request("POST", f"{MDEPS_PATH}/namespaces/{namespace}/modeldeployments", body)

    # Paced: one writer keeps the rate (a request takes far less than 1/rate); a burst: 8 writers.
    with concurrent.futures.ThreadPoolExecutor(1 if rate else 8) as pool:
        list(pool.map(create, range(count)))
    return created


class Recorder:
    """Watches (in threads) when each object's children appear and finish, and when it is Ready: the
    operator's own reaction times are create → Job, Job complete → Deployment, available → Ready."""

    def __init__(self, plane: ControlPlane) -> None:
        self.client = RestClient(plane.credentials)
        self.job_created: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}
        self.deployed: dict[str, float] = {}
        self.available: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.stop = threading.Event()

    def start(self) -> None:
        for path, record in (
            ("/apis/batch/v1/jobs", self._job),
            ("/apis/apps/v1/deployments", self._deployment),
            (f"{MDEPS_PATH}/modeldeployments", self._mdep),
        ):
            threading.Thread(target=self._follow, args=(path, record), daemon=True).start()

    @staticmethod
    def _instance(obj: dict[str, Any]) -> str | None:
        instance = obj["metadata"].get("labels", {}).get("app.kubernetes.io/instance")
        return (
            f"{obj['metadata']['namespace']}/{instance}"
            if instance and instance.startswith("model-")
            else None
        )

    def _job(self, obj: dict[str, Any], now: float) -> None:
        key = self._instance(obj)
        if key:
            self.job_created.setdefault(key, now)
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
                self.job_complete.setdefault(key, now)

    def _deployment(self, obj: dict[str, Any], now: float) -> None:
        key = self._instance(obj)
        if key:
            self.deployed.setdefault(key, now)
            if ((obj.get("status") or {}).get("availableReplicas") or 0) >= 1:
                self.available.setdefault(key, now)

    def _mdep(self, obj: dict[str, Any], now: float) -> None:
        if (obj.get("status") or {}).get("phase") == "Ready":
            self.ready.setdefault(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}", now)

    def _follow(self, path: str, record: Any) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                if version is None:  # (re)list: what changed while no watch ran is in the items
                    listing = self.client.request("GET", path)
                    for item in listing.get("items", []):
                        record(item, time.monotonic())
                    version = listing["metadata"]["resourceVersion"]
                # Each watch ends after 30 s; the next one resumes where it stopped, so no event is lost.
                for event in self.client.watch(path, version, timeout_s=30):
                    if event.get("type") == "ERROR":  # 410 Gone: the version is too old, list again
                        version = None
                        break
                    record(event["object"], time.monotonic())
                    version = event["object"]["metadata"].get("resourceVersion", version)
            except (ApiError, OSError, ValueError, KeyError):
                version = None
                time.sleep(0.2)


def start_operator(plane: ControlPlane, workdir: pathlib.Path) -> tuple[subprocess.Popen[bytes], Any]:
    kubeconfig = plane.user_kubeconfig(OPERATOR_USER, "system:masters")
    health_port = free_port()
    log = (workdir / "operator.log").open("w")
    command = [str(pathlib.Path(sys.executable).with_name("modeldeploy")), "run", "--all-namespaces"]
    command += ["--standalone", "--health-port", str(health_port), "--metrics-port", "0"]
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )
    deadline = time.monotonic() + 60
    while not http_ok(f"http://127.0.0.1:{health_port}/healthz"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the operator did not become healthy; see {workdir / 'operator.log'}")
        time.sleep(0.1)
    return process, log


@dataclass(frozen=True)
class Audited:
    """After the operator started: its requests by `verb resource[/subresource]`, how many of them were
    refused with 409 Conflict, and every client's request count (the API server's whole load)."""

    operator: Counter[str]
    conflicts: int
    clients: Counter[str]


def audited_requests(plane: ControlPlane, since: float) -> Audited:
    """The audit log's requests after `since` (epoch s)."""
    operator: Counter[str] = Counter()
    clients: Counter[str] = Counter()
    conflicts = 0
    for event in plane.audit_events():
        stamp = event.get("requestReceivedTimestamp", "")
        if calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) < int(since):
            continue
        user = event.get("user", {}).get("username", "?")
        clients[user.removeprefix("system:serviceaccount:kube-system:")] += 1
        if user != OPERATOR_USER:
            continue
        ref = event.get("objectRef", {})
        resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        operator[f"{event.get('verb')} {resource}"] += 1
        conflicts += (event.get("responseStatus") or {}).get("code") == 409
    return Audited(operator, conflicts, clients)


def run(count: int, rate: float | None, timeout_s: float) -> int:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="modeldeploy-bench-"))
    plane = start_control_plane(ensure_binaries(print), workdir / "cluster")
    agent = NodeAgent(plane.credentials)
    agent.start()
    process = None
    try:
        # A cluster prepared as docs/install.md says: modeldeploy's CRD and the third-party ones.
        for crd in [REPO_ROOT / "crds" / "modeldeployment.yaml", *third_party_crds()]:
            subprocess.run(
                [
                    str(kubectl_path()),
                    f"--kubeconfig={plane.kubeconfig}",
                    "apply",
                    "--server-side",
                    "-f",
                    str(crd),
                ],
                check=True,
                capture_output=True,
            )
        for namespace in NAMESPACES:
            plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        time.sleep(2)  # the namespaces' default ServiceAccounts (pods are refused without one)
        raw = raw_rate(plane, count)
        recorder = Recorder(plane)
        recorder.start()
        process, _log = start_operator(plane, workdir)
        since = time.time()
        start = time.monotonic()
        created = create_all(plane, count, rate)
        deadline = time.monotonic() + timeout_s
        while len(recorder.ready) < count and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        rss = peak_rss_mib(process.pid) if process.poll() is None else float("nan")
        recorder.stop.set()
        audited = audited_requests(plane, since)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # never leave it (and the control plane) running
                process.kill()
                process.wait()
        agent.stop()
        plane.stop()

    report(Outcome(count, rate, created, recorder, elapsed, raw, audited, rss))
    if len(recorder.ready) < count:
        print(f"NOT ALL READY; operator log: {workdir / 'operator.log'}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


@dataclass(frozen=True)
class Outcome:
    count: int
    rate: float | None
    created: dict[str, float]
    recorder: Recorder
    elapsed: float
    raw: float
    audited: Audited
    rss: float


def between(start: dict[str, float], end: dict[str, float]) -> list[float]:
    """Seconds from each object's `start` to its `end`, for objects that reached both."""
    return [end[key] - start[key] for key in start if key in end]


def report(outcome: Outcome) -> None:
    count, rate, created, recorder = outcome.count, outcome.rate, outcome.created, outcome.recorder
    elapsed, raw, requests = outcome.elapsed, outcome.raw, outcome.audited.operator
    to_children = between(created, recorder.deployed)
    to_ready = between(created, recorder.ready)
    mode = f"paced at {rate}/s" if rate else "one burst"
    print(
        f"objects: {count} created ({mode}), {len(to_children)} with children, {len(to_ready)} Ready", end=""
    )
    print(f" in {elapsed:.1f}s")
    for label, values in (
        ("create → stable Deployment (through the Job)", to_children),
        ("create → phase Ready", to_ready),
        ("operator: create → Job applied", between(created, recorder.job_created)),
        ("operator: Job complete → Deployment applied", between(recorder.job_complete, recorder.deployed)),
        ("operator: Deployment available → phase Ready", between(recorder.available, recorder.ready)),
    ):
        if values:
            p50, p99 = statistics.median(values), percentile(values, 0.99)
            print(f"{label}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    throughput = len(to_ready) / elapsed
    print(f"throughput: {throughput:.1f} objects/s; raw API rate for the same children: {raw:.1f} objects/s")
    print(f"operator / raw: {throughput / raw:.2f}" + (" (paced: bounded by the rate)" if rate else ""))
    total = sum(requests.values())
    writes = sum(n for key, n in requests.items() if key.split()[0] in WRITE_VERBS)
    print(f"operator API requests per object: {total / count:.1f} ({writes / count:.1f} writes)")
    for key, n in requests.most_common(12):
        print(f"  {n / count:5.2f}  {key}")
    print(f"  ({outcome.audited.conflicts / count:.2f} of them refused with 409 Conflict)")
    print(f"operator peak RSS: {outcome.rss:.0f} MiB")
    load = sum(outcome.audited.clients.values())
    print(f"API server load, all clients: {load / count:.1f} requests per object; the largest:")
    for user, n in outcome.audited.clients.most_common(8):
        print(f"  {n / count:5.2f}  {user}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200, help="ModelDeployments to create (default 200)")
    parser.add_argument("--rate", type=float, help="create this many per second (default: all at once)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for all to be Ready")
    args = parser.parse_args()
    return run(args.count, args.rate, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
