"""The real probes (`TritonPrometheusProbes`) where the answer needs no running Triton or Prometheus:
no ready Triton pod of the canary (on the real control plane), and an unreachable Prometheus — both must
come back as verdicts, never as exceptions."""

from __future__ import annotations

import pathlib
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from cluster import Cluster
from operator_harness import eventually
from operator_world import World

from modeldeploy.analysis import Thresholds
from modeldeploy.kube import Kube
from modeldeploy.probes import AnalysisRequest, Track, TritonPrometheusProbes


@pytest.fixture
async def kube(real_kubeconfig: pathlib.Path) -> AsyncIterator[Kube]:
    async with await Kube.connect(str(real_kubeconfig)) as client:
        yield client


async def test_no_ready_canary_pod_is_not_ready(
    kube: Kube, control_plane: Cluster, cluster_namespace: str
) -> None:
    world = World(control_plane, cluster_namespace)
    # A pod of the optimization Job carries the same instance and revision: it must not count, even
    # Running and Ready with an IP (as the node agent makes it).
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "ocr-optimize-abc-x1",
            "labels": {"app.kubernetes.io/instance": "ocr", "modeldeploy.io/revision": "abc"},
        },
        "spec": {"containers": [{"name": "optimize", "image": "modeldeploy:1"}]},
    }
    control_plane.request("POST", f"/api/v1/namespaces/{cluster_namespace}/pods", pod)

    def running() -> bool:
        found = world.live("v1/pods").get("ocr-optimize-abc-x1", {})
        return bool(found.get("status", {}).get("podIP"))

    await eventually(running, "the pod Running with an IP")
    outcome = await TritonPrometheusProbes(kube).model_ready(Track(cluster_namespace, "ocr", "abc"), "ocr")
    assert not outcome.ok
    assert "no ready pod of revision abc" in outcome.reason


async def test_unreachable_prometheus_is_an_error_verdict(kube: Kube) -> None:
    client = kube
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    request = AnalysisRequest(
        prometheus_url=f"http://127.0.0.1:{port}",
        model="ocr",
        stable=Track("ml", "ocr", "aaa"),
        canary=Track("ml", "ocr", "bbb"),
        window=timedelta(minutes=1),
        thresholds=Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=10),
    )
    outcome = await TritonPrometheusProbes(client, timeout_s=2).analyze(request)
    assert outcome.verdict == "error"
    assert str(port) in outcome.reason
