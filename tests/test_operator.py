"""The real operator (kopf + modeldeploy.handlers) against the emulated API server over HTTP.

The test plays what the emulator lacks: the Job and Deployment controllers (`ClusterControllers`),
the user (`kubectl apply` → `write_as_controller`), a clock it can move (analysis intervals are ≥ 10s),
and the canary verdicts (`ScriptedProbes`: the only stand-in, for Triton and Prometheus).
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

from modeldeploy.kube import Backoff, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import AnalysisRequest, Track
from modeldeploy.reconciler import Runtime
from modeldeploy.revision import compute_revision
from modeldeploy.rollout import AnalysisOutcome, SmokeOutcome
from modeldeploy.spec import parse_spec

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
DEPLOYMENTS = "apps/v1/deployments"
JOBS = "batch/v1/jobs"
NS = "ml"
INTERVAL = timedelta(seconds=10)


# ---------------------------------------------------------------------------------------------- harness


@dataclass
class ManualClock:
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class ScriptedProbes:
    """Stand-in for Triton and Prometheus: the canary is READY unless told otherwise; verdicts are queued."""

    ready: bool = True
    verdicts: list[str] = field(default_factory=list)
    default: str = "wait"
    analyses: list[AnalysisRequest] = field(default_factory=list)

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        return SmokeOutcome(ok=self.ready, reason="READY" if self.ready else f"model {model} is UNAVAILABLE")

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        self.analyses.append(request)
        verdict = self.verdicts.pop(0) if self.verdicts else self.default
        return AnalysisOutcome(
            verdict=verdict,  # type: ignore[arg-type]
            reason=f"scripted {verdict}",
            failed_checks=("errorRate",) if verdict == "fail" else (),
            stable={"requests": 500.0, "errorRate": 0.0},
            canary={"requests": 100.0, "errorRate": 0.3 if verdict == "fail" else 0.0},
        )


@dataclass
class Operator:
    runtime: Runtime
    clock: ManualClock
    probes: ScriptedProbes

    def poke(self, name: str = "ocr") -> None:
        self.runtime.poke((NS, name))

    def tick(self, delta: timedelta = INTERVAL, name: str = "ocr") -> None:
        """Let time pass and wake the object (its own timer would, after `delta` of real time)."""
        self.clock.advance(delta)
        self.poke(name)

    def reconciles(self) -> float:
        value = self.runtime.metrics.registry.get_sample_value(
            "modeldeploy_reconciles_total", {"result": "ok"}
        )
        return value or 0.0


@contextlib.asynccontextmanager
async def operator(
    config: pathlib.Path, clock: ManualClock, probes: ScriptedProbes, kill: bool = False
) -> AsyncIterator[Operator]:
    """Run the real operator in this event loop; `kill` ends it by cancellation (no graceful stop)."""
    kube = await Kube.connect(str(config), backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1))
    runtime = Runtime(kube=kube, probes=probes, metrics=OperatorMetrics(), clock=clock, retry_s=0.2)
    async with operator_in_this_loop(runtime, kill=kill):
        yield Operator(runtime, clock, probes)


@pytest.fixture
async def cluster(emulator: ApiServerEmulator) -> AsyncIterator[ClusterControllers]:
    controllers = ClusterControllers(emulator)
    task = asyncio.create_task(controllers.run())
    yield controllers
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def manifest(uri: str = "s3://models/ocr-v1.onnx", **sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "ocr", "uri": uri},
        "storage": {"uri": "s3://artifacts/modeldeploy"},
        "serving": {"replicas": 4},
        "rollout": {"steps": [20, 50], "interval": "10s", "progressDeadline": "2m"},
    }
    spec.update(sections)
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "ocr"},
        "spec": spec,
    }


class View:
    """What `kubectl get` would show, read from the emulator."""

    def __init__(self, api: ApiServerEmulator) -> None:
        self.api = api

    def mdep(self, name: str = "ocr") -> dict[str, Any]:
        found = self.api.stored(MDEPS, NS, name)
        assert found is not None
        return found

    def status(self, name: str = "ocr") -> dict[str, Any]:
        return dict(self.mdep(name).get("status") or {})

    def phase(self, name: str = "ocr") -> str | None:
        return self.status(name).get("phase")

    def condition(self, kind: str, name: str = "ocr") -> dict[str, Any]:
        return next(c for c in self.status(name).get("conditions", []) if c["type"] == kind)

    def deployments(self) -> dict[str, dict[str, Any]]:
        return self.api.live(DEPLOYMENTS, NS)

    def jobs(self) -> dict[str, dict[str, Any]]:
        return self.api.live(JOBS, NS)

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.api.live("v1/events", NS).values()]

    def creations(self, plural: str) -> list[str]:
        """Names created through the API (POST, or an apply that created), in order."""
        names = []
        for (resource, namespace, name), obj in self.api.objects.items():
            if namespace == NS and resource.plural == plural:
                names += [name] * sum(
                    1 for version in obj.history if version is not None and _is_first(version)
                )
        return names


def _is_first(version: Any) -> bool:
    return version.get("metadata", {}).get("generation") == 1 and "status" not in version


async def create(api: ApiServerEmulator, body: dict[str, Any]) -> None:
    await api.write_as_controller(MDEPS, NS, body["metadata"]["name"], copy.deepcopy(body))


async def change_spec(api: ApiServerEmulator, spec_patch: dict[str, Any], name: str = "ocr") -> None:
    await api.write_as_controller(MDEPS, NS, name, {"spec": spec_patch})


async def annotate(api: ApiServerEmulator, key: str, value: str | None, name: str = "ocr") -> None:
    await api.write_as_controller(MDEPS, NS, name, {"metadata": {"annotations": {key: value}}})


async def ready_with_stable(view: View) -> str:
    await eventually(lambda: view.phase() == "Ready", "phase Ready")
    stable = view.status()["stableRevision"]
    assert isinstance(stable, str)
    return stable


async def canary_at_step(view: View, step: int) -> str:
    await eventually(lambda: view.status().get("canaryStep") == step, f"canary at step {step}")
    canary = view.status()["canaryRevision"]
    assert isinstance(canary, str)
    return canary


# ---------------------------------------------------------------------------------------------- scenarios


async def test_create_optimizes_then_serves_and_reports_ready(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    body = manifest(autoscaling={"engine": "hpa", "minReplicas": 2, "maxReplicas": 6, "target": 50})
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()) as op:
        await create(emulator, body)
        stable = await ready_with_stable(view)
        mdep = view.mdep()
        job = view.jobs()[f"ocr-optimize-{stable}"]
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
            mdep["metadata"]["uid"],
            True,
            True,
        )
        deployment = view.deployments()[f"ocr-{stable}"]
        assert "replicas" not in deployment["spec"]  # the HPA owns it
        assert deployment["metadata"]["labels"]["modeldeploy.io/track"] == "stable"
        hpa = emulator.live("autoscaling/v2/horizontalpodautoscalers", NS)["ocr"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"ocr-{stable}"
        assert "ocr" in emulator.live("v1/services", NS)
        assert "ocr" in emulator.live("monitoring.coreos.com/v1/podmonitors", NS)
        status = view.status()
        assert status["optimization"]["chosen"] == "int8-dynamic"
        assert status["optimization"]["after"] == {"sizeBytes": 1000}
        ready = view.condition("Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Available")
        assert {c["observedGeneration"] for c in status["conditions"]} == {mdep["metadata"]["generation"]}
        assert status["observedGeneration"] == mdep["metadata"]["generation"]
        assert ("Normal", "OptimizationSucceeded") in view.events()
        assert op.reconciles() >= 2
        # Someone deletes the serving Deployment: the operator puts it back (same name, new object).
        await emulator.delete_as_user(DEPLOYMENTS, NS, f"ocr-{stable}")
        await eventually(
            lambda: (
                view.deployments().get(f"ocr-{stable}", {}).get("metadata", {}).get("uid")
                not in (None, deployment["metadata"]["uid"])
            ),
            "the deleted Deployment re-applied",
        )
        # Only what the operator asked kopf to keep: its finalizer and progress annotations, all ours.
        assert mdep["metadata"]["finalizers"] == ["modeldeploy.io/finalizer"]
        assert all(not key.startswith("kopf.zalando.org") for key in mdep["metadata"].get("annotations", {}))


async def test_new_revision_goes_through_the_canary_steps_and_is_promoted(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    probes = ScriptedProbes(verdicts=["pass", "pass"])
    async with operator(kubeconfig, ManualClock(), probes) as op:
        await create(emulator, manifest())
        old = await ready_with_stable(view)
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        assert new != old
        assert view.status()["canaryWeight"] == 20
        canary = view.deployments()[f"ocr-{new}"]
        assert canary["metadata"]["labels"]["modeldeploy.io/track"] == "canary"
        # The status is recorded before the children follow it: the split comes right after.
        await eventually(
            lambda: (
                (
                    view.deployments()[f"ocr-{new}"]["spec"]["replicas"],
                    view.deployments()[f"ocr-{old}"]["spec"]["replicas"],
                )
                == (1, 3)
            ),
            "stable shrunk by the one available canary pod",
        )
        op.tick()
        await canary_at_step(view, 1)
        assert view.status()["canaryWeight"] == 50
        request = probes.analyses[0]
        assert (request.stable.revision, request.canary.revision) == (old, new)
        assert request.canary.matchers() == {
            "namespace": NS,
            "modeldeploy_name": "ocr",
            "modeldeploy_revision": new,
        }
        op.tick()
        await eventually(lambda: view.status().get("stableRevision") == new, "promotion")
        await eventually(lambda: set(view.deployments()) == {f"ocr-{new}"}, "old stable deleted")
        await eventually(lambda: set(view.jobs()) == {f"ocr-optimize-{new}"}, "old Job deleted")
        promoted = view.deployments()[f"ocr-{new}"]
        assert promoted["metadata"]["labels"]["modeldeploy.io/track"] == "stable"
        assert promoted["spec"]["replicas"] == 4
        assert view.phase() == "Ready"
        assert view.status().get("canaryRevision") is None
        await eventually(lambda: ("Normal", "Promoted") in view.events(), "a Promoted Event")
        # Each transition is announced once: the loop never decides twice from a stale status.
        reasons = [reason for _, reason in view.events()]
        assert reasons.count("Promoted") == 1
        assert reasons.count("CanaryStarting") == 1
        assert reasons.count("CanaryStepPassed") == 1
        samples = op.runtime.metrics.registry.get_sample_value(
            "modeldeploy_rollouts_total", {"outcome": "promoted"}
        )
        assert samples == 1.0


async def test_failing_canary_is_rolled_back_and_not_retried(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    probes = ScriptedProbes(verdicts=["fail", "fail"])
    async with operator(kubeconfig, ManualClock(), probes) as op:
        await create(emulator, manifest())
        old = await ready_with_stable(view)
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-bad.onnx"}})
        bad = await canary_at_step(view, 0)
        op.tick()
        await eventually(
            lambda: view.status().get("analysis", {}).get("failedChecks") == 1, "first failed check"
        )
        op.tick()
        await eventually(lambda: view.phase() == "Degraded", "rollback")
        status = view.status()
        assert status["lastRollback"]["revision"] == bad
        assert status["lastRollback"]["cause"] == "AnalysisFailed"
        degraded = view.condition("Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
        assert view.condition("Ready")["status"] == "True"
        await eventually(lambda: set(view.deployments()) == {f"ocr-{old}"}, "canary deleted")
        assert view.deployments()[f"ocr-{old}"]["spec"]["replicas"] == 4
        await eventually(lambda: ("Warning", "RolledBack") in view.events(), "a RolledBack Event")
        # Hours later, the same spec: nothing is tried again.
        before = op.reconciles()
        op.tick(timedelta(hours=3))
        await eventually(lambda: op.reconciles() > before, "another reconcile")
        assert set(view.deployments()) == {f"ocr-{old}"}
        assert view.creations("deployments").count(f"ocr-{bad}") == 1
        assert view.creations("jobs").count(f"ocr-optimize-{bad}") == 1


async def test_operator_killed_mid_canary_resumes_at_the_same_step_without_duplicates(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    clock = ManualClock()
    body = manifest(rollout={"steps": [10, 40, 70], "interval": "10s", "progressDeadline": "5m"})
    async with operator(kubeconfig, clock, ScriptedProbes(verdicts=["pass"]), kill=True) as op:
        await create(emulator, body)
        old = await ready_with_stable(view)
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        await canary_at_step(view, 0)
        op.tick()
        new = await canary_at_step(view, 1)
    uids = {name: d["metadata"]["uid"] for name, d in view.deployments().items()}
    assert set(uids) == {f"ocr-{old}", f"ocr-{new}"}
    clock.advance(timedelta(seconds=3))  # less than an interval since the step started
    probes = ScriptedProbes(verdicts=["pass", "pass"])
    async with operator(kubeconfig, clock, probes) as op:
        await eventually(lambda: op.reconciles() >= 1, "first reconcile after restart")
        assert view.status()["canaryStep"] == 1
        assert view.status()["canaryWeight"] == 40
        assert probes.analyses == []  # resumed mid-interval: no analysis yet
        assert {name: d["metadata"]["uid"] for name, d in view.deployments().items()} == uids
        op.tick()
        await canary_at_step(view, 2)
        op.tick()
        await eventually(lambda: view.status().get("stableRevision") == new, "promotion after restart")
    assert view.creations("deployments").count(f"ocr-{new}") == 1
    assert view.creations("jobs").count(f"ocr-optimize-{new}") == 1
    assert len(emulator.live("v1/services", NS)) == 1


async def test_invalid_spec_fails_permanently_with_a_condition_and_no_children(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest(rollout={"steps": [150], "interval": "10s"}))
        await eventually(lambda: view.phase() == "Failed", "phase Failed")
        ready = view.condition("Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert "spec.rollout.steps[0]" in ready["message"]
        await eventually(lambda: ("Warning", "InvalidSpec") in view.events(), "a Warning Event")
        assert view.jobs() == {}
        assert view.deployments() == {}
        progress = view.mdep()["metadata"].get("annotations", {})
        # kopf marks the spec as handled (failed for good): no retries until the spec changes.
        assert "modeldeploy.io/last-handled-configuration" in progress


async def test_optimization_failure_of_a_new_revision_keeps_stable_and_degrades(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    body = manifest()
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()) as op:
        await create(emulator, body)
        old = await ready_with_stable(view)
        changed = copy.deepcopy(body)
        changed["spec"]["optimization"] = {"quantization": "fp16"}
        new = compute_revision(parse_spec(changed["spec"]))
        cluster.failing_revisions[new] = '{"v": 1, "error": "accuracy drop 0.4 exceeds maxAccuracyDrop 0.01"}'
        await change_spec(emulator, {"optimization": {"quantization": "fp16"}})
        await eventually(lambda: view.phase() == "Degraded", "phase Degraded")
        optimized = view.condition("Optimized")
        assert (optimized["status"], optimized["reason"]) == ("False", "OptimizationFailed")
        assert "accuracy drop 0.4" in view.status()["optimization"]["error"]
        assert view.condition("Ready")["status"] == "True"
        assert set(view.deployments()) == {f"ocr-{old}"}
        before = op.reconciles()
        op.tick(timedelta(hours=1))
        await eventually(lambda: op.reconciles() > before, "another reconcile")
        assert view.creations("jobs").count(f"ocr-optimize-{new}") == 1  # no retry storm


async def test_manual_promote_skips_the_remaining_steps_and_is_removed(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest())
        await ready_with_stable(view)
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        await annotate(emulator, "modeldeploy.io/promote", "true")
        await eventually(lambda: view.status().get("stableRevision") == new, "manual promotion")
        await eventually(
            lambda: "modeldeploy.io/promote" not in view.mdep()["metadata"].get("annotations", {}),
            "annotation removed",
        )


async def test_converges_through_api_errors_and_dropped_watches(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    emulator.fail("PATCH", r"/deployments/ocr-[0-9a-f]+$", 500, times=2)
    emulator.fail("PATCH", r"/modeldeployments/ocr/status$", 409, times=2)
    emulator.fail("PATCH", r"/jobs/ocr-optimize-[0-9a-f]+$", 503, times=1)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest())
        old = await ready_with_stable(view)
        assert {status for _, _, status in emulator.served_faults} == {500, 409, 503}
        await emulator.drop_watches()
        emulator.fail("PATCH", r"/deployments/ocr-[0-9a-f]+$", 500, times=3)
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        assert new != old
        assert view.creations("deployments").count(f"ocr-{new}") == 1


async def test_gateway_api_routing_moves_route_weights_and_abort_rolls_back(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    routing = {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "public", "namespace": "gateways"}}}
    body = manifest(rollout={"steps": [25, 50], "interval": "10s", "trafficRouting": routing})

    def weights() -> dict[str, int]:
        route = emulator.live("gateway.networking.k8s.io/v1/httproutes", NS)["ocr"]
        return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}

    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, body)
        old = await ready_with_stable(view)
        assert weights() == {"ocr-stable": 100, "ocr-canary": 0}
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        await eventually(lambda: weights() == {"ocr-stable": 75, "ocr-canary": 25}, "route at 25%")
        services = emulator.live("v1/services", NS)
        assert services["ocr-canary"]["spec"]["selector"]["modeldeploy.io/revision"] == new
        assert view.deployments()[f"ocr-{old}"]["spec"]["replicas"] == 4  # stable stays full
        await annotate(emulator, "modeldeploy.io/abort", "true")
        await eventually(lambda: view.phase() == "Degraded", "rollback by abort")
        assert view.status()["lastRollback"]["cause"] == "Aborted"
        await eventually(lambda: weights() == {"ocr-stable": 100, "ocr-canary": 0}, "route back to stable")
        await eventually(lambda: set(view.deployments()) == {f"ocr-{old}"}, "canary deleted")
        assert "modeldeploy.io/abort" not in view.mdep()["metadata"].get("annotations", {})


async def test_deleting_a_modeldeployment_releases_it_and_its_children(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest())
        await ready_with_stable(view)
        await emulator.delete_as_user(MDEPS, NS, "ocr")
        assert emulator.stored(MDEPS, NS, "ocr") is not None  # held by the operator's finalizer
        await eventually(lambda: emulator.stored(MDEPS, NS, "ocr") is None, "finalizer released")
        await eventually(lambda: view.deployments() == {} and view.jobs() == {}, "children collected")
        assert emulator.live("v1/services", NS) == {}


async def test_spec_change_mid_canary_replaces_the_canary_and_restarts_its_analysis(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    view = View(emulator)
    probes = ScriptedProbes(verdicts=["fail"])
    async with operator(kubeconfig, ManualClock(), probes) as op:
        await create(emulator, manifest())
        old = await ready_with_stable(view)
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        first = await canary_at_step(view, 0)
        op.tick()
        await eventually(
            lambda: view.status().get("analysis", {}).get("failedChecks") == 1, "one failed check"
        )
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v3.onnx"}})
        await eventually(
            lambda: (
                view.status().get("canaryRevision") not in (None, first)
                and view.status().get("canaryStep") == 0
            ),
            "the new canary at step 0",
        )
        second = view.status()["canaryRevision"]
        assert "failedChecks" not in view.status().get("analysis", {})  # counters start over
        assert set(view.deployments()) == {f"ocr-{old}", f"ocr-{second}"}
        assert f"ocr-optimize-{first}" not in view.jobs()
        await eventually(lambda: ("Normal", "CanarySuperseded") in view.events(), "a CanarySuperseded Event")
