"""Issue 10's defects, each shown by the real operator against the emulated API server (which mirrors
the API-server behaviour each defect depends on; tests/test_operator_controlplane.py repeats the ones that
need a real kube-apiserver). Each test failed before its fix."""

from __future__ import annotations

import contextlib
import copy
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from kube_emulator import CLUSTER_RESOURCES, ApiServerEmulator, ClusterControllers, use_kubeconfig
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

from modeldeploy.kube import FIELD_MANAGER, HANDOFF_FIELD_MANAGER
from modeldeploy.observe import replicas_managers
from modeldeploy.revision import compute_revision
from modeldeploy.rollout import ANNOTATION_RETRY
from modeldeploy.spec import parse_spec

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
DEPLOYMENTS = "apps/v1/deployments"
JOBS = "batch/v1/jobs"
NS = "ml"
HPA = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
POD_MONITORS = "monitoring.coreos.com/v1/podmonitors"
AUTOSCALING = {"engine": "hpa", "minReplicas": 2, "maxReplicas": 8, "target": 50}


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
                    1
                    for version in obj.history
                    if version is not None
                    and version.get("metadata", {}).get("generation") == 1
                    and "status" not in version
                )
        return names


async def create(api: ApiServerEmulator, body: dict[str, Any]) -> None:
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = NS
    await api.write_as_controller(MDEPS, NS, body["metadata"]["name"], body)


async def change_spec(api: ApiServerEmulator, spec_patch: dict[str, Any], name: str = "ocr") -> None:
    await api.write_as_controller(MDEPS, NS, name, {"spec": spec_patch})


async def annotate(api: ApiServerEmulator, key: str, value: str | None, name: str = "ocr") -> None:
    await api.write_as_controller(MDEPS, NS, name, {"metadata": {"annotations": {key: value}}})


def operator(
    config: pathlib.Path, clock: ManualClock, probes: ScriptedProbes, kill: bool = False
) -> contextlib.AbstractAsyncContextManager[Operator]:
    return scripted_operator(str(config), NS, clock, probes, kill, clusterwide=True)


@pytest.fixture
async def cluster(emulator: ApiServerEmulator) -> AsyncIterator[ClusterControllers]:
    controllers = ClusterControllers(emulator)
    async with controllers.running():
        yield controllers


def replicas(view: View, revision: str) -> int | None:
    count = view.deployments()[f"ocr-{revision}"]["spec"].get("replicas")
    return int(count) if count is not None else None


