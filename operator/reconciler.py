"""One reconcile of one ModelDeployment: gather → decide (pure, `modeldeploy.rollout`) → act.

Gathering reads only what kopf's indexes already hold (the owned Deployments and Jobs) plus, when the
decision needs it, one pod listing (a finished Job's termination message) and the probes (Triton,
Prometheus). Acting renders every child through `modeldeploy.rendering` and applies it with server-side
apply; children already applied with the same content are skipped for a while (`reapply_s`), so a quiet
ModelDeployment costs no API calls, yet drift is still repaired.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy import rendering
from modeldeploy.analysis import Thresholds
from modeldeploy.conditions import ConditionType, Phase, find_condition, parse_time
from modeldeploy.defaults import BUILTIN, PrometheusAuthRef, SpecDefaults, prometheus_auth_for
from modeldeploy.job_result import message_from_pods, parse_termination_message
from modeldeploy.kube import HANDOFF_FIELD_MANAGER, Kube, ObjectRef
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import AnalysisRequest, Probes, Track
from modeldeploy.rendering import (
    API_VERSION,
    INSTANCE_LABEL,
    KIND,
    REVISION_LABEL,
    TRACK_LABEL,
)
from modeldeploy.rollout import (
    Action,
    ApplyDeployment,
    ApplyJob,
    ApplyTrafficObjects,
    ClearAnnotation,
    Decision,
    DeleteDeployment,
    DeleteJob,
    Desired,
    HandOffReplicas,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    RecordEvent,
    RolloutStatus,
    analysis_due,
    decide,
    decide_invalid_spec,
    desired_from_spec,
    smoke_check_due,
    wants_job_result,
)
from modeldeploy.spec import ModelDeploymentSpec, SpecError, check_name, parse_spec

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
PHASES = [str(phase) for phase in Phase]
RECENT_APPLY_S = 2.0

Key = tuple[str, str]  # (namespace, name)


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Runtime:
    """What every reconcile shares: clients, probes, metrics, and per-object wake-up signals."""

    kube: Kube
    probes: Probes
    metrics: OperatorMetrics
    resync_s: float = 300.0  # level-based safety net: reconcile at least this often
    reapply_s: float = 600.0  # re-apply unchanged children this often (repairs manual drift)
    retry_s: float = 5.0  # after a failed reconcile
    consistency_timeout_s: float = 5.0  # wait this long for our own write to come back on the watch
    clock: Callable[[], datetime] = utc_now
    defaults: SpecDefaults = BUILTIN  # operator-wide defaults (`modeldeploy run` flags, from the chart)
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    # After a write: the resourceVersion the object had before it (a body still at it is stale) ...
    stale_versions: dict[Key, str] = field(default_factory=dict)
    # ... and the versions our own writes produced (their watch events are no news).
    own_versions: dict[Key, list[str]] = field(default_factory=dict)
    settled: dict[Key, asyncio.Event] = field(default_factory=dict)
    applied: dict[tuple[str, str, str | None, str], tuple[str, float]] = field(default_factory=dict)

    def waker(self, key: Key) -> asyncio.Event:
        return self.wakers.setdefault(key, asyncio.Event())

    def poke(self, key: Key) -> None:
        """Something this ModelDeployment depends on changed: reconcile it now."""
        waker = self.wakers.get(key)
        if waker is not None:
            waker.set()

    def saw(self, key: Key, resource_version: str | None) -> bool:
        """A watch event of the ModelDeployment arrived; True when it is the echo of our own write.

        kopf may batch quick successive events, so the echo of one particular write can be skipped:
        any version other than the stale one means the live body has moved past our writes' origin.
        """
        if (
            resource_version is not None
            and self.stale_versions.get(key, resource_version) != resource_version
        ):
            del self.stale_versions[key]
            self.settled.setdefault(key, asyncio.Event()).set()
        return resource_version is not None and resource_version in self.own_versions.get(key, ())

    async def settle(self, key: Key, resource_version: str | None) -> None:
        """Before deciding again, let the watch deliver our last write (else the status would be stale)."""
        if self.stale_versions.get(key) != resource_version:
            self.stale_versions.pop(key, None)
            return
        event = self.settled.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), self.consistency_timeout_s)
        except TimeoutError:
            self.stale_versions.pop(key, None)

    def wrote(self, key: Key, before: str | None, after: str | None) -> None:
        # A write that changed nothing keeps the resourceVersion and sends no watch event (as the API
        # server does): waiting for its echo would stall the loop for consistency_timeout_s.
        changed = after is None or after != before
        if before and changed and key not in self.stale_versions:
            self.stale_versions[key] = before
            self.settled.setdefault(key, asyncio.Event()).clear()
        if after:
            self.own_versions[key] = [*self.own_versions.get(key, [])[-7:], after]

    def forget(self, key: Key) -> None:
        self.wakers.pop(key, None)
        self.stale_versions.pop(key, None)
        self.own_versions.pop(key, None)
        self.settled.pop(key, None)
        namespace, name = key
        for applied_key in [k for k in self.applied if k[2] == namespace and _belongs(k[3], name)]:
            del self.applied[applied_key]
        self.metrics.forget(namespace, name, PHASES)


# ---------------------------------------------------------------------------------------------- gather


def observed_deployment(body: Mapping[str, Any]) -> ObservedDeployment | None:
    labels = body.get("metadata", {}).get("labels") or {}
    revision = labels.get(REVISION_LABEL)
    if not revision:
        return None
    spec, status = body.get("spec") or {}, body.get("status") or {}
    replicas = spec.get("replicas")
    return ObservedDeployment(
        name=body["metadata"]["name"],
        revision=revision,
        track=labels.get(TRACK_LABEL, ""),
        replicas=int(replicas) if replicas is not None else None,
        available_replicas=int(status.get("availableReplicas") or 0),
    )


def observed_job(body: Mapping[str, Any]) -> ObservedJob | None:
    labels = body.get("metadata", {}).get("labels") or {}
    revision = labels.get(REVISION_LABEL)
    if not revision:
        return None
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"}
    started = parse_time(status.get("startTime"))
    if "Complete" in conditions:
        finished = parse_time(status.get("completionTime")) or parse_time(
            conditions["Complete"].get("lastTransitionTime")
        )
        return ObservedJob(
            body["metadata"]["name"], revision, "succeeded", started=started, finished=finished
        )
    if "Failed" in conditions:
        failed = conditions["Failed"]
        reason = ": ".join(part for part in (failed.get("reason"), failed.get("message")) if part)
        finished = parse_time(failed.get("lastTransitionTime"))
        return ObservedJob(body["metadata"]["name"], revision, "failed", reason, started, finished)
    return ObservedJob(body["metadata"]["name"], revision, "running", started=started)


def owner_key(body: Mapping[str, Any]) -> Key | None:
    """The ModelDeployment a child belongs to (by its instance label)."""
    meta = body.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return (meta.get("namespace", ""), instance) if instance else None


# ---------------------------------------------------------------------------------------------- reconcile


async def reconcile(
    runtime: Runtime,
    body: Mapping[str, Any],
    deployments: Iterable[ObservedDeployment],
    jobs: Iterable[ObservedJob],
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> float:
    """Reconcile once; returns the seconds until the clock alone needs another reconcile."""
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
        invalid = decide_invalid_spec(status, int(meta.get("generation") or 0), str(error), now)
        await _write_status(runtime, key, body, status, invalid)
        if _degraded_message(invalid) != _degraded_message(status):
            await runtime.kube.record_event(body, "Warning", "InvalidSpec", str(error))
        runtime.metrics.reconciles.labels("invalid").inc()
        runtime.metrics.set_phase(namespace, name, str(invalid.phase), PHASES)
        return runtime.resync_s

    owner = rendering.Owner(name=name, namespace=namespace, uid=meta.get("uid"))
    desired = desired_from_spec(spec, name, int(meta.get("generation") or 0))
    observed = Observed(
        jobs={job.revision: job for job in jobs},
        deployments={deployment.revision: deployment for deployment in deployments},
    )
    manual = Manual.from_annotations(meta.get("annotations") or {})
    observed = await _with_job_result(runtime, namespace, desired, status, observed)
    measured = await _measure(
        runtime, owner, spec=spec, desired=desired, status=status, observed=observed, manual=manual, now=now
    )
    decision = decide(desired, status, observed, manual=manual, measured=measured, now=now)

    deferred = await _act(
        runtime, owner, spec=spec, body=body, decision=decision, observed=observed, logger=logger
    )
    await _write_status(runtime, key, body, status, decision.status)
    for event in decision.of_type(RecordEvent):
        await runtime.kube.record_event(body, event.type, str(event.reason), event.message)
        logger.info("%s: %s", event.reason, event.message)
    _count(runtime.metrics, status, decision)
    runtime.metrics.set_phase(namespace, name, str(decision.status.phase), PHASES)
    runtime.metrics.reconciles.labels("ok").inc()
    runtime.metrics.reconcile_seconds.observe(time.monotonic() - started)
    delay = runtime.resync_s if decision.requeue_after is None else decision.requeue_after.total_seconds()
    return min(max(delay, 0.0), runtime.resync_s, RECENT_APPLY_S if deferred else runtime.resync_s)


async def _with_job_result(
    runtime: Runtime, namespace: str, desired: Desired, status: RolloutStatus, observed: Observed
) -> Observed:
    job_name = wants_job_result(desired, status, observed)
    if job_name is None:
        return observed
    pods = await runtime.kube.list("v1", "Pod", namespace, f"{JOB_NAME_LABEL}={job_name}")
    message, exit_code = message_from_pods(pods)
    if message is None and exit_code is None:
        job = observed.jobs[desired.revision]
        # The pods may already be gone (TTL, node loss): the Job's own state is all there is.
        result = parse_termination_message(None, 0 if job.state == "succeeded" else 1)
    else:
        result = parse_termination_message(message, exit_code)
    return Observed(jobs=observed.jobs, deployments=observed.deployments, job_result=result)


async def _measure(
    runtime: Runtime,
    owner: rendering.Owner,
    *,
    spec: ModelDeploymentSpec,
    desired: Desired,
    status: RolloutStatus,
    observed: Observed,
    manual: Manual,
    now: datetime,
) -> Measurements:
    canary = Track(owner.namespace, owner.name, desired.revision)
    smoke = None
    if smoke_check_due(desired, status, observed):
        smoke = await runtime.probes.model_ready(canary, spec.model.name)
    analysis = None
    if analysis_due(desired, status, manual, now) and status.stable_revision:
        limits = spec.rollout.analysis
        since = max(t for t in (status.canary_step_start, status.analysis.time) if t is not None)
        own = spec.monitoring.prometheus_auth
        own_ref = PrometheusAuthRef(owner.namespace, own.secret_name, own.type) if own is not None else None
        request = AnalysisRequest(
            prometheus_url=spec.monitoring.prometheus_url,
            auth=prometheus_auth_for(spec.monitoring.prometheus_url, own_ref, runtime.defaults),
            model=spec.model.name,
            stable=Track(owner.namespace, owner.name, status.stable_revision),
            canary=canary,
            window=max(now - since, timedelta(seconds=30)),
            thresholds=Thresholds(
                max_error_rate=float(limits.max_error_rate),
                max_p99_ms=float(limits.max_p99_latency_ms)
                if limits.max_p99_latency_ms is not None
                else None,
                max_latency_ratio=float(limits.max_latency_ratio),
                min_requests=limits.min_requests,
            ),
        )
        analysis = await runtime.probes.analyze(request)
    return Measurements(smoke=smoke, analysis=analysis)


# ---------------------------------------------------------------------------------------------- act


async def _act(
    runtime: Runtime,
    owner: rendering.Owner,
    *,
    spec: ModelDeploymentSpec,
    body: Mapping[str, Any],
    decision: Decision,
    observed: Observed,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> bool:
    """Carry out the actions; True when a missing child was left for a moment (check again soon)."""
    deferred = False
    present = {d.name for d in observed.deployments.values()} | {j.name for j in observed.jobs.values()}
    for action in decision.actions:
        if isinstance(action, RecordEvent):
            continue  # recorded once the status that explains them is stored
        for manifest in _manifests(owner, spec, action):
            # A Deployment or Job missing from the index was deleted behind our back: apply it now.
            watched = manifest["kind"] in ("Deployment", "Job")
            gone = watched and manifest["metadata"]["name"] not in present
            sent = await _apply(runtime, manifest, gone=gone)
            deferred |= gone and not sent
        await _side_effect(runtime, owner, body, action, logger)
    return deferred


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
        ref = ObjectRef("apps/v1", "Deployment", namespace, rendering.deployment_name(owner, action.revision))
        await runtime.kube.merge_patch(
            ref, {"spec": {"replicas": action.replicas}}, field_manager=HANDOFF_FIELD_MANAGER
        )
    elif isinstance(action, DeleteDeployment):
        await runtime.kube.delete(ObjectRef("apps/v1", "Deployment", namespace, action.name))
        runtime.applied.pop(("apps/v1", "Deployment", namespace, action.name), None)
        logger.info("deleted Deployment %s", action.name)
    elif isinstance(action, DeleteJob):
        await runtime.kube.delete(ObjectRef("batch/v1", "Job", namespace, action.name))
        runtime.applied.pop(("batch/v1", "Job", namespace, action.name), None)
        logger.info("deleted Job %s", action.name)
    elif isinstance(action, ClearAnnotation):
        await _patch_own(
            runtime, (namespace, owner.name), body, {"metadata": {"annotations": {action.key: None}}}
        )


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


async def _write_status(
    runtime: Runtime, key: Key, body: Mapping[str, Any], before: RolloutStatus, after: RolloutStatus
) -> None:
    new = after.to_dict()
    if new == before.to_dict() and (body.get("status") or {}).get("phase"):
        return
    await _patch_own(runtime, key, body, {"status": new}, subresource="status")


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


async def _patch_own(
    runtime: Runtime,
    key: Key,
    body: Mapping[str, Any],
    patch: Mapping[str, Any],
    subresource: str | None = None,
) -> None:
    """Patch the ModelDeployment itself and record the write, so the loop waits for its echo."""
    ref = ObjectRef(API_VERSION, KIND, key[0], key[1])
    patched = await runtime.kube.merge_patch(ref, patch, subresource=subresource)
    if patched is not None:
        origin = body.get("metadata", {}).get("resourceVersion")
        runtime.wrote(key, origin, patched.get("metadata", {}).get("resourceVersion"))


def _degraded_message(status: RolloutStatus) -> str | None:
    degraded = find_condition(status.conditions, ConditionType.DEGRADED)
    return degraded.message if degraded is not None else None


def _belongs(child_name: str, owner_name: str) -> bool:
    return child_name == owner_name or child_name.startswith(f"{owner_name}-")
