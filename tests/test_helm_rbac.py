"""The chart's RBAC on the real control plane: the real helm renders it (both watch scopes), it is applied,
and the operator runs as the chart's ServiceAccount (a TokenRequest token, not admin). The real RBAC
authorizer then judges every request: a new call in the operator without its rule is refused here, and
shows in the audit log as a `forbid` decision for the operator's user.

For every example, the ModelDeployment goes to Ready, a new revision goes through its canary steps (or
straight through, `immediate`) to promotion with scripted verdicts, and (canary examples) another one is
aborted. At each milestone the Argo CD health script reads the live object and must agree with its phase.
One test removes a rule and sees the operator report the refusal on the object, and recover once the
rule is back.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from chart_identity import (
    ChartIdentity,
    Scope,
    denied,
    identity_events,
    install_identity,
    uninstall_cluster_objects,
    without_rule,
)
from cluster import Cluster, use_cluster_kubeconfig
from operator_harness import ManualClock, Operator, ScriptedProbes, eventually, scripted_operator
from operator_world import World
from realparts import missing

from modeldeploy.spec import parse_spec

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
HEALTH_LUA = (
    REPO_ROOT / "argocd" / "resource_customizations" / "modeldeploy.io" / "ModelDeployment" / "health.lua"
)
DEADLINE_S = 30.0


def argocd_health(obj: dict[str, Any]) -> str:
    """The Argo CD health script's verdict on a live object (Lua 5.1, as Argo CD runs it)."""
    try:
        from lupa import lua51  # noqa: PLC0415 - a missing real part must skip, not break collection
    except ImportError as error:
        missing("lupa (Lua 5.1)", str(error))
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    return str(runtime.execute(HEALTH_LUA.read_text())["status"])


@pytest.fixture
def identity_factory(
    control_plane: Cluster,
    cluster_namespace: str,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., ChartIdentity]]:
    """Installs the chart's RBAC for a scope (serving the test's namespace) and makes its ServiceAccount's
    kubeconfig current for kopf; removes the cluster-scoped objects afterwards."""
    installed: list[ChartIdentity] = []

    def install(scope: Scope, edit: Any = None) -> ChartIdentity:
        identity = install_identity(
            control_plane,
            tmp_path,
            release=f"md-{cluster_namespace}",
            namespace=cluster_namespace,
            scope=scope,
            watched=[cluster_namespace],
            edit=edit,
        )
        installed.append(identity)
        use_cluster_kubeconfig(identity.kubeconfig, monkeypatch)
        return identity

    yield install
    for identity in installed:
        uninstall_cluster_objects(control_plane, identity)


