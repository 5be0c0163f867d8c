"""The chart's RBAC and the Argo CD health script against what the real operator actually does.

For every example, the operator (kopf + modeldeploy's handlers, in-process) runs against the emulated API
server while the test plays the cluster's Job and Deployment controllers: the ModelDeployment goes to
Ready, a new revision is promoted by annotation, and (canary examples) another one is aborted. Every
request the operator sent is then turned into the attributes the API server authorizes (verb, API group,
resource[/subresource]), as Kubernetes' RequestInfo resolver does, and each must be allowed by the
ClusterRole the chart templates: a new call in the operator without its rule fails here, not in a cluster.
At each milestone the Argo CD health script reads the live object and must agree with its phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import kopf
import pytest
import toolbin
import yaml
from kube_emulator import ApiServerEmulator, ClusterControllers
from operator_harness import eventually
from realparts import missing

from modeldeploy import handlers

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "modeldeploy"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
HEALTH_LUA = (
    REPO_ROOT / "argocd" / "resource_customizations" / "modeldeploy.io" / "ModelDeployment" / "health.lua"
)
MODELDEPLOYMENTS = "modeldeploy.io/v1alpha1/modeldeployments"
DEADLINE_S = 60.0


@dataclass(frozen=True)
class Attributes:
    """What the API server's authorizer is asked for one request."""

    verb: str
    group: str
    resource: str  # with "/subresource" when there is one


def request_attributes(method: str, path: str, params: dict[str, str]) -> Attributes | None:
    """RequestInfo of a resource request (None for discovery and other non-resource URLs)."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None  # /api, /apis, /apis/GROUP[/VERSION], /version, /openapi/...: discovery
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]  # a namespaced resource: the namespace does not matter to a ClusterRole
    resource, name, subresource = (
        rest[0],
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
    )
    if method == "GET":
        verb = "get" if name else ("watch" if params.get("watch") in {"true", "1"} else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return Attributes(verb, group, f"{resource}/{subresource}" if subresource else resource)


def allowed(attributes: Attributes, rules: list[dict[str, Any]]) -> bool:
    return any(
        attributes.group in rule.get("apiGroups", [])
        and attributes.resource in rule.get("resources", [])
        and attributes.verb in rule.get("verbs", [])
        for rule in rules
    )


def cluster_role_rules() -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(toolbin.helm_path()), "template", "md", str(CHART), "--show-only", "templates/rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (role,) = (obj for obj in yaml.safe_load_all(result.stdout) if obj and obj["kind"] == "ClusterRole")
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def test_request_attributes_follow_the_api_server() -> None:
    # A few fixed points of Kubernetes' RequestInfo resolution, so the mapping below is trusted.
    cases = [
        ("GET", "/api/v1/namespaces/ml/pods", {}, Attributes("list", "", "pods")),
        ("GET", "/apis/apps/v1/deployments", {"watch": "true"}, Attributes("watch", "apps", "deployments")),
        ("GET", "/apis/batch/v1/namespaces/ml/jobs/j", {}, Attributes("get", "batch", "jobs")),
        ("POST", "/api/v1/namespaces/ml/events", {}, Attributes("create", "", "events")),
        (
            "PATCH",
            "/apis/modeldeploy.io/v1alpha1/namespaces/ml/modeldeployments/ocr/status",
            {},
            Attributes("patch", "modeldeploy.io", "modeldeployments/status"),
        ),
        (
            "DELETE",
            "/apis/apps/v1/namespaces/ml/deployments/d",
            {},
            Attributes("delete", "apps", "deployments"),
        ),
        ("GET", "/apis/apps/v1", {}, None),
        ("GET", "/api", {}, None),
    ]
    for method, path, params, expected in cases:
        assert request_attributes(method, path, params) == expected, path


async def create(api: ApiServerEmulator, manifest: dict[str, Any]) -> None:
    meta = manifest["metadata"]
    await api.write_as_controller(MODELDEPLOYMENTS, meta["namespace"], meta["name"], manifest)


async def run_operator(body: Callable[[], Awaitable[None]]) -> None:
    """Run the real operator (cluster-wide, standalone, as in the chart's cluster scope) around `body`."""
    stop_flag: asyncio.Event = asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(clusterwide=True, standalone=True, stop_flag=stop_flag, memo=kopf.Memo())
    )
    try:
        await body()
    finally:
        stop_flag.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(operator, timeout=30)


