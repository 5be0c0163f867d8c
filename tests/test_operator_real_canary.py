"""The real operator judging a canary with the real probes: Triton and Prometheus, not a script.

kopf + `modeldeploy.handlers` run against the real control plane (as in `tests/test_operator.py`), but the
runtime holds the real `TritonPrometheusProbes`: the smoke check dials the canary pod's Triton over HTTP and
the analysis queries a real Prometheus. Behind them, one real `tritonserver` process per revision (a pod)
serves the model `ocr` under live tritonclient traffic, and Prometheus scrapes each with the labels the
PodMonitor gives a pod (`namespace`, `pod`, `modeldeploy_name`, `modeldeploy_revision`). Revisions are pure
functions of the spec (`compute_revision`), so the scrape labels are known before the operator starts; the
tests check that the operator arrives at the same revisions.

The real controllers complete the optimization Job and make each Deployment's pods; the node agent runs
them. Pods of this module's namespace get the address 127.0.0.1 (elsewhere the agent hands out 10.244.x.y,
which routes nowhere here), so the probes' smoke check reaches the local Triton; the canary Triton listens
on a free port, handed to the probes as `http_port` (in a cluster it is Triton's 8000 on the pod's IP). The
EndpointSlice controller refuses loopback endpoints, which no part of these tests reads.

- A slow canary (the `slow` model, 200 ms against the stable's 50 ms): the smoke check passes, the canary
  gets its step, the real analysis fails on `maxLatencyRatio` and the operator rolls back, recording the
  measured numbers.
- A healthy canary (the same `fast` model): the analysis passes and the canary is promoted.
"""

from __future__ import annotations

import contextlib
import copy
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from cluster import Cluster
from operator_harness import eventually, operator_in_this_loop
from operator_world import MDEPS, World
from realparts import missing
from realservers import (
    Fleet,
    FleetPod,
    PartMissingError,
    running_fleet,
)

from modeldeploy.kube import Backoff, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import TritonPrometheusProbes
from modeldeploy.reconciler import Runtime
from modeldeploy.revision import compute_revision
from modeldeploy.spec import parse_spec

pytestmark = [pytest.mark.realpart("tritonserver"), pytest.mark.realpart("prometheus")]

# The scrape labels name the namespace before any test runs: one namespace for the module.
NS = f"real-canary-{uuid.uuid4().hex[:6]}"
NAME = "ocr"
MODEL = "ocr"
MIN_REQUESTS = 20

# The model URI is part of the revision; the test models stand for what each revision's artifacts serve.
STABLE_URI = "s3://models/ocr-v1.onnx"
SLOW_URI = "s3://models/ocr-v2-slow.onnx"
HEALTHY_URI = "s3://models/ocr-v2.onnx"


def manifest(prometheus_url: str, uri: str = STABLE_URI, max_latency_ratio: float = 1.2) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": MODEL, "uri": uri},
            "storage": {"uri": "s3://artifacts/modeldeploy"},
            "serving": {"replicas": 2},
            "monitoring": {"prometheusUrl": prometheus_url},
            "rollout": {
                "steps": [50],
                "interval": "10s",  # the CRD's minimum; the analysis window is then 30 s (the floor)
                "progressDeadline": "2m",
                "analysis": {
                    "failureThreshold": 1,
                    "minRequests": MIN_REQUESTS,
                    "maxLatencyRatio": max_latency_ratio,
                },
            },
        },
    }


def revision_of(uri: str) -> str:
    return compute_revision(parse_spec(manifest("http://prometheus.invalid:9090", uri)["spec"]))


@dataclass(frozen=True)
class Revision:
    key: str  # stable | slow | healthy
    uri: str
    test_model: str  # tests/triton_models/<test_model>
    rate_per_s: float


REVISIONS = (
    Revision("stable", STABLE_URI, "fast", 10),
    Revision("slow", SLOW_URI, "slow", 10),  # 200 ms per request: about 5 per second get through
    Revision("healthy", HEALTHY_URI, "fast", 10),
)


# Revision hashes are pure functions of the spec: the scrape labels can name them before the operator runs.
REVISION_OF = {r.key: revision_of(r.uri) for r in REVISIONS}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    assert len(set(REVISION_OF.values())) == len(REVISIONS)
    pods = [
        FleetPod(
            r.key,
            r.test_model,
            r.rate_per_s,
            {
                "namespace": NS,
                "pod": f"{NAME}-{REVISION_OF[r.key]}-pod",
                "modeldeploy_name": NAME,
                "modeldeploy_revision": REVISION_OF[r.key],
            },
        )
        for r in REVISIONS
    ]
    workdir = tmp_path_factory.mktemp("real-canary")
    try:
        with running_fleet(
            MODEL, pods, workdir, min_requests=MIN_REQUESTS, revisions=list(REVISION_OF.values())
        ) as fleet:
            yield fleet
    except PartMissingError as error:
        missing(error.part, error.why)


