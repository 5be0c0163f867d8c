"""Act: carry out a reconcile's plan (`modeldeploy.rollout.Decision`) on the cluster. Every planned child is
rendered through `modeldeploy.rendering` and applied with server-side apply, children the plan no longer has
are pruned, replicas are handed off, Jobs and Deployments deleted, one-shot annotations cleared. Children
already applied with the same content are skipped for a while (`reapply_s`), and an apply action planned
again from the same inputs is not even rendered again, so a quiet ModelDeployment costs no API calls (and
little CPU), yet drift is still repaired."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from modeldeploy import rendering
from modeldeploy.kube import HANDOFF_FIELD_MANAGER, ObjectRef
from modeldeploy.observe import Key
from modeldeploy.rendering import API_VERSION, KIND
from modeldeploy.rollout import (
    Action,
    ApplyDeployment,
    ApplyJob,
    ApplyTrafficObjects,
    ClearAnnotation,
    Decision,
    DeleteDeployment,
    DeleteJob,
    HandOffReplicas,
    Observed,
    RecordEvent,
    prune,
)
from modeldeploy.runtime import Runtime
from modeldeploy.spec import ModelDeploymentSpec

# Kinds of children pruned by owner uid when the desired state no longer has them (Deployments and Jobs
# are planned explicitly from the recorded state).
PRUNABLE = (
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)
RECENT_APPLY_S = 2.0
WATCHED_KINDS = ("Deployment", "Job")  # kopf's indexes hold them: a deleted one is noticed at once


async def act(
    runtime: Runtime,
    owner: rendering.Owner,
    *,
    spec: ModelDeploymentSpec,
    body: Mapping[str, Any],
    decision: Decision,
    observed: Observed,
    served_before: bool,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> bool:
    """Carry out the plan; True when a missing child was left for a moment (check again soon).
    `served_before`: the status this round started from had a stable revision."""
    deferred = False
    present = {d.name for d in observed.deployments.values()} | {j.name for j in observed.jobs.values()}
    inputs = _inputs_digest(body, observed)
    for action in decision.actions:
        if isinstance(action, RecordEvent):
            continue  # recorded once the status that explains them is stored
        if _carried_out_lately(runtime, owner, action, inputs, present):
            continue  # the same action from the same spec: rendering again would only find it applied
        manifests = _manifests(owner, spec, action)
        for manifest in manifests:
            if manifest["kind"] in observed.missing_apis:
                continue  # its API is not installed: the ChildrenApplied condition says so
            # A Deployment or Job missing from the index was deleted behind our back: apply it now.
            watched = manifest["kind"] in WATCHED_KINDS
            gone = watched and manifest["metadata"]["name"] not in present
            sent = await _apply(runtime, manifest, gone=gone)
            deferred |= gone and not sent
        if isinstance(action, ApplyTrafficObjects):
            # Traffic objects exist only once a stable was recorded: before that there is nothing to prune.
            await _prune(runtime, owner, manifests, logger, listing=served_before)
        _remember(runtime, owner, action, inputs, manifests)
        await _side_effect(runtime, owner, body, action, logger)
    return deferred


def _inputs_digest(body: Mapping[str, Any], observed: Observed) -> str:
    """What the children rendered for an action depend on besides the action: the spec, the owner's uid,
    and which optional APIs are missing (their children are left out)."""
    inputs = [body.get("spec"), body["metadata"].get("uid"), sorted(observed.missing_apis)]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _carried_out_lately(
    runtime: Runtime, owner: rendering.Owner, action: Action, inputs: str, present: set[str]
) -> bool:
    """This apply action was the last one carried out on its children, from the same inputs, within
    `reapply_s`, and its Deployment or Job (if any) is still there: nothing to render, send or prune."""
    target = _target(action)
    memo = runtime.acted.get((owner.namespace, owner.name, target)) if target else None
    if memo is None or memo[:2] != (action, inputs) or time.monotonic() - memo[2] >= runtime.reapply_s:
        return False
    return all(name in present for name in memo[3])


def _remember(
    runtime: Runtime, owner: rendering.Owner, action: Action, inputs: str, manifests: list[dict[str, Any]]
) -> None:
    target = _target(action)
    if target:
        watched = tuple(m["metadata"]["name"] for m in manifests if m["kind"] in WATCHED_KINDS)
        runtime.acted[(owner.namespace, owner.name, target)] = (action, inputs, time.monotonic(), watched)


def _target(action: Action) -> str | None:
    """The children an apply action writes (a later action on the same target replaces the memo)."""
    if isinstance(action, ApplyJob):
        return f"job/{action.revision}"
    if isinstance(action, ApplyDeployment):
        return f"deployment/{action.revision}"
    return "traffic" if isinstance(action, ApplyTrafficObjects) else None


async def _prune(
    runtime: Runtime,
    owner: rendering.Owner,
    manifests: list[dict[str, Any]],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    *,
    listing: bool,
) -> None:
    """Delete owned children the desired state no longer has (hpa → keda → none, podMonitor off, ...).
    Listing costs calls, so it runs when the wanted set changes (and once after a start), and not at all
    for an object that never served (nothing of an earlier spec can exist)."""
    wanted = frozenset((m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests)
    key = (owner.namespace, owner.name)
    if runtime.pruned.get(key) == wanted or not listing:
        runtime.pruned[key] = wanted
        return
    selector = f"{rendering.INSTANCE_LABEL}={owner.name}"
    for api_version, kind in PRUNABLE:
        if not await runtime.kube.serves(api_version, kind):
            continue
        existing = await runtime.kube.list(api_version, kind, owner.namespace, selector)
        for child in prune(wanted, (_with_kind(c, api_version, kind) for c in existing), owner.uid):
            name = child["metadata"]["name"]
            await _delete(runtime, owner, ObjectRef(api_version, kind, owner.namespace, name))
            logger.info("pruned %s %s: the spec no longer asks for it", kind, name)
    runtime.pruned[key] = wanted


def _with_kind(child: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    # Items of a list carry no apiVersion/kind of their own.
    return {**child, "apiVersion": api_version, "kind": kind}


def _manifests(owner: rendering.Owner, spec: ModelDeploymentSpec, action: Action) -> list[dict[str, Any]]:
    if isinstance(action, ApplyJob):
        return [rendering.render_optimization_job(owner, spec, action.revision)]
    if isinstance(action, ApplyDeployment):
        return [
            rendering.render_revision_deployment(owner, spec, action.revision, action.track, action.replicas)
        ]
    if isinstance(action, ApplyTrafficObjects):
        objects = [
            *rendering.render_services(owner, spec, action.stable_revision, action.canary_revision),
            rendering.render_autoscaler(owner, spec, action.stable_revision),
            rendering.render_pod_monitor(owner, spec),
            rendering.render_http_route(owner, spec, action.canary_weight),
        ]
        return [manifest for manifest in objects if manifest is not None]
    return []


async def _side_effect(
    runtime: Runtime,
    owner: rendering.Owner,
    body: Mapping[str, Any],
    action: Action,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> None:
    namespace = owner.namespace
    if isinstance(action, HandOffReplicas):
        name = rendering.deployment_name(owner, action.revision)
        # Server-side apply of only `spec.replicas` under the second manager: it becomes an owner of the
        # field (even when the value is unchanged), so the operator's next apply without it keeps it.
        handoff = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": action.replicas},
        }
        await runtime.kube.apply(handoff, field_manager=HANDOFF_FIELD_MANAGER)
        logger.info("handed replicas=%d of Deployment %s to %s", action.replicas, name, HANDOFF_FIELD_MANAGER)
    elif isinstance(action, DeleteDeployment):
        await _delete(runtime, owner, ObjectRef("apps/v1", "Deployment", namespace, action.name))
        logger.info("deleted Deployment %s", action.name)
    elif isinstance(action, DeleteJob):
        await _delete(runtime, owner, ObjectRef("batch/v1", "Job", namespace, action.name))
        logger.info("deleted Job %s", action.name)
    elif isinstance(action, ClearAnnotation):
        await patch_own(
            runtime, (namespace, owner.name), body, {"metadata": {"annotations": {action.key: None}}}
        )


async def _delete(runtime: Runtime, owner: rendering.Owner, ref: ObjectRef) -> None:
    """Delete a child and forget having applied it, so a plan that wants it again applies it at once."""
    await runtime.kube.delete(ref)
    runtime.applied.pop((ref.api_version, ref.kind, ref.namespace, ref.name), None)
    runtime.forget_acted((owner.namespace, owner.name))


async def _apply(runtime: Runtime, manifest: dict[str, Any], gone: bool) -> bool:
    """Server-side apply unless the same content was applied recently; True when it was sent."""
    ref = ObjectRef.of(manifest)
    cache_key = (ref.api_version, ref.kind, ref.namespace, ref.name)
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    previous = runtime.applied.get(cache_key)
    # `gone` right after our own apply only means the watch has not delivered it yet.
    max_age = RECENT_APPLY_S if gone else runtime.reapply_s
    if previous is not None and previous[0] == digest and time.monotonic() - previous[1] < max_age:
        return False
    await runtime.kube.apply(manifest)
    runtime.applied[cache_key] = (digest, time.monotonic())
    return True


async def patch_own(
    runtime: Runtime,
    key: Key,
    body: Mapping[str, Any],
    patch: Mapping[str, Any],
    *,
    subresource: str | None = None,
    resource_version: str | None = None,
) -> None:
    """Patch the ModelDeployment itself and record the write, so the loop waits for its echo."""
    ref = ObjectRef(API_VERSION, KIND, key[0], key[1])
    patched = await runtime.kube.merge_patch(
        ref, patch, subresource=subresource, resource_version=resource_version
    )
    if patched is not None:
        origin = body.get("metadata", {}).get("resourceVersion")
        runtime.wrote(key, origin, patched.get("metadata", {}).get("resourceVersion"))
