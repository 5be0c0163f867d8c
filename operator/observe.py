"""Gather: what one reconcile reads before it decides. Child bodies (from kopf's indexes) become
`ObservedDeployment`/`ObservedJob`; the optional APIs the spec needs are checked against discovery; a
finished Job's termination message and the probes (Triton, Prometheus) are read only when the state needs
them (`rollout.wants_job_result`, `smoke_check_due`, `analysis_due`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from modeldeploy import rendering
from modeldeploy.analysis import Thresholds
from modeldeploy.conditions import parse_time
from modeldeploy.defaults import BUILTIN, PrometheusAuthRef, SpecDefaults, prometheus_auth_for
from modeldeploy.job_result import message_from_pods, parse_termination_message
from modeldeploy.kube import FIELD_MANAGER, Kube
from modeldeploy.probes import AnalysisRequest, Probes, Track
from modeldeploy.rendering import INSTANCE_LABEL, REVISION_LABEL, TRACK_LABEL
from modeldeploy.rollout import (
    Desired,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    RolloutStatus,
    analysis_due,
    smoke_check_due,
    wants_job_result,
)
from modeldeploy.spec import ModelDeploymentSpec

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
Key = tuple[str, str]  # (namespace, name)

# The optional children's APIs, by kind (their CRDs come from other projects).
OPTIONAL_KINDS: dict[str, str] = {
    "PodMonitor": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
}


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
        operator_sets_replicas=FIELD_MANAGER in replicas_managers(body),
    )


def replicas_managers(body: Mapping[str, Any]) -> set[str]:
    """Field managers that own `spec.replicas` (metadata.managedFields, fieldsV1 `f:spec` → `f:replicas`).
    A defaulted value has no owner: a Deployment always has replicas, ownership says who set them."""
    managers = set()
    for entry in body.get("metadata", {}).get("managedFields") or ():
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in fields:  # also through /scale (the HPA controller writes there)
            managers.add(str(entry.get("manager", "")))
    return managers


def observed_job(body: Mapping[str, Any]) -> ObservedJob | None:
    labels = body.get("metadata", {}).get("labels") or {}
    revision = labels.get(REVISION_LABEL)
    if not revision:
        return None
    name = body["metadata"]["name"]
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"}
    started = parse_time(status.get("startTime"))
    if "Complete" in conditions:
        finished = parse_time(status.get("completionTime")) or parse_time(
            conditions["Complete"].get("lastTransitionTime")
        )
        return ObservedJob(name, revision, "succeeded", started=started, finished=finished)
    if "Failed" in conditions:
        failed = conditions["Failed"]
        reason = ": ".join(part for part in (failed.get("reason"), failed.get("message")) if part)
        finished = parse_time(failed.get("lastTransitionTime"))
        return ObservedJob(name, revision, "failed", reason, started, finished)
    return ObservedJob(name, revision, "running", started=started)


def owner_key(body: Mapping[str, Any]) -> Key | None:
    """The ModelDeployment a child belongs to (by its instance label)."""
    meta = body.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return (meta.get("namespace", ""), instance) if instance else None


def wanted_optional_kinds(spec: ModelDeploymentSpec) -> list[str]:
    kinds = []
    if spec.monitoring.pod_monitor:
        kinds.append("PodMonitor")
    if spec.autoscaling.engine == "keda":
        kinds.append("ScaledObject")
    if spec.rollout.traffic_routing.type == "gatewayAPI":
        kinds.append("HTTPRoute")
    return kinds


async def missing_apis(kube: Kube, spec: ModelDeploymentSpec) -> tuple[str, ...]:
    """The optional kinds the spec asks for that the cluster does not serve (their CRD is missing)."""
    return tuple(
        [kind for kind in wanted_optional_kinds(spec) if not await kube.serves(OPTIONAL_KINDS[kind], kind)]
    )


async def with_job_result(
    kube: Kube, namespace: str, desired: Desired, status: RolloutStatus, observed: Observed
) -> Observed:
    job_name = wants_job_result(desired, status, observed)
    if job_name is None:
        return observed
    pods = await kube.list("v1", "Pod", namespace, f"{JOB_NAME_LABEL}={job_name}")
    message, exit_code = message_from_pods(pods)
    if message is None and exit_code is None:
        job = observed.jobs[desired.revision]
        # The pods may already be gone (TTL, node loss): the Job's own state is all there is.
        result = parse_termination_message(None, 0 if job.state == "succeeded" else 1)
    else:
        result = parse_termination_message(message, exit_code)
    return Observed(
        jobs=observed.jobs,
        deployments=observed.deployments,
        job_result=result,
        missing_apis=observed.missing_apis,
        last_failure=observed.last_failure,
    )


async def measure(
    probes: Probes,
    owner: rendering.Owner,
    *,
    spec: ModelDeploymentSpec,
    desired: Desired,
    status: RolloutStatus,
    observed: Observed,
    manual: Manual,
    now: datetime,
    defaults: SpecDefaults = BUILTIN,
) -> Measurements:
    canary = Track(owner.namespace, owner.name, desired.revision)
    smoke = None
    if smoke_check_due(desired, status, observed):
        smoke = await probes.model_ready(canary, spec.model.name)
    analysis = None
    if analysis_due(desired, status, manual, now) and status.stable_revision:
        limits = spec.rollout.analysis
        since = max(t for t in (status.canary_step_start, status.analysis.time) if t is not None)
        own = spec.monitoring.prometheus_auth
        own_ref = PrometheusAuthRef(owner.namespace, own.secret_name, own.type) if own is not None else None
        request = AnalysisRequest(
            prometheus_url=spec.monitoring.prometheus_url,
            auth=prometheus_auth_for(spec.monitoring.prometheus_url, own_ref, defaults),
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
        analysis = await probes.analyze(request)
    return Measurements(smoke=smoke, analysis=analysis)
