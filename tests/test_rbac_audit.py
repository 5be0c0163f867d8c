"""The chart's RBAC equals what the operator uses: derived from the real API server's audit log.

The chart (real helm; each scope: a Role in the served namespace, or a ClusterRole) is installed into the
real control plane; the operator runs in this process under the chart's ServiceAccount (a token from the
TokenRequest API), started as `modeldeploy run` starts it for that scope, through a lifecycle that touches
every kind of child: create with KEDA, a PodMonitor and Gateway API routing → Ready; a new revision
promoted by annotation; KEDA → HPA → none; the PodMonitor turned off; routing back to replicas; delete.
Every request that identity made is read back from the audit log as (verb, API group,
resource[/subresource]); the role must grant exactly that set: a right the operator used without a grant
fails (it was also refused: 403), and a granted right it never used fails too.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import toolbin
import yaml
from cluster import Cluster, use_cluster_kubeconfig
from operator_harness import ManualClock, ScriptedProbes, eventually, manifest, ready_with_stable
from operator_world import MDEPS, World

from modeldeploy import handlers
from modeldeploy.commands.run import needs_scanning
from modeldeploy.kube import Backoff, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.reconciler import Runtime

CHART = Path(__file__).resolve().parent.parent / "helm" / "modeldeploy"
Right = tuple[str, str, str]  # (verb, API group, resource[/subresource])

# Granted but never a request, so never in an audit log: the API server's OwnerReferencesPermission-
# Enforcement admission checks it when a child with blockOwnerDeletion=true is created.
NOT_REQUESTS: set[Right] = {("update", "modeldeploy.io", "modeldeployments/finalizers")}


SCOPES = {
    "namespaces": lambda namespace: [
        "--set",
        "watch.scope=namespaces",
        "--set",
        f"watch.namespaces={{{namespace}}}",
    ],
    "cluster": lambda namespace: ["--set", "watch.scope=cluster"],
}
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def chart_objects(namespace: str, release: str, scope: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [
            str(toolbin.helm_path()),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            *SCOPES[scope](namespace),
            "--set",
            "peering.enabled=false",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def granted(rules: list[dict[str, Any]]) -> set[Right]:
    return {
        (verb, group, resource)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def used(events: list[dict[str, Any]], username: str) -> tuple[set[Right], set[Right]]:
    """(every right the identity exercised, those the API server refused) from audit events."""
    exercised, refused = set(), set()
    for event in events:
        ref = event.get("objectRef")
        if event.get("user", {}).get("username") != username or not ref:
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        right = (event["verb"], ref.get("apiGroup", ""), resource)
        exercised.add(right)
        code = event.get("responseStatus", {}).get("code")
        if code == 403:
            refused.add(right)
        if event["verb"] == "patch" and code == 201:
            # A server-side apply that created the object: the API server authorized `create` for it too.
            exercised.add(("create", right[1], right[2]))
    return exercised, refused


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    token = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {"name": account, "context": {"cluster": admin["clusters"][0]["name"], "user": account}}
        ],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def installed_rbac(
    cluster: Cluster, namespace: str, scope: str
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The chart's ServiceAccount and its Role (namespaces) or ClusterRole (cluster) with the binding:
    (the account's username, the role's rules). Cluster-wide objects are removed afterwards."""
    release = f"md-{uuid.uuid4().hex[:6]}"
    objects = [o for o in chart_objects(namespace, release, scope) if o["kind"] in RBAC_KINDS]
    (account,) = (o for o in objects if o["kind"] == "ServiceAccount")
    (role,) = (o for o in objects if o["kind"] in ("Role", "ClusterRole"))
    text = yaml.safe_dump_all(objects)
    cluster.kubectl("apply", "-f", "-", input=text)
    try:
        yield f"system:serviceaccount:{namespace}:{account['metadata']['name']}", role["rules"]
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "-f", "-", input=text, check=False)


@contextlib.asynccontextmanager
async def operator_as(world: World, kubeconfig: Path, scope: str) -> AsyncIterator[None]:
    """The operator as `modeldeploy run` starts it: `--namespace NS` (no scanning) for the namespaced
    scope, `--all-namespaces` (kopf follows CRDs) for the cluster scope; standalone, as peering is off."""
    kube = await Kube.connect(
        str(kubeconfig), backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1)
    )
    runtime = Runtime(
        kube=kube, probes=ScriptedProbes(), metrics=OperatorMetrics(), clock=ManualClock(), retry_s=0.2
    )
    namespaces = [world.namespace] if scope == "namespaces" else []
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    settings.scanning.disabled = not needs_scanning(namespaces)
    settings.batching.idle_timeout = 0.5
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            settings=settings,
            memo=kopf.Memo(runtime=runtime, owns_runtime=False),
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), timeout=15)
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=20)
        await runtime.kube.close()


async def reconciled(world: World) -> None:
    await eventually(
        lambda: world.status().get("observedGeneration") == world.mdep()["metadata"]["generation"],
        "the operator to act on the last change",
    )


async def lifecycle(world: World) -> None:
    routing = {"type": "gatewayAPI", "gatewayAPI": {"parentRef": {"name": "public"}}}
    body = manifest(
        autoscaling={"engine": "keda", "target": 20},
        monitoring={"podMonitor": True},
        rollout={"steps": [50], "interval": "10s", "trafficRouting": routing},
    )

    def live(resource: str) -> set[str]:
        return set(world.live(resource))

    world.create(body)
    first = await ready_with_stable(world)
    await eventually(lambda: live("keda.sh/v1alpha1/scaledobjects"), "a ScaledObject")
    world.change_spec({"model": {"uri": "s3://models/ocr-v2.onnx"}})
    await eventually(lambda: world.status().get("canaryStep") == 0, "a canary")
    world.annotate("modeldeploy.io/promote", "true")
    await eventually(
        lambda: world.phase() == "Ready" and world.status().get("stableRevision") != first, "promotion"
    )
    await eventually(lambda: f"ocr-{first}" not in live("apps/v1/deployments"), "old stable deleted")
    world.change_spec({"autoscaling": {"engine": "hpa"}})
    await eventually(lambda: live("autoscaling/v2/horizontalpodautoscalers"), "an HPA")
    world.change_spec({"autoscaling": {"engine": "none"}, "monitoring": {"podMonitor": False}})
    await reconciled(world)
    world.change_spec({"rollout": {"trafficRouting": {"type": "replicas", "gatewayAPI": None}}})
    await reconciled(world)
    world.delete(MDEPS, "ocr")
    await eventually(lambda: world.stored(MDEPS, "ocr") is None, "the finalizer released")


@pytest.mark.parametrize("scope", list(SCOPES))
async def test_the_role_grants_exactly_what_the_operator_uses(
    control_plane: Cluster,
    cluster_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scope: str,
) -> None:
    world = World(control_plane, cluster_namespace)
    with installed_rbac(control_plane, cluster_namespace, scope) as (username, rules):
        config = service_account_kubeconfig(
            control_plane, cluster_namespace, username.rsplit(":", 1)[1], tmp_path / "sa"
        )
        use_cluster_kubeconfig(config, monkeypatch)
        async with operator_as(world, config, scope):
            await lifecycle(world)
    exercised, refused = used(control_plane.audit_events(), username)
    assert refused == set(), f"the operator was refused: {sorted(refused)}"
    rights = granted(rules)
    missing = sorted(exercised - rights)
    assert missing == [], f"used without a grant: {missing}"
    unused = sorted(rights - exercised - NOT_REQUESTS)
    assert unused == [], f"granted but never used: {unused}"
