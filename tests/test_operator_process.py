"""`modeldeploy run` as a user starts it: a separate process, a kubeconfig, health and metrics ports, on the
real control plane (its controllers and the node agent make the Job complete and the Deployment
available)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from chart_identity import ChartIdentity, denied, identity_events, install_identity, request_key
from cluster import Cluster
from operator_world import World

from modeldeploy.commands.run import needs_scanning

PEERING_CRDS = pathlib.Path(__file__).resolve().parent.parent / "helm/modeldeploy/crds/kopf-peering.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def http_get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as rsp,
    ):
        return rsp.status, await rsp.text()


async def wait_until(check: object, what: str, process: subprocess.Popen[str], log: pathlib.Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"modeldeploy run exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            if await check():  # type: ignore[operator]
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; operator log:\n{log.read_text()[-4000:]}")


@contextlib.asynccontextmanager
async def operator_process(
    args: list[str], log: pathlib.Path, config: pathlib.Path, *, pod_id: str = "operator-0"
) -> AsyncIterator[subprocess.Popen[str]]:
    """`modeldeploy run ARGS` in pod POD_ID with its output in `log`; stopped with SIGTERM (must exit 0)."""
    script = pathlib.Path(sys.executable).with_name("modeldeploy")
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(script), "run", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "KUBECONFIG": str(config), "POD_ID": pod_id},
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            # Off the event loop: a peered operator still writes as it exits.
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-4000:]


async def create_and_wait_ready(world: World, process: subprocess.Popen[str], log: pathlib.Path) -> None:
    world.create(
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "ocr"},
            "spec": {
                "model": {"name": "ocr", "uri": "s3://models/ocr.onnx"},
                "storage": {"uri": "s3://artifacts/modeldeploy"},
            },
        }
    )

    async def ready() -> bool:
        return world.phase() == "Ready"

    await wait_until(ready, "phase Ready", process, log)


@pytest.fixture
def world(control_plane: Cluster, cluster_namespace: str) -> World:
    return World(control_plane, cluster_namespace)


async def test_modeldeploy_run_serves_health_and_metrics_and_reconciles(
    world: World, tmp_path: pathlib.Path
) -> None:
    config = world.cluster.kubeconfig
    health, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    args = ["--namespace", world.namespace, "--standalone", "--log-format", "json"]
    args += ["--health-port", str(health), "--metrics-port", str(metrics)]
    async with operator_process(args, log, config) as process:

        async def healthy() -> bool:
            return (await http_get(f"http://127.0.0.1:{health}/healthz"))[0] == 200

        await wait_until(healthy, "liveness endpoint", process, log)
        await create_and_wait_ready(world, process, log)

        async def counted() -> bool:
            status, text = await http_get(f"http://127.0.0.1:{metrics}/metrics")
            return status == 200 and 'modeldeploy_reconciles_total{result="ok"}' in text

        await wait_until(counted, "reconciles in /metrics", process, log)
        assert '"message"' in log.read_text()  # --log-format json


async def test_namespaced_run_as_the_charts_service_account_is_refused_nothing_and_logs_no_warning(
    world: World, tmp_path: pathlib.Path
) -> None:
    """With `--namespace`, the operator neither lists/watches namespaces nor watches CRDs (kopf's scanning),
    so the Role-only RBAC of a namespaced install (the chart's, applied; the operator authenticates as its
    ServiceAccount) refuses nothing, and the log carries no warning about it. And the API cost of one
    ModelDeployment brought to Ready stays at its budget (benchmarks/reconcile.py measures it at scale)."""
    identity: ChartIdentity = install_identity(
        world.cluster,
        tmp_path,
        release=f"md-{world.namespace}",
        namespace=world.namespace,
        scope="namespaces",
        watched=[world.namespace],
    )
    log = tmp_path / "operator.log"
    args = ["--namespace", world.namespace, "--standalone", "--log-format", "json"]
    args += ["--health-port", "0", "--metrics-port", "0"]
    async with operator_process(args, log, identity.kubeconfig) as process:
        await create_and_wait_ready(world, process, log)
    events = identity_events(world.cluster, identity.username)
    assert events, "no request of the ServiceAccount in the audit log"
    assert denied(events) == []
    assert_request_budget(events)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert records, "no log records"
    noisy = [r["message"] for r in records if r.get("severity") not in {"debug", "info"}]
    assert noisy == []


def assert_request_budget(events: list[dict[str, Any]]) -> None:
    """Pending → Optimizing → Deploying → Ready: one status write and one Event per phase reached, one
    ModelDeployment patch (kopf's finalizer; no progress or diff-base annotations), one pod listing (the
    finished Job's termination message), each child applied once, and no write refused as a conflict."""
    requests = Counter(request_key(event) for event in events)
    conflicts = [e["requestURI"] for e in events if (e.get("responseStatus") or {}).get("code") == 409]
    assert conflicts == []
    budget = {
        "patch modeldeployments/status": 3,
        "create events": 3,
        "patch modeldeployments": 1,
        "list pods": 1,
        "patch jobs": 1,
        "patch deployments": 1,
        "patch services": 1,
    }
    assert {key: requests[key] for key in budget} == budget
    others = {key: n for key, n in requests.items() if key.split()[0] != "watch" and key not in budget}
    # The rest: discovery and the initial listings, and at most one apply of each optional child.
    assert all(n == 1 for key, n in others.items() if key.startswith("patch ")), others


PEERINGS = "kopf.dev/v1/kopfpeerings"


async def test_peered_replicas_choose_distinct_priorities_the_first_started_highest(
    world: World, tmp_path: pathlib.Path
) -> None:
    """kopf pauses every replica when two peers share a priority. Without --priority each `modeldeploy run`
    takes one from its start time: distinct, highest for the replica that started first, which keeps working
    while a later one stands by (what the chart's replicas rely on; no shell wrapper computes it). Namespaced
    peering (a KopfPeering, the chart's `namespaces` scope) keeps the shared cluster's other tests out."""
    # kopf's peering CRDs, as the chart's crds/ installs them (two in one file).
    world.cluster.kubectl("apply", "--server-side", "--field-manager=test-setup", "-f", str(PEERING_CRDS))
    world.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(PEERING_CRDS))
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "modeldeploy"}}
    world.cluster.request("POST", f"/apis/kopf.dev/v1/namespaces/{world.namespace}/kopfpeerings", peering)
    config = world.cluster.kubeconfig
    args = ["--namespace", world.namespace, "--peering", "modeldeploy", "--log-format", "json"]
    args += ["--health-port", "0", "--metrics-port", "0"]

    def peers() -> dict[str, Any]:
        return dict((world.stored(PEERINGS, "modeldeploy") or {}).get("status") or {})

    first_log, later_log = tmp_path / "first.log", tmp_path / "later.log"
    async with operator_process(args, first_log, config, pod_id="first") as first:

        async def first_announced() -> bool:
            return "first" in peers()

        await wait_until(first_announced, "the first replica in the peering object", first, first_log)
        async with operator_process(args, later_log, config, pod_id="later") as later:

            async def later_announced() -> bool:
                return "later" in peers()

            await wait_until(later_announced, "the later replica in the peering object", later, later_log)
            announced = peers()
            assert announced["first"]["priority"] > announced["later"]["priority"] > 0
            await create_and_wait_ready(world, first, first_log)  # the first one works
            assert "Pausing operations" not in first_log.read_text()
            assert "Pausing all operators" not in first_log.read_text()
            assert "Resuming operations" not in later_log.read_text()  # the later one stands by


@pytest.mark.parametrize(
    ("namespaces", "scanning"),
    [
        ([], True),  # --all-namespaces: keeps following CRD changes (the ClusterRole allows it)
        (["ml"], False),
        (["ml-prod", "ml-staging"], False),
        (["ml-*"], True),  # kopf expands patterns from the namespace listing
        (["ml", "!kube-system"], True),
    ],
)
def test_scanning_is_off_only_for_exact_namespaces(namespaces: list[str], scanning: bool) -> None:
    assert needs_scanning(namespaces) is scanning
