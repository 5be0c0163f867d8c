"""Issue 10 on the real control plane (kube-apiserver, etcd, kube-controller-manager with the Deployment,
ReplicaSet, Job, HPA and garbage-collector controllers; the node agent stands in for the kubelet). Each
test shows one defect of the issue, or one of its "done when" scenarios, where the emulator could not:
real field ownership (managedFields, defaulted replicas, the HPA writing through /scale), real optimistic
concurrency, real discovery of CRDs, real watch parameters (audit log). Triton and Prometheus verdicts
come from the scripted stand-in (no GPU pods here); everything else is real."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cluster import Cluster, install_crds
from operator_harness import ManualClock, ScriptedProbes, manifest, operator_in_this_loop
from operator_world import World

from modeldeploy.cluster.node_agent import DEFAULT_JOB_MESSAGE, Termination
from modeldeploy.cluster.thirdparty import third_party_crds
from modeldeploy.kube import FIELD_MANAGER, HANDOFF_FIELD_MANAGER, Backoff, Kube, KubeError, ObjectRef
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.observe import replicas_managers
from modeldeploy.reconciler import Runtime
from modeldeploy.revision import compute_revision
from modeldeploy.rollout import ANNOTATION_PROMOTE, ANNOTATION_RETRY
from modeldeploy.spec import parse_spec

HPAS = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
PODMONITOR_CRD = "podmonitors.monitoring.coreos.com"
OWN_SELECTOR = "app.kubernetes.io/managed-by=modeldeploy"


@contextlib.asynccontextmanager
async def running_operator(
    config: pathlib.Path, namespace: str, probes: ScriptedProbes | None = None, kill: bool = False
) -> AsyncIterator[Runtime]:
    kube = await Kube.connect(str(config), backoff=Backoff(attempts=8, first_delay_s=0.05, max_delay_s=0.5))
    runtime = Runtime(
        kube=kube,
        probes=probes or ScriptedProbes(),
        metrics=OperatorMetrics(),
        clock=ManualClock(),
        retry_s=0.2,
    )
    async with operator_in_this_loop(runtime, kill=kill, namespace=namespace):
        yield runtime


def tick(runtime: Runtime, namespace: str, seconds: float = 10) -> None:
    """Let an analysis interval pass on the operator's clock and wake the object."""
    assert isinstance(runtime.clock, ManualClock)
    runtime.clock.advance(timedelta(seconds=seconds))
    runtime.poke((namespace, "ocr"))


async def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    """`eventually` for checks that read the real API server (sync HTTP): off the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


class ReadySampler:
    """Samples, every 50 ms in a thread, the ready replicas of the Deployments labelled track=stable."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.samples: list[tuple[float, int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            stable = {
                name: int((d.get("status") or {}).get("readyReplicas") or 0)
                for name, d in self.world.deployments().items()
                if d["metadata"]["labels"].get("modeldeploy.io/track") == "stable"
            }
            self.samples.append((time.monotonic(), sum(stable.values()), stable))
            time.sleep(0.05)

    @contextlib.contextmanager
    def running(self) -> Iterator[ReadySampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)

    def lowest(self) -> tuple[int, dict[str, int]]:
        _, total, detail = min(self.samples, key=lambda sample: sample[1])
        return total, detail


def replicas(world: World, revision: str) -> int | None:
    found = world.stored("apps/v1/deployments", f"ocr-{revision}")
    return None if found is None else found["spec"].get("replicas")


def stable_ready(world: World, revision: str, count: int) -> bool:
    found = world.stored("apps/v1/deployments", f"ocr-{revision}")
    return found is not None and int((found.get("status") or {}).get("readyReplicas") or 0) >= count


# ---------------------------------------------------------------------------------------------- scenarios