def example_manifest(example: pathlib.Path, namespace: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(example.read_text())
    manifest["metadata"] = {"name": "ocr", "namespace": namespace}
    return manifest


class Lifecycle:
    """One example's lifecycle, with the Argo CD health read at each milestone."""

    def __init__(
        self, world: World, op: Operator, manifest: dict[str, Any], refusals: Callable[[], list[str]]
    ) -> None:
        self.world, self.op, self.manifest, self.refusals = world, op, manifest, refusals
        self.interval = parse_spec(manifest["spec"]).rollout.interval
        self.health_seen: list[tuple[str, str]] = []  # (phase, Argo CD health)

    def status(self) -> dict[str, Any]:
        return self.world.status()

    async def reach(self, what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        await eventually(
            lambda: check(self.status()),
            what,
            timeout=DEADLINE_S,
            context=lambda: f"status: {json.dumps(self.status())}\nRBAC refused: {self.refusals()}",
        )
        live = self.world.mdep()
        self.health_seen.append((live["status"]["phase"], argocd_health(live)))
        return dict(live["status"])

    def change_serving(self, max_batch_size: int) -> None:
        serving = {**self.manifest["spec"].get("serving", {}), "maxBatchSize": max_batch_size}
        self.world.change_spec({"serving": serving})

    async def promote_through_steps(self, stable: str) -> dict[str, Any]:
        """Tick one analysis interval at a time (every verdict passes) until the new revision is stable."""

        def promoted(status: dict[str, Any]) -> bool:
            return status.get("phase") == "Ready" and status.get("stableRevision") != stable

        for _ in range(12):
            before = self.status()
            if promoted(before):
                break
            self.op.tick(self.interval)
            await eventually(
                lambda before=before: (  # type: ignore[misc]
                    promoted(self.status()) or self.status().get("canaryStep") != before.get("canaryStep")
                ),
                "the next step or the promotion",
                timeout=DEADLINE_S,
            )
        return await self.reach("the new revision to be stable", promoted)

    async def run(self, canary: bool) -> None:
        self.world.create(self.manifest)
        first = await self.reach("the first revision to be Ready", lambda s: s.get("phase") == "Ready")
        # A bigger batch size is a new revision and keeps every example's preferred sizes valid.
        batch = self.manifest["spec"].get("serving", {}).get("maxBatchSize", 8)
        self.change_serving(batch + 1)
        if canary:
            await self.reach("the canary to start", lambda s: s.get("canaryStep") == 0)
        second = await self.promote_through_steps(first["stableRevision"])
        if canary:
            self.change_serving(batch + 2)
            await self.reach("another canary", lambda s: s.get("phase") == "Canary")
            self.world.annotate("modeldeploy.io/abort", "true")
            await self.reach(
                "the rollback",
                lambda s: (
                    s.get("phase") == "Degraded" and s.get("stableRevision") == second["stableRevision"]
                ),
            )


@pytest.mark.parametrize("scope", ["cluster", "namespaces"])
@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
async def test_operator_as_the_charts_service_account_is_never_refused_and_argocd_reads_it_right(
    control_plane: Cluster,
    cluster_namespace: str,
    identity_factory: Callable[..., ChartIdentity],
    example: pathlib.Path,
    scope: Scope,
) -> None:
    identity = identity_factory(scope)
    world = World(control_plane, cluster_namespace)
    manifest = example_manifest(example, cluster_namespace)
    canary = manifest["spec"].get("rollout", {}).get("strategy", "canary") == "canary"
    probes = ScriptedProbes(default="pass")
    async with scripted_operator(
        str(identity.kubeconfig), cluster_namespace, ManualClock(), probes, clusterwide=scope == "cluster"
    ) as op:
        lifecycle = Lifecycle(
            world, op, manifest, lambda: denied(identity_events(control_plane, identity.username))
        )
        await lifecycle.run(canary)

    events = identity_events(control_plane, identity.username)
    verbs = {(e["verb"], e.get("objectRef", {}).get("subresource")) for e in events}
    assert ("patch", "status") in verbs  # it did real work as that identity
    if canary:
        assert probes.analyses, "no canary analysis ran"
    assert denied(events) == [], f"the chart's {scope} RBAC refused the operator: {denied(events)}"

    expected = {"Ready": "Healthy", "Degraded": "Degraded", "Paused": "Suspended"}
    expected.update(dict.fromkeys(("Pending", "Optimizing", "Deploying", "Canary"), "Progressing"))
    seen = lifecycle.health_seen
    assert seen == [(phase, expected[phase]) for phase, _ in seen]
    assert ("Ready", "Healthy") in seen
    if canary:
        assert ("Degraded", "Degraded") in seen


async def test_a_missing_rule_is_reported_on_the_object_and_the_operator_recovers_once_granted(
    control_plane: Cluster,
    cluster_namespace: str,
    identity_factory: Callable[..., ChartIdentity],
) -> None:
    identity = identity_factory("namespaces", without_rule("services"))
    world = World(control_plane, cluster_namespace)
    manifest = example_manifest(EXAMPLES[0], cluster_namespace)

    def refusals() -> list[str]:
        return [
            e["message"]
            for e in world.live("v1/events").values()
            if e["type"] == "Warning" and "forbidden" in e.get("message", "")
        ]

    async with scripted_operator(
        str(identity.kubeconfig), cluster_namespace, ManualClock(), ScriptedProbes()
    ) as op:
        world.create(manifest)
        messages = await eventually(
            refusals,
            "a Warning Event about the refusal",
            timeout=DEADLINE_S,
            context=lambda: f"events: {world.events()}\nstatus: {json.dumps(world.status())}",
        )
        assert any('"services"' in m and "patch" in m for m in messages), messages
        assert denied(identity_events(control_plane, identity.username)) == ["patch services"]
        assert world.phase() != "Ready"
        # Granting the rule again (the chart as shipped): the same operator carries on, nothing crashed.
        install_identity(
            control_plane,
            identity.kubeconfig.parent,
            release=identity.release,
            namespace=identity.namespace,
            scope="namespaces",
            watched=[cluster_namespace],
        )
        op.poke()
        await eventually(
            lambda: world.phase() == "Ready", "phase Ready once services are allowed", timeout=60
        )