def argocd_health(obj: dict[str, Any]) -> str:
    """The Argo CD health script's verdict on a live object (Lua 5.1, as Argo CD runs it)."""
    try:
        from lupa import lua51  # noqa: PLC0415 - a missing real part must skip, not break collection
    except ImportError as error:
        missing("lupa (Lua 5.1)", str(error))
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    return str(runtime.execute(HEALTH_LUA.read_text())["status"])


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
async def test_real_operator_run_is_allowed_by_rbac_and_read_right_by_argocd(
    emulator: ApiServerEmulator, kubeconfig: pathlib.Path, example: pathlib.Path
) -> None:
    assert handlers.reconcile_loop  # the handlers are registered with kopf by importing them
    rules = cluster_role_rules()
    manifest: dict[str, Any] = yaml.safe_load(example.read_text())
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    canary = manifest["spec"].get("rollout", {}).get("strategy", "canary") == "canary"
    controllers = ClusterControllers(emulator)
    controllers_task = asyncio.create_task(controllers.run())
    health_seen: list[tuple[str, str]] = []  # (phase, Argo CD health) of each live milestone

    def stored() -> dict[str, Any]:
        return emulator.stored(MODELDEPLOYMENTS, namespace, name) or {}

    def status() -> dict[str, Any]:
        found: dict[str, Any] = stored().get("status") or {}
        return found

    def last_status() -> str:
        return f"status: {json.dumps(status())}"

    async def reach(what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        await eventually(lambda: check(status()), what, timeout=DEADLINE_S, context=last_status)
        live = stored()
        health_seen.append((live["status"]["phase"], argocd_health(live)))
        return live

    async def change_serving(max_batch_size: int) -> None:
        serving = {**manifest["spec"].get("serving", {}), "maxBatchSize": max_batch_size}
        await emulator.write_as_controller(MODELDEPLOYMENTS, namespace, name, {"spec": {"serving": serving}})

    async def annotate(key: str) -> None:
        patch = {"metadata": {"annotations": {key: "true"}}}
        await emulator.write_as_controller(MODELDEPLOYMENTS, namespace, name, patch)

    async def scenario() -> None:
        await create(emulator, manifest)
        first = (await reach("the first revision to be Ready", lambda s: s.get("phase") == "Ready"))["status"]
        # A bigger batch size is a new revision and keeps every example's preferred sizes valid.
        batch = manifest["spec"].get("serving", {}).get("maxBatchSize", 8)
        await change_serving(batch + 1)
        # Even `immediate` waits for the new revision's Triton to be READY, which no emulated pod ever is:
        # the promote annotation moves it on, as an operator's user would.
        moved_on = await reach(
            "the new revision to start",
            lambda s: s.get("phase") == "Canary" or s.get("stableRevision") != first["stableRevision"],
        )
        if moved_on["status"]["phase"] == "Canary":
            await annotate("modeldeploy.io/promote")
        second = await reach(
            "the new revision to be stable",
            lambda s: s.get("phase") == "Ready" and s.get("stableRevision") != first["stableRevision"],
        )
        if canary:
            await change_serving(batch + 2)
            await reach("another canary", lambda s: s.get("phase") == "Canary")
            await annotate("modeldeploy.io/abort")
            await reach(
                "the rollback",
                lambda s: (
                    s.get("phase") == "Degraded"
                    and s.get("stableRevision") == second["status"]["stableRevision"]
                ),
            )

    try:
        await run_operator(scenario)
    finally:
        controllers_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await controllers_task

    requests = [
        request_attributes(str(request.method.value), request.url.path, dict(request.params))
        for request in emulator.received
        if request.headers.get("Authorization") == "Bearer test-token"  # the operator's, not the test's
    ]
    seen = {attributes for attributes in requests if attributes is not None}
    assert Attributes("patch", "modeldeploy.io", "modeldeployments/status") in seen  # it did real work
    denied = sorted((a for a in seen if not allowed(a, rules)), key=lambda a: (a.resource, a.verb))
    assert denied == [], f"the chart's ClusterRole would refuse: {denied}"

    expected = {"Ready": "Healthy", "Degraded": "Degraded", "Paused": "Suspended"}
    expected.update(dict.fromkeys(("Pending", "Optimizing", "Deploying", "Canary"), "Progressing"))
    assert health_seen == [(phase, expected[phase]) for phase, _ in health_seen]
    assert ("Ready", "Healthy") in health_seen
    if canary:
        assert ("Degraded", "Degraded") in health_seen