async def test_hpa_fleet_of_four_goes_through_canary_and_promotion_never_below_four(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Done when 1 (defects 1 and 4): the HPA (minReplicas 4) runs the stable at 4; the steps end at 100 %,
    so the canary already has the 4 replicas at promotion and a merge-patch hand-off took no ownership."""
    world = World(control_plane, cluster_namespace)
    autoscaling = {"engine": "hpa", "minReplicas": 4, "maxReplicas": 8, "target": 50}
    body = manifest(autoscaling=autoscaling, rollout={"steps": [50, 100], "interval": "10s"})
    probes = ScriptedProbes(verdicts=["pass", "pass"])
    async with running_operator(real_kubeconfig, cluster_namespace, probes) as runtime:
        world.create(body)
        await until(lambda: world.phase() == "Ready", "Ready")
        old = world.status()["stableRevision"]
        await until(lambda: stable_ready(world, old, 4), "the HPA scaled stable to 4", timeout=45)
        with ReadySampler(world).running() as sampler:
            world.change_spec({"model": {"name": "ocr", "uri": "s3://models/ocr-v2.onnx"}})
            await until(lambda: world.status().get("canaryStep") == 0, "canary at step 1")
            new = world.status()["canaryRevision"]
            tick(runtime, cluster_namespace)
            await until(lambda: world.status().get("canaryStep") == 1, "canary at 100 %")
            await until(lambda: stable_ready(world, new, 4), "canary with the fleet's 4 pods")
            tick(runtime, cluster_namespace)
            await until(lambda: world.status().get("stableRevision") == new, "promotion")
            await until(lambda: set(world.deployments()) == {f"ocr-{new}"}, "old stable retired")
            await asyncio.sleep(3)  # the HPA and the Deployment controller have their say
        lowest, detail = sampler.lowest()
        assert lowest >= 4, f"ready stable replicas fell to {lowest}: {detail}"
        promoted = world.stored("apps/v1/deployments", f"ocr-{new}")
        assert promoted is not None
        assert promoted["spec"]["replicas"] == 4
        assert int(promoted["status"].get("readyReplicas") or 0) == 4
        assert FIELD_MANAGER not in replicas_managers(promoted)  # handed over, not left to default
        hpa = world.stored(HPAS, "ocr")
        assert hpa is not None and hpa["spec"]["scaleTargetRef"]["name"] == f"ocr-{new}"


async def test_switching_the_engine_on_in_place_keeps_the_replicas(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Defect 1, in place: engine none → hpa on the running revision. Without the hand-off the apply
    without `replicas` removes the field and the API server defaults it to 1."""
    world = World(control_plane, cluster_namespace)
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(manifest())
        await until(lambda: world.phase() == "Ready", "Ready")
        stable = world.status()["stableRevision"]
        await until(lambda: stable_ready(world, stable, 4), "4 ready")
        deployment = world.stored("apps/v1/deployments", f"ocr-{stable}")
        assert deployment is not None and replicas_managers(deployment) == {FIELD_MANAGER}
        world.change_spec(
            {"autoscaling": {"engine": "hpa", "minReplicas": 2, "maxReplicas": 8, "target": 50}}
        )
        await until(lambda: world.stored(HPAS, "ocr") is not None, "the HPA")

        def handed_over() -> bool:
            found = world.stored("apps/v1/deployments", f"ocr-{stable}")
            return found is not None and FIELD_MANAGER not in replicas_managers(found)

        await until(handed_over, "replicas no longer the operator's field")
        await asyncio.sleep(2)
        found = world.stored("apps/v1/deployments", f"ocr-{stable}")
        assert found is not None
        assert found["spec"]["replicas"] == 4
        assert HANDOFF_FIELD_MANAGER in replicas_managers(found)
        assert world.status()["stableRevision"] == stable


async def test_hpa_then_keda_then_none_leaves_one_then_zero_autoscalers(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Done when 2 (defect 2): the operator prunes the autoscaler the spec no longer has."""
    world = World(control_plane, cluster_namespace)

    def autoscalers() -> tuple[set[str], set[str]]:
        return set(world.live(HPAS)), set(world.live(SCALED_OBJECTS))

    hpa = {"engine": "hpa", "minReplicas": 2, "maxReplicas": 8, "target": 50}
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(manifest(autoscaling=hpa))
        await until(lambda: world.phase() == "Ready", "Ready")
        assert autoscalers() == ({"ocr"}, set())
        world.change_spec({"autoscaling": {**hpa, "engine": "keda"}})
        await until(lambda: autoscalers() == (set(), {"ocr"}), "the ScaledObject alone")
        world.change_spec({"autoscaling": {"engine": "none"}, "monitoring": {"podMonitor": False}})
        await until(lambda: autoscalers() == (set(), set()), "no autoscaler")
        await until(lambda: not world.live("monitoring.coreos.com/v1/podmonitors"), "PodMonitor pruned")
        stable = world.status()["stableRevision"]
        await until(lambda: replicas(world, stable) == 4, "the operator sizes the stable again")
        # Back to the first spec, within the time an unchanged child is not applied again: what was
        # pruned meanwhile is applied anew (the first apply from these inputs is no excuse to skip it).
        world.change_spec({"autoscaling": hpa, "monitoring": None})
        await until(lambda: autoscalers() == ({"ocr"}, set()), "the HPA again")
        await until(lambda: world.live("monitoring.coreos.com/v1/podmonitors"), "the PodMonitor again")


async def test_a_rolled_back_revision_is_retried_by_the_annotation(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Done when 3 (defect 6)."""
    world = World(control_plane, cluster_namespace)
    rollout = {"steps": [50], "interval": "10s", "analysis": {"failureThreshold": 1}}
    probes = ScriptedProbes(verdicts=["fail"])
    async with running_operator(real_kubeconfig, cluster_namespace, probes) as runtime:
        world.create(manifest(rollout=rollout))
        await until(lambda: world.phase() == "Ready", "Ready")
        world.change_spec({"model": {"name": "ocr", "uri": "s3://models/ocr-v2.onnx"}})
        await until(lambda: world.status().get("canaryStep") == 0, "canary")
        new = world.status()["canaryRevision"]
        tick(runtime, cluster_namespace)
        await until(lambda: world.phase() == "Degraded", "rolled back")
        assert world.status()["lastRollback"]["revision"] == new
        await until(lambda: f"ocr-{new}" not in world.deployments(), "canary removed")
        probes.verdicts = ["pass"]
        world.annotate(ANNOTATION_RETRY, "true")
        await until(lambda: world.status().get("canaryRevision") == new, "the canary again")
        await until(lambda: world.status().get("canaryStep") == 0, "at step 1 again")
        annotations = world.mdep()["metadata"].get("annotations") or {}
        assert ANNOTATION_RETRY not in annotations
        assert "lastRollback" not in world.status()
        assert ("Normal", "Retrying") in world.events()
        tick(runtime, cluster_namespace)
        await until(lambda: world.status().get("stableRevision") == new, "promoted on the retry")


@pytest.fixture
def without_pod_monitor_crd(control_plane: Cluster) -> Iterator[None]:
    """A cluster without the Prometheus Operator: the PodMonitor CRD is removed, and put back after."""
    control_plane.kubectl("delete", "crd", PODMONITOR_CRD, "--wait=true")
    try:
        yield
    finally:
        files = [path for path in third_party_crds() if "podmonitors" in path.name]
        install_crds(control_plane, files)


async def test_missing_pod_monitor_crd_reaches_ready_with_a_condition(
    control_plane: Cluster,
    cluster_namespace: str,
    real_kubeconfig: pathlib.Path,
    without_pod_monitor_crd: None,
) -> None:
    """Done when 4 (defect 7): the first apply of the PodMonitor failed before any status was written."""
    world = World(control_plane, cluster_namespace)
    async with running_operator(real_kubeconfig, cluster_namespace) as runtime:
        world.create(manifest())
        await until(lambda: world.phase() == "Ready", "Ready")
        condition = world.condition("ChildrenApplied")
        assert (condition["status"], condition["reason"]) == ("False", "APINotInstalled")
        assert "Prometheus Operator" in condition["message"]
        assert world.condition("Ready")["status"] == "True"
        errors = runtime.metrics.registry.get_sample_value(
            "modeldeploy_reconciles_total", {"result": "error"}
        )
        assert not errors


async def test_status_is_written_whole_and_only_from_the_version_it_was_decided_from(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Defect 5: a failed optimization retried successfully keeps no `error` (a merge patch kept it), and
    a status write from an outdated resourceVersion is refused by the API server."""
    world = World(control_plane, cluster_namespace)
    body = manifest()
    revision = compute_revision(parse_spec(body["spec"]))
    world.fail_optimization(revision, '{"v": 1, "error": "accuracy drop 0.2 > 0.01"}')
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(body)
        await until(lambda: world.phase() == "Failed", "optimization failed")
        assert world.status()["optimization"]["error"] == "accuracy drop 0.2 > 0.01"
        control_plane.agent.job_message(cluster_namespace, lambda pod: Termination(0, DEFAULT_JOB_MESSAGE))
        world.annotate(ANNOTATION_RETRY, "true")
        await until(lambda: world.phase() == "Ready", "Ready after the retry", timeout=45)
        assert world.status()["optimization"]["state"] == "Succeeded"
        assert "error" not in world.status()["optimization"]
        assert ANNOTATION_RETRY not in (world.mdep()["metadata"].get("annotations") or {})
        assert ("Normal", "Retrying") in world.events()
    stale = world.mdep()["metadata"]["resourceVersion"]
    world.annotate("example.com/touched", "yes")  # someone else writes: the version moves on
    async with await Kube.connect(str(real_kubeconfig)) as kube:
        ref = ObjectRef("modeldeploy.io/v1alpha1", "ModelDeployment", cluster_namespace, "ocr")
        with pytest.raises(KubeError) as refused:
            await kube.merge_patch(
                ref, {"status": {"phase": "Pending"}}, subresource="status", resource_version=stale
            )
        assert refused.value.status == 409
    assert world.phase() == "Ready"


async def test_child_watches_carry_a_label_selector(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Defect 8: the API server sends only the operator's own Deployments and Jobs (audit log)."""
    world = World(control_plane, cluster_namespace)
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(manifest())
        await until(lambda: world.phase() == "Ready", "Ready")
    reads = [
        event
        for event in control_plane.audit_events()
        if event.get("verb") in ("list", "watch")
        and event.get("objectRef", {}).get("resource") in ("deployments", "jobs")
        and str(event.get("userAgent", "")).startswith("kopf")
    ]
    assert reads
    selectors = {
        uri: parse_qs(urlsplit(uri).query).get("labelSelector") for uri in (e["requestURI"] for e in reads)
    }
    assert all(found == [OWN_SELECTOR] for found in selectors.values()), selectors


async def test_replicas_apply_in_place_and_storage_is_a_new_revision(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Defect 3: scaling starts no Job and no canary; a new store does (its artifacts are not there)."""
    world = World(control_plane, cluster_namespace)
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(manifest())
        await until(lambda: world.phase() == "Ready", "Ready")
        stable = world.status()["stableRevision"]
        world.change_spec({"serving": {"replicas": 6}})
        await until(lambda: replicas(world, stable) == 6, "scaled in place")
        assert world.status()["stableRevision"] == stable
        assert world.status().get("canaryRevision") is None
        assert len(world.creations("jobs")) == 1
        world.change_spec({"storage": {"uri": "s3://other-artifacts/modeldeploy"}})
        await until(lambda: len(world.creations("jobs")) == 2, "a Job for the new store")
        await until(lambda: world.status().get("canaryRevision") not in (None, stable), "a canary")


async def test_stable_keeps_its_size_until_canary_pods_are_available(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Defect 4: at canary start the stable shrank (4 → 2) before any canary pod was available."""
    world = World(control_plane, cluster_namespace)
    body = manifest(rollout={"steps": [50], "interval": "10s"})
    new = compute_revision(
        parse_spec(manifest(uri="s3://models/ocr-v2.onnx", rollout=body["spec"]["rollout"])["spec"])
    )
    control_plane.agent.unavailable(cluster_namespace, {new})
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(body)
        await until(lambda: world.phase() == "Ready", "Ready")
        old = world.status()["stableRevision"]
        await until(lambda: stable_ready(world, old, 4), "4 ready")
        with ReadySampler(world).running() as sampler:
            world.change_spec({"model": {"name": "ocr", "uri": "s3://models/ocr-v2.onnx"}})
            await until(lambda: f"ocr-{new}" in world.deployments(), "the canary Deployment")
            await asyncio.sleep(2)  # the canary's pods never become ready: stable must stay whole
            assert replicas(world, old) == 4
            world.annotate("modeldeploy.io/abort", "true")
            await until(lambda: set(world.deployments()) == {f"ocr-{old}"}, "canary removed")
        lowest, detail = sampler.lowest()
        assert lowest >= 4, f"ready stable replicas fell to {lowest}: {detail}"


class CrashPoint:
    """Where the walk kills the operator: after `at` effective writes of its client in all incarnations."""

    def __init__(self) -> None:
        self.writes = 0
        self.at = 0
        self.crashed = asyncio.Event()


class CrashingKube(Kube):
    """The operator's real client, dying (for good: `kill -9`) right after its `CrashPoint.at`-th write that
    changed something on the API server; every later call fails before it is sent."""

    crash: CrashPoint

    async def _effective(self, ref: ObjectRef, call: Any) -> Any:
        if self.crash.crashed.is_set():
            raise KubeError(0, "the operator was killed")
        before = await self._version(ref)
        result = await call()
        after = (
            (result or {}).get("metadata", {}).get("resourceVersion") if isinstance(result, dict) else None
        )
        if result is True or before is None or after != before:
            self.crash.writes += 1
            if self.crash.writes >= self.crash.at:
                self.crash.crashed.set()
        return result

    async def _version(self, ref: ObjectRef) -> str | None:
        resource = await self._resource(ref.api_version, ref.kind)
        try:
            found = await self._dynamic.get(resource, name=ref.name, namespace=ref.namespace)
        except Exception:  # absent: the write creates it
            return None
        return str(found.metadata.resourceVersion)

    async def apply(self, manifest: Mapping[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        result = await self._effective(
            ObjectRef.of(manifest), lambda: super(CrashingKube, self).apply(manifest, field_manager)
        )
        return dict(result or {})

    async def merge_patch(
        self,
        ref: ObjectRef,
        patch: Mapping[str, Any],
        subresource: str | None = None,
        field_manager: str = FIELD_MANAGER,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        result = await self._effective(
            ref,
            lambda: super(CrashingKube, self).merge_patch(
                ref, patch, subresource, field_manager, resource_version
            ),
        )
        return None if result is None else dict(result)

    async def delete(self, ref: ObjectRef) -> bool:
        if self.crash.crashed.is_set():
            raise KubeError(0, "the operator was killed")
        gone = await super().delete(ref)
        if gone:
            self.crash.writes += 1
            if self.crash.writes >= self.crash.at:
                self.crash.crashed.set()
        return gone

    async def record_event(
        self, involved: Any, event_type: str, reason: str, message: str, now: Any = None
    ) -> None:
        if not self.crash.crashed.is_set():
            await super().record_event(involved, event_type, reason, message, now)


@contextlib.asynccontextmanager
async def crashing_operator(
    config: pathlib.Path, namespace: str, crash: CrashPoint
) -> AsyncIterator[Runtime]:
    kube = await CrashingKube.connect(
        str(config), backoff=Backoff(attempts=3, first_delay_s=0.05, max_delay_s=0.2)
    )
    assert isinstance(kube, CrashingKube)
    kube.crash = crash
    probes = ScriptedProbes()
    runtime = Runtime(kube=kube, probes=probes, metrics=OperatorMetrics(), clock=ManualClock(), retry_s=0.2)
    async with operator_in_this_loop(runtime, kill=True, namespace=namespace):
        yield runtime


async def test_kill_between_the_writes_of_a_promotion_never_duplicates_loses_or_shrinks(
    control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path
) -> None:
    """Done when 5, on the real control plane, over the promotion's writes (status, annotation removal,
    new stable at full size, services, retiring the old stable): each incarnation dies right after one more
    effective write than the one before. The whole canary's walk, write by write, runs on the emulator
    (tests/test_operator_killwalk.py); here the subset whose safety depends on the real Deployment
    controller's availability keeps the test within seconds."""
    world = World(control_plane, cluster_namespace)
    async with running_operator(real_kubeconfig, cluster_namespace):
        world.create(manifest(rollout={"steps": [50], "interval": "10s"}))
        await until(lambda: world.phase() == "Ready", "Ready")
        old = world.status()["stableRevision"]
        world.change_spec({"model": {"name": "ocr", "uri": "s3://models/ocr-v2.onnx"}})
        await until(lambda: world.status().get("canaryStep") == 0, "canary at step 1")
        new = world.status()["canaryRevision"]
        await until(lambda: stable_ready(world, new, 2), "canary pods ready")
    world.annotate(ANNOTATION_PROMOTE, "true")
    crash = CrashPoint()

    def settled() -> bool:
        status = world.status()
        annotations = world.mdep()["metadata"].get("annotations") or {}
        return (
            status.get("stableRevision") == new
            and set(world.deployments()) == {f"ocr-{new}"}
            and ANNOTATION_PROMOTE not in annotations
        )

    for incarnation in range(40):
        crash.at = crash.writes + 1
        crash.crashed = asyncio.Event()
        async with crashing_operator(real_kubeconfig, cluster_namespace, crash):
            done = asyncio.create_task(until(settled, "settled", timeout=20))
            died = asyncio.create_task(crash.crashed.wait())
            finished, pending = await asyncio.wait({done, died}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        await asyncio.to_thread(
            _check_kill_point, world, old, f"incarnation {incarnation}, write {crash.writes}"
        )
        if done in finished and not done.exception():
            break
    else:
        raise AssertionError(f"not settled: {world.status()}")
    assert incarnation >= 3  # the walk crossed the promotion's writes one by one


def _check_kill_point(world: World, old: str, where: str) -> None:
    for plural in ("deployments", "jobs"):
        created = world.creations(plural)
        assert len(created) == len(set(created)), f"{where}: {plural} created twice: {created}"
    deployments = world.deployments()
    wanted = sum(int(d["spec"].get("replicas", 1)) for d in deployments.values())
    assert wanted >= 4, f"{where}: Deployments ask for {wanted} < 4 pods"
    status = world.status()
    assert f"ocr-{status['stableRevision']}" in deployments, f"{where}: recorded stable missing"
    annotations = world.mdep()["metadata"].get("annotations") or {}
    if ANNOTATION_PROMOTE not in annotations:
        assert status["stableRevision"] != old, f"{where}: promote annotation removed, promotion lost"
