"""What only a real control plane does to the operator: the garbage collector removing a deleted
ModelDeployment's children, kube-apiserver restarting mid-canary, and watches answered with 410 Gone after
etcd compaction. The restart test stops the API server, so it runs on a private cluster rather than the
session's shared one (the garbage collector test shares the session's: on a cluster just started, the
collector only learns the third-party kinds at its next discovery resync, up to 30 s later)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
import requests
from cluster import Cluster, running_cluster, use_cluster_kubeconfig
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
from operator_world import MDEPS, World

GATEWAY = {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "public", "namespace": "gateways"}}}
GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
# Every kind of child the operator writes, and what the controllers make of them (ReplicaSets, Pods).
CHILDREN = (
    "apps/v1/deployments",
    "apps/v1/replicasets",
    "v1/pods",
    "batch/v1/jobs",
    "v1/services",
    "autoscaling/v2/horizontalpodautoscalers",
    "monitoring.coreos.com/v1/podmonitors",
    "gateway.networking.k8s.io/v1/httproutes",
)


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("private-cluster")) as cluster:
        yield cluster


@pytest.fixture
def private_world(private_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    use_cluster_kubeconfig(private_cluster.kubeconfig, monkeypatch)
    namespace = private_cluster.create_namespace("r")
    yield World(private_cluster, namespace)
    private_cluster.delete_namespace(namespace)


@pytest.fixture
def world(control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path) -> World:
    return World(control_plane, cluster_namespace)


def operator(world: World, probes: ScriptedProbes) -> contextlib.AbstractAsyncContextManager[Operator]:
    return scripted_operator(str(world.cluster.kubeconfig), world.namespace, ManualClock(), probes)


def children(world: World) -> dict[str, set[str]]:
    return {resource: set(world.live(resource)) for resource in CHILDREN}


async def test_deleting_a_modeldeployment_lets_the_garbage_collector_remove_every_child(world: World) -> None:
    body = manifest(
        autoscaling={"engine": "hpa", "minReplicas": 2, "maxReplicas": 6, "target": 50},
        rollout={"steps": [20, 50], "interval": "10s", "trafficRouting": GATEWAY},
    )
    async with operator(world, ScriptedProbes()):
        world.create(body)
        await ready_with_stable(world)
        await eventually(lambda: world.live("v1/pods"), "pods of the serving Deployment")
        before = children(world)
        assert all(before.values()), f"a kind of child is missing: {before}"
        world.delete(MDEPS, "ocr")
        await eventually(lambda: world.stored(MDEPS, "ocr") is None, "finalizer released")
        await eventually(
            lambda: not any(children(world).values()),
            "every child collected",
            timeout=60,
            context=lambda: str(children(world)),
        )
    # The operator only released its finalizer: the real garbage collector deleted the children.
    collected = {
        (e["objectRef"]["resource"], e["objectRef"].get("name"))
        for e in world.cluster.audit_events()
        if e["verb"] == "delete"
        and e.get("user", {}).get("username") == GARBAGE_COLLECTOR
        and e.get("objectRef", {}).get("namespace") == world.namespace
    }
    for resource, names in before.items():
        plural = resource.rsplit("/", 1)[1]
        if plural != "pods":  # pods are deleted gracefully: the node agent confirms, as a kubelet does
            assert {(plural, name) for name in names} <= collected, (plural, collected)


def etcd_compact(cluster: Cluster) -> int:
    """Write a key straight to etcd (so the revision moves past every watch's resource version), then
    compact its history up to that revision: older resource versions are gone for good. (A restarted API
    server answers 410 to them anyway, from its fresh watch cache; compaction makes etcd agree.)"""
    url = cluster.plane.etcd_url
    key = base64.b64encode(b"/modeldeploy-test/compaction").decode()
    put = requests.post(f"{url}/v3/kv/put", json={"key": key, "value": key}, timeout=10)
    put.raise_for_status()
    revision = int(put.json()["header"]["revision"])
    compact = requests.post(
        f"{url}/v3/kv/compaction", json={"revision": str(revision), "physical": True}, timeout=30
    )
    compact.raise_for_status()
    return revision


@contextlib.asynccontextmanager
async def watch_restarts(caplog: pytest.LogCaptureFixture) -> AsyncIterator[list[str]]:
    """kopf's messages about watch streams restarted after a 410 Gone, collected while the block runs."""
    found: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="kopf"):
        yield found
        found.extend(
            r.getMessage() for r in caplog.records if "Restarting the watch-stream" in r.getMessage()
        )


async def test_api_server_restart_and_410_gone_mid_canary_resume_at_the_same_step_without_duplicates(
    private_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world = private_world
    probes = ScriptedProbes(verdicts=["pass", "pass"])
    async with watch_restarts(caplog) as restarts, operator(world, probes) as op:
        world.create(manifest())
        old = await ready_with_stable(world)
        world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
        new = await canary_at_step(world, 0)
        uids = {name: d["metadata"]["uid"] for name, d in world.deployments().items()}
        etcd_compact(world.cluster)
        # Off the event loop: the operator keeps running (and retrying) while the API server is away.
        await asyncio.to_thread(world.cluster.plane.restart_apiserver)
        await eventually(lambda: op.reconciles() >= 1, "a reconcile")
        before = op.reconciles()
        op.poke()
        await eventually(lambda: op.reconciles() > before, "a reconcile after the restart", timeout=60)
        status = world.status()
        assert (status["canaryRevision"], status["canaryStep"]) == (new, 0)
        assert probes.analyses == []  # the interval has not passed: no analysis yet
        assert {name: d["metadata"]["uid"] for name, d in world.deployments().items()} == uids
        op.tick()
        await canary_at_step(world, 1)
        op.tick()
        await eventually(lambda: world.status().get("stableRevision") == new, "promotion after the restart")
        await eventually(lambda: set(world.deployments()) == {f"ocr-{new}"}, "old stable deleted")
    assert restarts, "no watch was answered with 410 Gone"
    assert world.creations("deployments").count(f"ocr-{new}") == 1
    assert world.creations("deployments").count(f"ocr-{old}") == 1
    assert world.creations("jobs").count(f"ocr-optimize-{new}") == 1
    assert world.creations("services") == ["ocr"]
