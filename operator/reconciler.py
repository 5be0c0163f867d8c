"""One reconcile of one ModelDeployment: gather → decide → record → act.

Gather (`modeldeploy.observe`) reads what kopf's indexes already hold (the owned Deployments and Jobs),
which optional APIs exist, and, when the state needs it, one pod listing (a finished Job's termination
message) and the probes (Triton, Prometheus). Decide is pure (`modeldeploy.rollout.decide`). Record
writes the whole status, conditional on the object's resourceVersion. Act (`modeldeploy.acting`) carries
out the plan: renders, applies, prunes, hands off, deletes. Then the Events are recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from modeldeploy import rendering
from modeldeploy.acting import RECENT_APPLY_S, act, patch_own
from modeldeploy.conditions import (
    ConditionType,
    find_condition,
)
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.observe import (
    Key,
    measure,
    missing_apis,
    observed_deployment,
    observed_job,
    owner_key,
    with_job_result,
)
from modeldeploy.rollout import (
    Decision,
    Desired,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    RecordEvent,
    RolloutStatus,
    decide,
    decide_invalid_spec,
    desired_from_spec,
    replacing_patch,
    stored_form,
)
from modeldeploy.runtime import PHASES, Runtime, utc_now
from modeldeploy.spec import ModelDeploymentSpec, SpecError, check_name, parse_spec

__all__ = ["Runtime", "observed_deployment", "observed_job", "owner_key", "reconcile", "utc_now"]


# ---------------------------------------------------------------------------------------------- reconcile


async def reconcile(
    runtime: Runtime,
    body: Mapping[str, Any],
    deployments: Iterable[ObservedDeployment],
    jobs: Iterable[ObservedJob],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> float:
    """Reconcile once: gather → decide → record (status) → act (children) → Events.

    Returns the seconds until the clock alone needs another reconcile."""
    started = time.monotonic()
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    key = (namespace, name)
    await runtime.settle(key, meta.get("resourceVersion"))
    status = RolloutStatus.from_dict(body.get("status"))
    now = runtime.clock()
    try:
        check_name(name)
        spec = parse_spec(body.get("spec") or {}, runtime.defaults)
    except SpecError as error:
        await _refuse(runtime, body, status, str(error), now)
        return runtime.resync_s

    owner = rendering.Owner(name=name, namespace=namespace, uid=meta.get("uid"))
    desired = desired_from_spec(spec, name, int(meta.get("generation") or 0))
    observed, manual, measured = await _gather(
        runtime, owner, body, spec=spec, desired=desired, status=status, now=now, children=(deployments, jobs)
    )
    decision = decide(desired, status, observed, manual=manual, measured=measured, now=now)

    # Record before acting: every action follows from the stored status, so a crash anywhere after this
    # line is completed by the next reconcile (the plan is derived again from the same status).
    await write_status(runtime, key, body, decision.status)
    deferred = await act(
        runtime,
        owner,
        spec=spec,
        body=body,
        decision=decision,
        observed=observed,
        served_before=status.stable_revision is not None,
        logger=logger,
    )
    for event in decision.of_type(RecordEvent):
        await runtime.kube.record_event(body, event.type, str(event.reason), event.message)
        logger.info("%s: %s", event.reason, event.message)
    _count(runtime.metrics, status, decision)
    runtime.metrics.set_phase(namespace, name, str(decision.status.phase), PHASES)
    runtime.metrics.reconciles.labels("ok").inc()
    runtime.metrics.reconcile_seconds.observe(time.monotonic() - started)
    delay = runtime.resync_s if decision.requeue_after is None else decision.requeue_after.total_seconds()
    if runtime.failures.pop(key, None) is not None:
        delay = 0.0  # this round succeeded: record Reconciled=True right away
    return min(max(delay, 0.0), runtime.resync_s, RECENT_APPLY_S if deferred else runtime.resync_s)


async def _refuse(
    runtime: Runtime, body: Mapping[str, Any], status: RolloutStatus, error: str, now: datetime
) -> None:
    """An invalid spec: conditions say why, nothing is created (a serving stable keeps serving)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    invalid = decide_invalid_spec(status, int(meta.get("generation") or 0), error, now)
    await write_status(runtime, (namespace, name), body, invalid)
    if _degraded_message(invalid) != _degraded_message(status):
        await runtime.kube.record_event(body, "Warning", "InvalidSpec", error)
    runtime.metrics.reconciles.labels("invalid").inc()
    runtime.metrics.set_phase(namespace, name, str(invalid.phase), PHASES)


async def _gather(
    runtime: Runtime,
    owner: rendering.Owner,
    body: Mapping[str, Any],
    *,
    spec: ModelDeploymentSpec,
    desired: Desired,
    status: RolloutStatus,
    now: datetime,
    children: tuple[Iterable[ObservedDeployment], Iterable[ObservedJob]],
) -> tuple[Observed, Manual, Measurements]:
    deployments, jobs = children
    key = (owner.namespace, owner.name)
    observed = Observed(
        jobs={job.revision: job for job in jobs},
        deployments={deployment.revision: deployment for deployment in deployments},
        missing_apis=await missing_apis(runtime.kube, spec),
        last_failure=runtime.failures.get(key, ""),
    )
    manual = Manual.from_annotations(body["metadata"].get("annotations") or {})
    observed = await with_job_result(runtime.kube, owner.namespace, desired, status, observed)
    measured = await measure(
        runtime.probes,
        owner,
        spec=spec,
        desired=desired,
        status=status,
        observed=observed,
        manual=manual,
        now=now,
        defaults=runtime.defaults,
    )
    return observed, manual, measured


async def write_status(runtime: Runtime, key: Key, body: Mapping[str, Any], after: RolloutStatus) -> None:
    """Replace the whole status, conditional on the resourceVersion the decision was made from: a status
    changed meanwhile (another writer, a stale cache) makes the API server refuse it with 409, and the
    next reconcile decides again from the newer object. Nothing of a replaced sub-object survives."""
    stored = dict(body.get("status") or {})
    new = stored_form(after.to_dict())
    if new == stored:
        return
    resource_version = body.get("metadata", {}).get("resourceVersion")
    patch = {"status": replacing_patch(stored, new)}
    await patch_own(runtime, key, body, patch, subresource="status", resource_version=resource_version)


def _count(metrics: OperatorMetrics, before: RolloutStatus, decision: Decision) -> None:
    after = decision.status
    for event in decision.of_type(RecordEvent):
        if event.reason == "Promoted":
            metrics.rollouts.labels("promoted").inc()
    if after.last_rollback and after.last_rollback != before.last_rollback:
        metrics.rollouts.labels("rolled_back").inc()
        metrics.rollbacks.labels(str(after.last_rollback.get("cause", "unknown"))).inc()
    record, old = after.optimization, before.optimization
    finished = record.get("state") in ("Succeeded", "Failed")
    if finished and (old.get("revision"), old.get("state")) != (record.get("revision"), record.get("state")):
        duration = record.get("durationSeconds")
        if isinstance(duration, int | float):
            metrics.optimization_seconds.labels(str(record["state"]).lower()).observe(float(duration))


def _degraded_message(status: RolloutStatus) -> str | None:
    degraded = find_condition(status.conditions, ConditionType.DEGRADED)
    return degraded.message if degraded is not None else None