# ---------------------------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def namespace(control_plane: Cluster) -> Iterator[str]:
    """The module's namespace, whose pods the node agent gives the address 127.0.0.1."""
    control_plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    agent = control_plane.agent
    original = agent.status_for

    def status_for(pod: Mapping[str, Any]) -> dict[str, Any]:
        status = original(pod)
        if pod["metadata"]["namespace"] == NS:
            status["podIP"], status["podIPs"] = "127.0.0.1", [{"ip": "127.0.0.1"}]
        return status

    agent.status_for = status_for  # type: ignore[method-assign]
    try:
        yield NS
    finally:
        agent.status_for = original  # type: ignore[method-assign]
        control_plane.delete_namespace(NS)


@pytest.fixture
def world(control_plane: Cluster, namespace: str, real_kubeconfig: pathlib.Path) -> World:
    return World(control_plane, namespace)


@contextlib.asynccontextmanager
async def real_operator(world: World, triton_http_port: int) -> AsyncIterator[Runtime]:
    """The real operator in this event loop, with the real probes and the real clock. The block's
    ModelDeployment is deleted (and its children collected) before the operator stops, so the next test
    starts from an empty namespace."""
    config = str(world.cluster.kubeconfig)
    kube = await Kube.connect(config, backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1))
    probes = TritonPrometheusProbes(kube, timeout_s=10, http_port=triton_http_port)
    runtime = Runtime(kube=kube, probes=probes, metrics=OperatorMetrics(), retry_s=0.2)
    async with operator_in_this_loop(runtime, namespace=world.namespace):
        try:
            yield runtime
        finally:
            if world.stored(MDEPS, NAME) is not None:
                world.delete(MDEPS, NAME)
                await eventually(lambda: world.stored(MDEPS, NAME) is None, "the ModelDeployment released")
                await eventually(lambda: world.deployments() == {}, "its Deployments collected", timeout=30)


def events(world: World) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e.get("message", "")) for e in world.live("v1/events").values()]


async def start_stable(view: World, fleet: Fleet, body: dict[str, Any]) -> str:
    view.create(copy.deepcopy(body))
    await eventually(
        lambda: view.status().get("phase") == "Ready", "phase Ready", context=fleet.logs, timeout=30
    )
    stable = view.status()["stableRevision"]
    assert stable == REVISION_OF["stable"]
    return str(stable)


async def reach_canary_step(view: World, fleet: Fleet, canary: str) -> None:
    """The real smoke check passed on the canary's pod: the canary got its first step."""
    await eventually(
        lambda: view.status().get("canaryRevision") == canary and view.status().get("canaryStep") == 0,
        f"canary {canary} at step 0 (smoke check passed)",
        context=fleet.logs,
        timeout=30,
    )
    assert view.status()["canaryWeight"] == 50
    # The Event is recorded just after the status that explains it.
    await eventually(
        lambda: any(reason == "CanaryProgressing" and "is ready" in msg for _, reason, msg in events(view)),
        "a CanaryProgressing Event",
        context=fleet.logs,
        timeout=20,
    )


# ---------------------------------------------------------------------------------------------- scenarios


