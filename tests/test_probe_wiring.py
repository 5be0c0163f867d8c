"""The spec's analysis settings reach the probe: what the reconciler hands to `Probes.analyze`.

The real operator (kopf + handlers + reconciler) runs against the real control plane; the probes record
every `AnalysisRequest` and smoke check (the seam of `modeldeploy.probes`, the only stand-in: for Triton
and Prometheus). Every setting the user wrote — thresholds, minimum requests, the Prometheus URL, the
model — and the window and the two tracks' label matchers must arrive unchanged: a reconciler that drops
`maxP99LatencyMs`, zeroes `minRequests`, widens the window or swaps stable and canary fails here.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from cluster import Cluster
from operator_harness import (
    ManualClock,
    ScriptedProbes,
    canary_at_step,
    eventually,
    manifest,
    ready_with_stable,
    scripted_operator,
)
from operator_world import World

from modeldeploy.analysis import Thresholds
from modeldeploy.probes import AnalysisRequest, Track
from modeldeploy.rollout import SmokeOutcome

PROMETHEUS_URL = "https://metrics.example:9443/prometheus"
MODEL = "resnet50-int8"
INTERVAL = timedelta(seconds=45)


@dataclass
class RecordingProbes(ScriptedProbes):
    """ScriptedProbes (every analysis waits, and is recorded) that also record the smoke checks."""

    smoke_checks: list[tuple[Track, str]] = field(default_factory=list)

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        self.smoke_checks.append((canary, model))
        return await super().model_ready(canary, model)


@pytest.fixture
def world(control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path) -> World:
    return World(control_plane, cluster_namespace)


async def first_analysis(
    world: World, analysis: dict[str, Any]
) -> tuple[AnalysisRequest, str, str, RecordingProbes]:
    """Create, let it become Ready, start a canary, let one interval pass: the first analysis request."""
    probes = RecordingProbes()
    body = manifest(
        monitoring={"prometheusUrl": PROMETHEUS_URL},
        rollout={"steps": [25, 100], "interval": "45s", "progressDeadline": "30m", "analysis": analysis},
    )
    body["spec"]["model"]["name"] = MODEL
    config = str(world.cluster.kubeconfig)
    async with scripted_operator(config, world.namespace, ManualClock(), probes) as op:
        world.create(body)
        stable = await ready_with_stable(world)
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
        canary = await canary_at_step(world, 0)
        assert probes.analyses == []  # nothing is judged before the interval has passed
        op.tick(INTERVAL)
        await eventually(lambda: probes.analyses, "an analysis request", context=lambda: str(world.status()))
    return probes.analyses[0], stable, canary, probes


async def test_every_analysis_setting_of_the_spec_reaches_the_probe(world: World) -> None:
    analysis = {"maxErrorRate": 0.025, "maxP99LatencyMs": 275.5, "maxLatencyRatio": 1.75, "minRequests": 321}
    request, stable, canary, probes = await first_analysis(world, analysis)
    assert stable != canary
    assert request.prometheus_url == PROMETHEUS_URL
    assert request.model == MODEL
    assert request.thresholds == Thresholds(
        max_error_rate=0.025, max_p99_ms=275.5, max_latency_ratio=1.75, min_requests=321
    )
    # The window is the time the canary spent at its step: one interval, not more.
    assert request.window == INTERVAL
    name, namespace = "ocr", world.namespace
    assert request.stable.matchers() == {
        "namespace": namespace,
        "modeldeploy_name": name,
        "modeldeploy_revision": stable,
    }
    assert request.canary.matchers() == {
        "namespace": namespace,
        "modeldeploy_name": name,
        "modeldeploy_revision": canary,
    }
    # The smoke check asked the canary's Triton (not the stable one's) for the spec's model.
    assert probes.smoke_checks[0] == (Track(namespace, name, canary), MODEL)


async def test_the_defaults_reach_the_probe_and_no_absolute_p99_limit_is_invented(world: World) -> None:
    request, _, _, _ = await first_analysis(world, {})
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
