"""`modeldeploy.kube` against the emulated API server: apply, patch, delete, events, retries."""

from __future__ import annotations

import pathlib

import pytest
from kube_emulator import ApiServerEmulator

from modeldeploy.kube import Backoff, Kube, KubeError, ObjectRef

DEPLOYMENTS = "apps/v1/deployments"
FAST = Backoff(attempts=4, first_delay_s=0.01, max_delay_s=0.05)


def deployment(replicas: int | None = 2, image: str = "triton:1") -> dict[str, object]:
    spec: dict[str, object] = {"template": {"spec": {"containers": [{"name": "triton", "image": image}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ocr-abc", "namespace": "ml", "labels": {"modeldeploy.io/track": "stable"}},
        "spec": spec,
    }


async def test_apply_creates_then_updates_with_server_bookkeeping(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path
) -> None:
    async with await Kube.connect(str(kubeconfig), backoff=FAST) as kube:
        created = await kube.apply(deployment())
        assert created["metadata"]["uid"]
        assert created["metadata"]["generation"] == 1
        again = await kube.apply(deployment())
        assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # no-op
        changed = await kube.apply(deployment(image="triton:2"))
        assert changed["metadata"]["generation"] == 2
        assert changed["metadata"]["uid"] == created["metadata"]["uid"]
    patches = [r for r in emulator.received if r.method == "PATCH"]
    assert {r.params.get("fieldManager") for r in patches} == {"modeldeploy"}
    assert all(r.headers.get("Content-Type") == "application/apply-patch+yaml" for r in patches)


async def test_leaving_replicas_out_keeps_the_count_only_after_a_hand_off(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path
) -> None:
    async with await Kube.connect(str(kubeconfig), backoff=FAST) as kube:
        await kube.apply(deployment(replicas=3))
        await kube.apply(deployment(replicas=None))
        stored = emulator.stored(DEPLOYMENTS, "ml", "ocr-abc")
        assert stored is not None
        assert "replicas" not in stored["spec"]  # dropped: the operator was its only manager
        await kube.apply(deployment(replicas=3))
        ref = ObjectRef("apps/v1", "Deployment", "ml", "ocr-abc")
        await kube.merge_patch(ref, {"spec": {"replicas": 5}}, field_manager="modeldeploy-handoff")
        await kube.apply(deployment(replicas=None))
        stored = emulator.stored(DEPLOYMENTS, "ml", "ocr-abc")
        assert stored is not None
        assert stored["spec"]["replicas"] == 5


async def test_transient_errors_are_retried_and_permanent_ones_raised(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path
) -> None:
    async with await Kube.connect(str(kubeconfig), backoff=FAST) as kube:
        emulator.fail("PATCH", "/deployments/ocr-abc$", 500)
        emulator.fail("PATCH", "/deployments/ocr-abc$", 409)
        emulator.fail("PATCH", "/deployments/ocr-abc$", 429)
        created = await kube.apply(deployment())
        assert created["metadata"]["name"] == "ocr-abc"
        assert [status for _, _, status in emulator.served_faults] == [500, 409, 429]
        emulator.fail("PATCH", "/deployments/ocr-abc$", 403)
        with pytest.raises(KubeError) as caught:
            await kube.apply(deployment())
        assert caught.value.status == 403
        emulator.fail("PATCH", "/deployments/ocr-abc$", 503, times=10)
        with pytest.raises(KubeError) as caught:
            await kube.apply(deployment())
        assert caught.value.status == 503


async def test_delete_is_idempotent_and_collects_dependents(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path
) -> None:
    async with await Kube.connect(str(kubeconfig), backoff=FAST) as kube:
        owner = await kube.apply(deployment())
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "ocr-abc-1",
                "namespace": "ml",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "ocr-abc",
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
        await kube.apply(pod)
        ref = ObjectRef("apps/v1", "Deployment", "ml", "ocr-abc")
        assert await kube.delete(ref) is True
        assert await kube.delete(ref) is False
        assert emulator.live("v1/pods", "ml") == {}


async def test_events_and_status_patches(emulator: ApiServerEmulator, kubeconfig: pathlib.Path) -> None:
    body = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "ocr", "namespace": "ml"},
        "spec": {"model": {"name": "ocr"}},
    }
    async with await Kube.connect(str(kubeconfig), backoff=FAST) as kube:
        created = await kube.apply(body)
        ref = ObjectRef.of(body)
        patched = await kube.merge_patch(
            ref, {"status": {"phase": "Ready"}, "spec": {"x": 1}}, subresource="status"
        )
        assert patched is not None
        assert patched["status"] == {"phase": "Ready"}
        assert "x" not in patched["spec"]  # the status subresource writes only status
        assert patched["metadata"]["generation"] == created["metadata"]["generation"]
        await kube.record_event(created, "Normal", "Promoted", "revision b promoted")
        events = list(emulator.live("v1/events", "ml").values())
        assert [(e["reason"], e["involvedObject"]["uid"]) for e in events] == [
            ("Promoted", created["metadata"]["uid"])
        ]
        missing = ObjectRef("modeldeploy.io/v1alpha1", "ModelDeployment", "ml", "gone")
        assert await kube.merge_patch(missing, {"metadata": {"annotations": {"a": None}}}) is None