async def test_slow_canary_fails_the_real_analysis_and_is_rolled_back(world: World, fleet: Fleet) -> None:
    view = world
    slow = REVISION_OF["slow"]
    body = manifest(fleet.prometheus.url)
    async with real_operator(world, fleet.tritons["slow"].http_port):
        stable = await start_stable(view, fleet, body)
        view.change_spec({"model": {"uri": SLOW_URI}}, name=NAME)
        await reach_canary_step(view, fleet, slow)
        # One interval (10 s) after the step started, the analysis runs against the real Prometheus.
        await eventually(
            lambda: view.status().get("phase") == "Degraded", "rollback", context=fleet.logs, timeout=40
        )
        status = view.status()
        analysis = status["analysis"]
        assert analysis["verdict"] == "fail", analysis
        assert analysis["checks"] == ["maxLatencyRatio"], analysis
        assert analysis["failedChecks"] == 1
        canary, stable_numbers = analysis["canary"], analysis["stable"]
        # Measured, not scripted: the slow model sleeps 200 ms per request, the stable one 50 ms.
        assert canary["p99Ms"] >= 200, analysis
        assert 50 <= stable_numbers["p99Ms"] < 150, analysis
        assert canary["p99Ms"] > 1.2 * stable_numbers["p99Ms"]
        assert canary["requests"] >= MIN_REQUESTS and stable_numbers["requests"] >= MIN_REQUESTS, analysis
        assert canary["errorRate"] == 0 and stable_numbers["errorRate"] == 0
        assert 200 <= canary["meanMs"] <= canary["p99Ms"]
        assert f"canary p99 {canary['p99Ms']:.1f} ms" in analysis["reason"]
        assert f"stable p99 {stable_numbers['p99Ms']:.1f} ms" in analysis["reason"]
        rollback = status["lastRollback"]
        assert rollback["revision"] == slow
        assert rollback["cause"] == "AnalysisFailed"
        assert f"canary p99 {canary['p99Ms']:.1f} ms" in rollback["reason"]
        degraded = view.condition("Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
        assert view.condition("Ready")["status"] == "True"
        assert status["stableRevision"] == stable
        assert status.get("canaryRevision") is None
        await eventually(
            lambda: set(view.deployments()) == {f"{NAME}-{stable}"},
            "canary Deployment deleted",
            context=fleet.logs,
            timeout=20,
        )
        assert view.deployments()[f"{NAME}-{stable}"]["spec"]["replicas"] == 2  # stable back to full size
        await eventually(
            lambda: any(e[:2] == ("Warning", "RolledBack") for e in events(view)),
            "a RolledBack Event",
            context=fleet.logs,
            timeout=20,
        )


async def test_healthy_canary_passes_the_real_analysis_and_is_promoted(world: World, fleet: Fleet) -> None:
    view = world
    healthy = REVISION_OF["healthy"]
    # Same model on both tracks; a ratio of 1.5 keeps CPU contention on a 2-core machine from failing it.
    body = manifest(fleet.prometheus.url, max_latency_ratio=1.5)
    async with real_operator(world, fleet.tritons["healthy"].http_port):
        stable = await start_stable(view, fleet, body)
        view.change_spec({"model": {"uri": HEALTHY_URI}}, name=NAME)
        await reach_canary_step(view, fleet, healthy)
        await eventually(
            lambda: view.status().get("stableRevision") == healthy,
            "promotion",
            context=fleet.logs,
            timeout=40,
        )
        status = view.status()
        analysis = status["analysis"]
        assert analysis["verdict"] == "pass", analysis
        canary, stable_numbers = analysis["canary"], analysis["stable"]
        for numbers in (canary, stable_numbers):
            assert numbers["requests"] >= MIN_REQUESTS, analysis
            assert numbers["errorRate"] == 0, analysis
            assert 50 <= numbers["p99Ms"] < 150, analysis  # the fast model sleeps 50 ms
        assert status["phase"] == "Ready"
        assert "lastRollback" not in status
        await eventually(
            lambda: set(view.deployments()) == {f"{NAME}-{healthy}"},
            "old stable deleted",
            context=fleet.logs,
            timeout=20,
        )
        assert stable != healthy
        promoted = view.deployments()[f"{NAME}-{healthy}"]
        assert promoted["metadata"]["labels"]["modeldeploy.io/track"] == "stable"
        assert promoted["spec"]["replicas"] == 2


async def test_canary_over_the_absolute_p99_limit_fails_on_that_check_alone(
    world: World, fleet: Fleet
) -> None:
    """maxP99LatencyMs on its own: the slow canary (200 ms) is within a ratio of 100 of the stable track
    (50 ms) and errs nowhere, so only the absolute limit of 150 ms can fail it. A reconciler that drops the
    limit, or probes that judge the stable track's numbers as the canary's, promote it instead."""
    view = world
    slow = REVISION_OF["slow"]
    body = manifest(fleet.prometheus.url, max_latency_ratio=100)
    body["spec"]["rollout"]["analysis"]["maxP99LatencyMs"] = 150
    async with real_operator(world, fleet.tritons["slow"].http_port):
        await start_stable(view, fleet, body)
        view.change_spec({"model": {"uri": SLOW_URI}}, name=NAME)
        await reach_canary_step(view, fleet, slow)
        await eventually(
            lambda: view.status().get("phase") == "Degraded", "rollback", context=fleet.logs, timeout=40
        )
        analysis = view.status()["analysis"]
        assert analysis["verdict"] == "fail", analysis
        assert analysis["checks"] == ["maxP99LatencyMs"], analysis
        canary, stable_numbers = analysis["canary"], analysis["stable"]
        assert canary["p99Ms"] >= 200 and stable_numbers["p99Ms"] < 150, analysis
        assert f"canary p99 {canary['p99Ms']:.1f} ms > maxP99LatencyMs 150 ms" in analysis["reason"]
        assert view.status()["lastRollback"]["revision"] == slow
