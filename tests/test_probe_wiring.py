"""The spec's analysis settings reach the probe: what the reconciler hands to `Probes.analyze`.

The real operator (kopf + handlers + reconciler) runs against the emulated API server; the probes record
every `AnalysisRequest` (the seam of `modeldeploy.probes`, the only stand-in: for Triton and Prometheus).
Every setting the user wrote — thresholds, minimum requests, the Prometheus URL, the model — and the
window and the two tracks' label matchers must arrive unchanged: a reconciler that drops
`maxP99LatencyMs`, zeroes `minRequests`, widens the window or swaps stable and canary fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kube_emulator import ApiServerEmulator, ClusterControllers
from operator_harness import eventually, operator_in_this_loop

from modeldeploy.analysis import Thresholds
from modeldeploy.kube import Backoff, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import AnalysisRequest, Track
from modeldeploy.reconciler import Runtime
from modeldeploy.rollout import AnalysisOutcome, SmokeOutcome

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
NS = "vision"
NAME = "resnet"
PROMETHEUS_URL = "https://metrics.example:9443/prometheus"
INTERVAL = timedelta(seconds=45)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 3, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RecordingProbes:
    """Stand-in for Triton and Prometheus: the canary is READY; every analysis waits, and is recorded."""

    smoke_checks: list[tuple[Track, str]] = field(default_factory=list)
    analyses: list[AnalysisRequest] = field(default_factory=list)

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        self.smoke_checks.append((canary, model))
        return SmokeOutcome(ok=True, reason="READY")

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        self.analyses.append(request)
        return AnalysisOutcome(
            verdict="wait", reason="recorded", failed_checks=(), stable={"requests": 1.0}, canary={}
        )


def manifest(analysis: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": "resnet50-int8", "uri": "s3://models/resnet-v1.onnx"},
            "storage": {"uri": "s3://artifacts/modeldeploy"},
            "serving": {"replicas": 4},
            "monitoring": {"prometheusUrl": PROMETHEUS_URL},
            "rollout": {
                "steps": [25, 100],
                "interval": "45s",
                "progressDeadline": "30m",
                "analysis": analysis,
            },
        },
    }


@pytest.fixture
async def cluster(emulator: ApiServerEmulator) -> AsyncIterator[ClusterControllers]:
    controllers = ClusterControllers(emulator)
    task = asyncio.create_task(controllers.run())
    yield controllers
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def first_analysis(
    api: ApiServerEmulator, config: pathlib.Path, analysis: dict[str, Any]
) -> tuple[AnalysisRequest, str, str, RecordingProbes]:
    """Create, let it become Ready, start a canary, let one interval pass: the first analysis request."""
    clock, probes = Clock(), RecordingProbes()
    kube = await Kube.connect(str(config), backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1))
    runtime = Runtime(kube=kube, probes=probes, metrics=OperatorMetrics(), clock=clock, retry_s=0.2)

    def status() -> dict[str, Any]:
        return dict((api.stored(MDEPS, NS, NAME) or {}).get("status") or {})

    async with operator_in_this_loop(runtime):
        await api.write_as_controller(MDEPS, NS, NAME, copy.deepcopy(manifest(analysis)))
        await eventually(
            lambda: status().get("phase") == "Ready", "phase Ready", context=lambda: str(status())
        )
        stable = status()["stableRevision"]
        await api.write_as_controller(
            MDEPS, NS, NAME, {"spec": {"model": {"uri": "s3://models/resnet-v2.onnx"}}}
        )
        await eventually(
            lambda: status().get("canaryStep") == 0, "canary at step 0", context=lambda: str(status())
        )
        canary = status()["canaryRevision"]
        assert probes.analyses == []  # nothing is judged before the interval has passed
        clock.now += INTERVAL
        runtime.poke((NS, NAME))
        await eventually(lambda: probes.analyses, "an analysis request", context=lambda: str(status()))
    return probes.analyses[0], stable, canary, probes


async def test_every_analysis_setting_of_the_spec_reaches_the_probe(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    analysis = {"maxErrorRate": 0.025, "maxP99LatencyMs": 275.5, "maxLatencyRatio": 1.75, "minRequests": 321}
    request, stable, canary, probes = await first_analysis(emulator, kubeconfig, analysis)
    assert stable != canary
    assert request.prometheus_url == PROMETHEUS_URL
    assert request.model == "resnet50-int8"
    assert request.thresholds == Thresholds(
        max_error_rate=0.025, max_p99_ms=275.5, max_latency_ratio=1.75, min_requests=321
    )
    # The window is the time the canary spent at its step: one interval, not more.
    assert request.window == INTERVAL
    assert request.stable.matchers() == {
        "namespace": NS,
        "modeldeploy_name": NAME,
        "modeldeploy_revision": stable,
    }
    assert request.canary.matchers() == {
        "namespace": NS,
        "modeldeploy_name": NAME,
        "modeldeploy_revision": canary,
    }
    # The smoke check asked the canary's Triton (not the stable one's) for the spec's model.
    assert probes.smoke_checks[0] == (Track(NS, NAME, canary), "resnet50-int8")


async def test_the_defaults_reach_the_probe_and_no_absolute_p99_limit_is_invented(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    request, _, _, _ = await first_analysis(emulator, kubeconfig, {})
    assert request.thresholds == Thresholds(
        max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=50
    )


def test_track_matchers_are_the_pod_monitor_labels() -> None:
    """The three labels the PodMonitor's relabelings put on every Triton series (tests/test_render.py
    checks the PodMonitor side), so a track's matchers select exactly one revision's pods."""
    assert Track("ml", "ocr", "abc").matchers() == {
        "namespace": "ml",
        "modeldeploy_name": "ocr",
        "modeldeploy_revision": "abc",
    }
