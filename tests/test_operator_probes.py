"""The real probes (`TritonPrometheusProbes`) where the answer needs no running Triton or Prometheus:
no canary pod yet, and an unreachable Prometheus — both must come back as verdicts, never as exceptions."""

from __future__ import annotations

import pathlib
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from kube_emulator import ApiServerEmulator, running_emulator, use_kubeconfig

from modeldeploy.analysis import Thresholds
from modeldeploy.kube import Kube
from modeldeploy.probes import AnalysisRequest, Track, TritonPrometheusProbes


@pytest.fixture
async def kube(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Kube, ApiServerEmulator]]:
    async with (
        running_emulator() as api,
        await Kube.connect(str(use_kubeconfig(api, tmp_path, monkeypatch))) as client,
    ):
        yield client, api


async def test_no_ready_canary_pod_is_not_ready(kube: tuple[Kube, ApiServerEmulator]) -> None:
    client, api = kube
    # A pod of the optimization Job carries the same instance and revision: it must not count.
    await api.write_as_controller(
        "v1/pods",
        "ml",
        "ocr-optimize-abc-x1",
        {
            "metadata": {"labels": {"app.kubernetes.io/instance": "ocr", "modeldeploy.io/revision": "abc"}},
            "status": {"podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    outcome = await TritonPrometheusProbes(client).model_ready(Track("ml", "ocr", "abc"), "ocr")
    assert not outcome.ok
    assert "no ready pod of revision abc" in outcome.reason


async def test_unreachable_prometheus_is_an_error_verdict(kube: tuple[Kube, ApiServerEmulator]) -> None:
    client, _ = kube
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
