"""The real operator (kopf + modeldeploy.handlers) against the real control plane: kube-apiserver, etcd
and kube-controller-manager (Deployment, ReplicaSet, Job, garbage collector, HPA controllers), with the
node agent playing the kubelet. Each scenario runs in its own namespace of the session's cluster.

The test plays the user (writes through the API), a clock it can move (analysis intervals are ≥ 10s), and
the canary verdicts (`ScriptedProbes`: the only stand-in, for Triton and Prometheus; the real probes run in
tests/test_operator_real_canary.py). Injected API faults (500s on chosen requests) stay on the emulator:
tests/test_operator_faults.py.
"""

from __future__ import annotations

import contextlib
import copy
import pathlib
from datetime import timedelta

import pytest
from cluster import Cluster
from operator_harness import (
    ManualClock,
    Operator,
    ScriptedProbes,
    canary_at_step,
    eventually,
    manifest,
    ready_with_stable,
    scripted_operator,
)
from operator_world import DEPLOYMENTS, MDEPS, World

from modeldeploy.revision import compute_revision
from modeldeploy.spec import parse_spec


@pytest.fixture
def world(control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path) -> World:
    return World(control_plane, cluster_namespace)


def operator(
    world: World, clock: ManualClock, probes: ScriptedProbes, kill: bool = False
) -> contextlib.AbstractAsyncContextManager[Operator]:
    return scripted_operator(str(world.cluster.kubeconfig), world.namespace, clock, probes, kill)


# ---------------------------------------------------------------------------------------------- scenarios


