"""`modeldeploy.kube` against the real control plane: server-side apply, field ownership, patches, deletion
with the real garbage collector, events. Retries on injected API errors stay on the emulator (the real
server cannot answer 500/409/429 on chosen requests): the last test here."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from cluster import Cluster
from kube_emulator import ApiServerEmulator
from operator_harness import eventually, manifest
from operator_world import DEPLOYMENTS, World

from modeldeploy.kube import Backoff, Kube, KubeError, ObjectRef

FAST = Backoff(attempts=4, first_delay_s=0.01, max_delay_s=0.05)


def deployment(namespace: str, replicas: int | None = 2, image: str = "triton:1") -> dict[str, object]:
    labels = {"app.kubernetes.io/name": "triton", "modeldeploy.io/track": "stable"}
    spec: dict[str, object] = {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "triton", "image": image}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ocr-abc", "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def _entry(obj: dict[str, Any], manager: str) -> list[dict[str, Any]]:
    return [e for e in obj["metadata"]["managedFields"] if e["manager"] == manager]


@pytest.fixture
def world(control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path) -> World:
    return World(control_plane, cluster_namespace)


async def test_apply_creates_then_updates_with_server_bookkeeping(world: World) -> None:
    async with await Kube.connect(str(world.cluster.kubeconfig), backoff=FAST) as kube:
        created = await kube.apply(deployment(world.namespace))
        assert created["metadata"]["uid"]
        assert created["metadata"]["generation"] == 1
        again = await kube.apply(deployment(world.namespace))
        # A no-op: the spec and the operator's managedFields entry are untouched (the resourceVersion may
        # still move: the Deployment controller writes the status meanwhile).
        assert again["metadata"]["generation"] == 1
        assert _entry(again, "modeldeploy") == _entry(created, "modeldeploy")
        changed = await kube.apply(deployment(world.namespace, image="triton:2"))
        assert changed["metadata"]["generation"] == 2
        assert changed["metadata"]["uid"] == created["metadata"]["uid"]
    # Server-side apply under the operator's field manager (an update would show as operation Update).
    ours = [e for e in changed["metadata"]["managedFields"] if e["manager"] == "modeldeploy"]
    assert [e["operation"] for e in ours] == ["Apply"]
    assert world.creations("deployments") == ["ocr-abc"]


async def test_leaving_replicas_out_keeps_the_count_only_after_a_hand_off(world: World) -> None:
    """On a real server a Deployment always has `spec.replicas` (defaulted to 1): who owns it is what the
    operator's applies change."""
    async with await Kube.connect(str(world.cluster.kubeconfig), backoff=FAST) as kube:
        await kube.apply(deployment(world.namespace, replicas=3))
        await kube.apply(deployment(world.namespace, replicas=None))
        stored = world.stored(DEPLOYMENTS, "ocr-abc")
        assert stored is not None
        # Dropped (the operator was its only manager), so the server's default applies again.
        assert stored["spec"]["replicas"] == 1
        assert "modeldeploy" not in world.owners_of(stored, "spec", "replicas")
        await kube.apply(deployment(world.namespace, replicas=3))
        ref = ObjectRef("apps/v1", "Deployment", world.namespace, "ocr-abc")
        await kube.merge_patch(ref, {"spec": {"replicas": 5}}, field_manager="modeldeploy-handoff")
        await kube.apply(deployment(world.namespace, replicas=None))
        stored = world.stored(DEPLOYMENTS, "ocr-abc")
        assert stored is not None
        assert stored["spec"]["replicas"] == 5
        assert world.owners_of(stored, "spec", "replicas") == {"modeldeploy-handoff"}


async def test_delete_is_idempotent_and_collects_dependents(world: World) -> None:
    async with await Kube.connect(str(world.cluster.kubeconfig), backoff=FAST) as kube:
        await kube.apply(deployment(world.namespace))
        # The real Deployment and ReplicaSet controllers make the pods; the node agent runs them.
        await eventually(lambda: len(world.live("v1/pods")) == 2, "two pods", timeout=30)
        ref = ObjectRef("apps/v1", "Deployment", world.namespace, "ocr-abc")
        assert await kube.delete(ref) is True
        assert await kube.delete(ref) is False
        # Background propagation: the garbage collector removes the ReplicaSet, then its pods.
        await eventually(
            lambda: world.live("apps/v1/replicasets") == {} and world.live("v1/pods") == {},
            "dependents collected",
            timeout=30,
        )


async def test_events_and_status_patches(world: World) -> None:
    body = manifest()
    body["metadata"]["namespace"] = world.namespace
    async with await Kube.connect(str(world.cluster.kubeconfig), backoff=FAST) as kube:
        created = await kube.apply(body)
        ref = ObjectRef.of(body)
        patched = await kube.merge_patch(
            ref, {"status": {"phase": "Ready"}, "spec": {"serving": {"replicas": 9}}}, subresource="status"
        )
        assert patched is not None
        assert patched["status"] == {"phase": "Ready"}
        assert patched["spec"]["serving"]["replicas"] == 4  # the status subresource writes only status
        assert patched["metadata"]["generation"] == created["metadata"]["generation"]
        await kube.record_event(created, "Normal", "Promoted", "revision b promoted")
        events = list(world.live("v1/events").values())
        assert [(e["reason"], e["involvedObject"]["uid"]) for e in events] == [
            ("Promoted", created["metadata"]["uid"])
        ]
        missing = ObjectRef("modeldeploy.io/v1alpha1", "ModelDeployment", world.namespace, "gone")
        assert await kube.merge_patch(missing, {"metadata": {"annotations": {"a": None}}}) is None


async def test_transient_errors_are_retried_and_permanent_ones_raised(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path
) -> None:
    """On the emulator: a 500, 409 or 429 on a chosen request is a fault the real server cannot be told
    to produce."""
    async with await Kube.connect(str(kubeconfig), backoff=FAST) as kube:
        emulator.fail("PATCH", "/deployments/ocr-abc$", 500)
        emulator.fail("PATCH", "/deployments/ocr-abc$", 409)
        emulator.fail("PATCH", "/deployments/ocr-abc$", 429)
        created = await kube.apply(deployment("ml"))
        assert created["metadata"]["name"] == "ocr-abc"
        assert [status for _, _, status in emulator.served_faults] == [500, 409, 429]
        emulator.fail("PATCH", "/deployments/ocr-abc$", 403)
        with pytest.raises(KubeError) as caught:
            await kube.apply(deployment("ml"))
        assert caught.value.status == 403
        emulator.fail("PATCH", "/deployments/ocr-abc$", 503, times=10)
        with pytest.raises(KubeError) as caught:
            await kube.apply(deployment("ml"))
        assert caught.value.status == 503