async def test_promotion_under_an_autoscaler_keeps_the_fleet_when_the_canary_already_has_it(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    """Defect 1: the last step is 100 %, so the canary already runs the fleet's 4 replicas; a merge-patch
    hand-off changes nothing and takes no ownership, and the apply without replicas drops them to 1."""
    view = View(emulator)
    body = manifest(autoscaling=AUTOSCALING, rollout={"steps": [50, 100], "interval": "10s"})
    async with operator(kubeconfig, ManualClock(), ScriptedProbes(verdicts=["pass", "pass"])) as op:
        await create(emulator, body)
        old = await ready_with_stable(view)
        await emulator.write_as_controller(
            DEPLOYMENTS, NS, f"ocr-{old}", {"spec": {"replicas": 4}}
        )  # the HPA
        await change_spec(emulator, {"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(view, 0)
        op.tick()
        await canary_at_step(view, 1)
        await eventually(lambda: replicas(view, new) == 4, "canary at 100 % of the fleet")
        op.tick()
        await eventually(lambda: view.status().get("stableRevision") == new, "promotion")
        await eventually(lambda: set(view.deployments()) == {f"ocr-{new}"}, "old stable retired")
        promoted = view.deployments()[f"ocr-{new}"]
        assert promoted["spec"].get("replicas") == 4
        assert replicas_managers(promoted) == {HANDOFF_FIELD_MANAGER}  # no longer the operator's field
        assert emulator.live(HPA, NS)["ocr"]["spec"]["scaleTargetRef"]["name"] == f"ocr-{new}"


async def test_switching_the_engine_on_in_place_hands_the_count_over(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    """Defect 1, second case: autoscaling.engine none → hpa on a running revision (no new revision)."""
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest())
        stable = await ready_with_stable(view)
        assert replicas_managers(view.deployments()[f"ocr-{stable}"]) == {FIELD_MANAGER}
        await change_spec(emulator, {"autoscaling": AUTOSCALING})
        await eventually(lambda: "ocr" in emulator.live(HPA, NS), "the HPA")
        await eventually(
            lambda: replicas_managers(view.deployments()[f"ocr-{stable}"]) == {HANDOFF_FIELD_MANAGER},
            "replicas handed over",
        )
        assert replicas(view, stable) == 4
        assert view.status()["stableRevision"] == stable


async def test_autoscaler_and_pod_monitor_are_pruned_when_the_spec_drops_them(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    """Defect 2: hpa → keda → none leaves one, then zero autoscalers; podMonitor off removes it.
    An object with the same labels but another owner is left alone (pruning is by owner uid)."""
    view = View(emulator)
    foreign = {"metadata": {"labels": {"app.kubernetes.io/instance": "ocr"}}, "spec": {}}
    await emulator.write_as_controller(SCALED_OBJECTS, NS, "not-ours", foreign)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest(autoscaling=AUTOSCALING))
        stable = await ready_with_stable(view)
        assert set(emulator.live(HPA, NS)) == {"ocr"}
        await change_spec(emulator, {"autoscaling": {**AUTOSCALING, "engine": "keda"}})
        await eventually(lambda: "ocr" in emulator.live(SCALED_OBJECTS, NS), "the ScaledObject")
        await eventually(lambda: not emulator.live(HPA, NS), "the HPA pruned")
        await change_spec(emulator, {"autoscaling": {"engine": "none"}, "monitoring": {"podMonitor": False}})
        await eventually(
            lambda: set(emulator.live(SCALED_OBJECTS, NS)) == {"not-ours"}, "ScaledObject pruned"
        )
        await eventually(lambda: not emulator.live(POD_MONITORS, NS), "PodMonitor pruned")
        await eventually(lambda: replicas(view, stable) == 4, "the operator sets replicas again")
        assert view.status()["stableRevision"] == stable  # all applied in place


async def test_a_retried_optimization_leaves_no_error_of_the_failed_try(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    """Defects 5 and 6: the status is replaced whole (a merge patch kept `error` after success), and a
    failed optimization is retried by the documented annotation."""
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        body = manifest()
        revision = compute_revision(parse_spec(body["spec"]))
        cluster.failing_revisions[revision] = '{"v": 1, "error": "accuracy drop 0.2 > 0.01"}'
        await create(emulator, body)
        await eventually(lambda: view.phase() == "Failed", "the optimization failed")
        assert view.status()["optimization"]["error"] == "accuracy drop 0.2 > 0.01"
        del cluster.failing_revisions[revision]
        await annotate(emulator, ANNOTATION_RETRY, "true")
        await eventually(
            lambda: view.phase() == "Ready",
            "Ready after the retry",
            context=lambda: f"{view.status()}\n{view.jobs()}\n{view.mdep()['metadata'].get('annotations')}",
        )
        assert view.status()["optimization"]["state"] == "Succeeded"
        assert "error" not in view.status()["optimization"]
        assert ANNOTATION_RETRY not in (view.mdep()["metadata"].get("annotations") or {})
        assert ("Normal", "Retrying") in view.events()


async def test_status_writes_are_conditional_on_the_resource_version(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    """Defect 5: every status write carries the resourceVersion the decision was made from."""
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest())
        await ready_with_stable(view)
    writes = [r for r in emulator.received if r.method == "PATCH" and r.url.path.endswith("/status")]
    assert writes
    assert all(isinstance(r.data, dict) and r.data["metadata"]["resourceVersion"] for r in writes)


async def test_child_watches_ask_the_api_server_for_the_operators_own_objects_only(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, cluster: ClusterControllers
) -> None:
    """Defect 8: list and watch of Deployments and Jobs carry a label selector."""
    view = View(emulator)
    async with operator(kubeconfig, ManualClock(), ScriptedProbes()):
        await create(emulator, manifest())
        await ready_with_stable(view)
    for plural in ("deployments", "jobs"):
        reads = [r for r in emulator.received if r.method == "GET" and r.url.path.endswith(f"/{plural}")]
        assert reads, plural
        assert {r.params.get("labelSelector") for r in reads} == {"app.kubernetes.io/managed-by=modeldeploy"}


@pytest.fixture
async def without_pod_monitors(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ApiServerEmulator, pathlib.Path]]:
    """A cluster without the Prometheus Operator: PodMonitor is not served."""
    async with ApiServerEmulator() as api, kmock.Server(api):
        api.resources.load_bundled()
        for resource, kind, subresources in CLUSTER_RESOURCES:
            if kind != "PodMonitor":
                api.declare(resource, kind, subresources=subresources)
        yield api, use_kubeconfig(api, tmp_path, monkeypatch)


async def test_a_missing_optional_api_is_skipped_with_a_condition_naming_what_to_install(
    without_pod_monitors: tuple[ApiServerEmulator, pathlib.Path],
) -> None:
    """Defect 7: the first apply of the PodMonitor failed before any status was written."""
    api, config = without_pod_monitors
    view = View(api)
    controllers = ClusterControllers(api)
    async with controllers.running(), operator(config, ManualClock(), ScriptedProbes()) as op:
        await create(api, manifest())
        await ready_with_stable(view)
        errors = op.runtime.metrics.registry.get_sample_value(
            "modeldeploy_reconciles_total", {"result": "error"}
        )
        assert not errors  # the PodMonitor is skipped, not a failing apply retried forever
        condition = view.condition("ChildrenApplied")
        assert (condition["status"], condition["reason"]) == ("False", "APINotInstalled")
        assert "Prometheus Operator" in condition["message"]
        assert "spec.monitoring.podMonitor: false" in condition["message"]
        assert view.condition("Ready")["status"] == "True"
        assert "ocr" in api.live("v1/services", NS)