async def test_create_optimizes_then_serves_and_reports_ready(world: World) -> None:
    view = world
    body = manifest(autoscaling={"engine": "hpa", "minReplicas": 2, "maxReplicas": 6, "target": 50})
    async with operator(world, ManualClock(), ScriptedProbes()) as op:
        world.create(body)
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
        # The HPA owns the replica count: the operator's applies leave it out (a real Deployment always
        # has one, so ownership is what shows it).
        assert "modeldeploy" not in world.owners_of(deployment, "spec", "replicas")
        assert "modeldeploy" in world.owners_of(deployment, "spec", "template")
        assert deployment["metadata"]["labels"]["modeldeploy.io/track"] == "stable"
        hpa = world.live("autoscaling/v2/horizontalpodautoscalers")["ocr"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == f"ocr-{stable}"
        assert "ocr" in world.live("v1/services")
        assert "ocr" in world.live("monitoring.coreos.com/v1/podmonitors")
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
        world.delete(DEPLOYMENTS, f"ocr-{stable}")
        await eventually(
            lambda: (
                view.deployments().get(f"ocr-{stable}", {}).get("metadata", {}).get("uid")
                not in (None, deployment["metadata"]["uid"])
            ),
            "the deleted Deployment re-applied",
        )
        # Only what the operator asked kopf to keep: its finalizer; no progress or diff-base annotations.
        assert mdep["metadata"]["finalizers"] == ["modeldeploy.io/finalizer"]
        assert mdep["metadata"].get("annotations", {}) == {}


async def test_new_revision_goes_through_the_canary_steps_and_is_promoted(world: World) -> None:
    view = world
    probes = ScriptedProbes(verdicts=["pass", "pass"])
    async with operator(world, ManualClock(), probes) as op:
        world.create(manifest())
        old = await ready_with_stable(view)
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
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
            "namespace": world.namespace,
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
        # The counter moves after the Event is posted: wait for it, then it must be exactly one.
        await eventually(
            lambda: op.runtime.metrics.registry.get_sample_value(
                "modeldeploy_rollouts_total", {"outcome": "promoted"}
            ),
            "the promoted rollout counted",
        )
        assert (
            op.runtime.metrics.registry.get_sample_value(
                "modeldeploy_rollouts_total", {"outcome": "promoted"}
            )
            == 1.0
        )


async def test_failing_canary_is_rolled_back_and_not_retried(world: World) -> None:
    view = world
    probes = ScriptedProbes(verdicts=["fail", "fail"])
    async with operator(world, ManualClock(), probes) as op:
        world.create(manifest())
        old = await ready_with_stable(view)
        world.change_spec({"model": {"uri": "s3://models/ocr-bad.onnx"}})
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


async def test_operator_killed_mid_canary_resumes_at_the_same_step_without_duplicates(world: World) -> None:
    view = world
    clock = ManualClock()
    body = manifest(rollout={"steps": [10, 40, 70], "interval": "10s", "progressDeadline": "5m"})
    async with operator(world, clock, ScriptedProbes(verdicts=["pass"]), kill=True) as op:
        world.create(body)
        old = await ready_with_stable(view)
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
        await canary_at_step(view, 0)
        op.tick()
        new = await canary_at_step(view, 1)
    uids = {name: d["metadata"]["uid"] for name, d in view.deployments().items()}
    assert set(uids) == {f"ocr-{old}", f"ocr-{new}"}
    clock.advance(timedelta(seconds=3))  # less than an interval since the step started
    probes = ScriptedProbes(verdicts=["pass", "pass"])
    async with operator(world, clock, probes) as op:
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
    assert len(world.live("v1/services")) == 1


async def test_invalid_spec_fails_permanently_with_a_condition_and_no_children(world: World) -> None:
    """What the API server admits but the operator refuses (a map key no CRD rule can check at an
    acceptable cost; the API server refuses everything else before the operator sees it)."""
    view = world
    async with operator(world, ManualClock(), ScriptedProbes()):
        world.create(manifest(serving={"replicas": 4, "nodeSelector": {"gpu pool!": "a100"}}))
        await eventually(lambda: view.phase() == "Failed", "phase Failed")
        ready = view.condition("Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert "spec.serving.nodeSelector" in ready["message"]
        await eventually(lambda: ("Warning", "InvalidSpec") in view.events(), "a Warning Event")
        assert view.jobs() == {}
        assert view.deployments() == {}
        # The loop refuses the spec itself: kopf keeps no copy of it in an annotation (a signed model URL
        # would be readable by everyone who may read the object's metadata).
        assert view.mdep()["metadata"].get("annotations", {}) == {}


async def test_optimization_failure_of_a_new_revision_keeps_stable_and_degrades(world: World) -> None:
    view = world
    body = manifest()
    async with operator(world, ManualClock(), ScriptedProbes()) as op:
        world.create(body)
        old = await ready_with_stable(view)
        changed = copy.deepcopy(body)
        changed["spec"]["optimization"] = {"quantization": "fp16"}
        new = compute_revision(parse_spec(changed["spec"]))
        world.fail_optimization(new, '{"v": 1, "error": "accuracy drop 0.4 exceeds maxAccuracyDrop 0.01"}')
        world.change_spec({"optimization": {"quantization": "fp16"}})
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


async def test_manual_promote_skips_the_remaining_steps_and_is_removed(world: World) -> None:
    view = world
    async with operator(world, ManualClock(), ScriptedProbes()):
        world.create(manifest())
        await ready_with_stable(view)
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        world.annotate("modeldeploy.io/promote", "true")
        await eventually(lambda: view.status().get("stableRevision") == new, "manual promotion")
        await eventually(
            lambda: "modeldeploy.io/promote" not in view.mdep()["metadata"].get("annotations", {}),
            "annotation removed",
        )


async def test_gateway_api_routing_moves_route_weights_and_abort_rolls_back(world: World) -> None:
    view = world
    routing = {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "public", "namespace": "gateways"}}}
    body = manifest(rollout={"steps": [25, 50], "interval": "10s", "trafficRouting": routing})

    def weights() -> dict[str, int]:
        route = world.live("gateway.networking.k8s.io/v1/httproutes")["ocr"]
        return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}

    async with operator(world, ManualClock(), ScriptedProbes()):
        world.create(body)
        old = await ready_with_stable(view)
        assert weights() == {"ocr-stable": 100, "ocr-canary": 0}
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        await eventually(lambda: weights() == {"ocr-stable": 75, "ocr-canary": 25}, "route at 25%")
        services = world.live("v1/services")
        assert services["ocr-canary"]["spec"]["selector"]["modeldeploy.io/revision"] == new
        assert view.deployments()[f"ocr-{old}"]["spec"]["replicas"] == 4  # stable stays full
        world.annotate("modeldeploy.io/abort", "true")
        await eventually(lambda: view.phase() == "Degraded", "rollback by abort")
        assert view.status()["lastRollback"]["cause"] == "Aborted"
        await eventually(lambda: weights() == {"ocr-stable": 100, "ocr-canary": 0}, "route back to stable")
        await eventually(lambda: set(view.deployments()) == {f"ocr-{old}"}, "canary deleted")
        assert "modeldeploy.io/abort" not in view.mdep()["metadata"].get("annotations", {})


async def test_deleting_a_modeldeployment_releases_it_and_its_children(world: World) -> None:
    view = world
    async with operator(world, ManualClock(), ScriptedProbes()):
        world.create(manifest())
        await ready_with_stable(view)
        world.delete(MDEPS, "ocr")
        assert world.stored(MDEPS, "ocr") is not None  # held by the operator's finalizer
        await eventually(lambda: world.stored(MDEPS, "ocr") is None, "finalizer released")
        await eventually(lambda: view.deployments() == {} and view.jobs() == {}, "children collected")
        assert world.live("v1/services") == {}


async def test_spec_change_mid_canary_replaces_the_canary_and_restarts_its_analysis(world: World) -> None:
    view = world
    probes = ScriptedProbes(verdicts=["fail"])
    async with operator(world, ManualClock(), probes) as op:
        world.create(manifest())
        old = await ready_with_stable(view)
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
        first = await canary_at_step(view, 0)
        op.tick()
        await eventually(
            lambda: view.status().get("analysis", {}).get("failedChecks") == 1, "one failed check"
        )
        world.change_spec({"model": {"uri": "s3://models/ocr-v3.onnx"}})
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
