"""The desired children of a ModelDeployment, derived from its recorded state and what exists.

Pure and level-based: the same (state, observed) always gives the same plan, so a reconcile that is cut
short anywhere is completed by the next one. Three rules keep serving capacity (Argo Rollouts, Flagger):
- surge first: a canary or a promoted stable grows before anything shrinks; the stable only gives up
  as many pods as the canary has available (`replicas` routing, where canary pods serve too);
- a Deployment of any other revision (old stable after promotion, rolled-back or superseded canary) is
  deleted only once the stable is fully available;
- before the operator stops setting `replicas` (an autoscaler takes over), the count is handed to a
  second field manager with server-side apply, so the field never falls back to its default of 1.
Children that are not Deployments or Jobs are pruned by `prune` (by owner uid) in the reconciler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.conditions import Phase
from modeldeploy.rollout.actions import (
    Action,
    ApplyDeployment,
    ApplyJob,
    ApplyTrafficObjects,
    DeleteDeployment,
    DeleteJob,
    HandOffReplicas,
)
from modeldeploy.rollout.inputs import Desired, Observed, ObservedDeployment
from modeldeploy.rollout.status import RolloutStatus
from modeldeploy.traffic import split_replicas


def plan_children(desired: Desired, status: RolloutStatus, observed: Observed) -> list[Action]:
    actions: list[Action] = [*_serving(desired, status, observed)]
    actions += _jobs(desired, status, observed)
    return actions


def _serving(desired: Desired, status: RolloutStatus, observed: Observed) -> list[Action]:
    stable, canary = status.stable_revision, status.canary_revision
    if stable is None:
        return []
    found = observed.deployments
    stable_replicas, canary_replicas = _sizes(desired, status, observed)
    actions: list[Action] = []
    applies: list[Action] = [ApplyDeployment(stable, "stable", stable_replicas)]
    if canary is not None:
        applies.append(ApplyDeployment(canary, "canary", canary_replicas))
    if stable_replicas is None:
        actions += _hand_off(stable, found)
    actions += applies
    actions.append(ApplyTrafficObjects(stable, canary, status.canary_weight if canary else 0))
    if fully_available(desired, found.get(stable)):
        actions += [
            DeleteDeployment(deployment.name)
            for revision, deployment in sorted(found.items())
            if revision not in (stable, canary)
        ]
    return actions


def _sizes(desired: Desired, status: RolloutStatus, observed: Observed) -> tuple[int | None, int]:
    """Replicas of stable (None: the autoscaler's) and canary for the recorded step."""
    full = None if desired.autoscaled else max(desired.serving_replicas, 1)
    canary = status.canary_revision
    if canary is None:
        return full, 0
    if desired.strategy == "immediate":
        return full, max(desired.serving_replicas, 1)
    stable_seen = observed.deployments.get(status.stable_revision or "")
    weight = status.canary_weight or (desired.steps[0] if desired.steps else 100)
    split = split_replicas(
        weight,
        desired.routing,
        desired.serving_replicas,
        desired.autoscaled,
        stable_seen.replicas if stable_seen is not None else None,
    )
    if full is None or split.stable is None or status.canary_step is None:
        return full, split.canary
    # Shrink stable only by what the canary already serves with.
    canary_seen = observed.deployments.get(canary)
    serving = min(canary_seen.available_replicas if canary_seen else 0, split.canary)
    return max(split.stable, full - serving), split.canary


def _hand_off(stable: str, found: Mapping[str, ObservedDeployment]) -> list[Action]:
    deployment = found.get(stable)
    if deployment is None or not deployment.operator_sets_replicas:
        return []
    # The fleet the autoscaler ran so far: the old stable's count when a promotion retires it.
    fleet = [d.replicas or 0 for d in found.values() if d.track == "stable" and d.revision != stable]
    return [HandOffReplicas(stable, max([deployment.replicas or 1, *fleet]))]


def fully_available(desired: Desired, stable: ObservedDeployment | None) -> bool:
    """Whether the stable serves with all the replicas it should have (so others may go)."""
    if stable is None:
        return False
    if desired.autoscaled:
        if stable.operator_sets_replicas:
            return False  # the hand-off has not been seen yet: its count is still to come
        wanted = stable.replicas if stable.replicas is not None else 1
    else:
        wanted = max(desired.serving_replicas, 1)
    return stable.available_replicas >= wanted


def _jobs(desired: Desired, status: RolloutStatus, observed: Observed) -> list[Action]:
    actions: list[Action] = []
    if status.phase == Phase.OPTIMIZING:
        actions.append(ApplyJob(desired.revision))
    for revision, job in sorted(observed.jobs.items()):
        superseded = revision != desired.revision
        # An abort cancels the running Job of the desired revision; a finished one keeps its logs.
        cancelled = job.state == "running" and status.phase != Phase.OPTIMIZING
        if superseded or cancelled:
            actions.append(DeleteJob(job.name))
    return actions


def prune(
    wanted: Iterable[tuple[str, str, str]], existing: Iterable[Mapping[str, Any]], owner_uid: str | None
) -> list[Mapping[str, Any]]:
    """Children to delete: owned by this ModelDeployment (controller owner reference with its uid, not
    labels alone) and no longer in the desired set of (apiVersion, kind, name)."""
    keep = set(wanted)
    doomed = []
    for child in existing:
        meta = child.get("metadata") or {}
        owners = meta.get("ownerReferences") or ()
        owned = owner_uid is not None and any(
            ref.get("uid") == owner_uid and ref.get("controller") for ref in owners
        )
        if owned and (child.get("apiVersion"), child.get("kind"), meta.get("name")) not in keep:
            doomed.append(child)
    return doomed
