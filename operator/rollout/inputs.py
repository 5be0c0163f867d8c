"""What one reconcile knows before it decides: the spec (reduced), the observed children, the manual
annotations and the measurements taken this round. Plain frozen data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from modeldeploy.revision import compute_revision
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.traffic import Routing

Track = Literal["stable", "canary"]
VerdictKind = Literal["pass", "fail", "wait", "error"]

ANNOTATION_PROMOTE = "modeldeploy.io/promote"
ANNOTATION_ABORT = "modeldeploy.io/abort"
ANNOTATION_PAUSE = "modeldeploy.io/pause"
ANNOTATION_RETRY = "modeldeploy.io/retry"

# Optional children and how to get them: what to install, or what to turn off in the spec instead.
OPTIONAL_APIS: dict[str, tuple[str, str]] = {
    "PodMonitor": (
        "the Prometheus Operator CRDs (monitoring.coreos.com/v1)",
        "spec.monitoring.podMonitor: false",
    ),
    "ScaledObject": ("KEDA (keda.sh/v1alpha1)", "spec.autoscaling.engine: hpa or none"),
    "HTTPRoute": (
        "the Gateway API CRDs (gateway.networking.k8s.io/v1)",
        "spec.rollout.trafficRouting.type: replicas",
    ),
}


@dataclass(frozen=True)
class Desired:
    """What the spec asks for, reduced to what the decision needs."""

    name: str
    generation: int
    revision: str
    strategy: Literal["canary", "immediate"] = "canary"
    steps: tuple[int, ...] = (10, 50)
    interval: timedelta = timedelta(minutes=1)
    progress_deadline: timedelta = timedelta(minutes=10)
    failure_threshold: int = 2
    max_consecutive_errors: int = 3
    serving_replicas: int = 1
    autoscaled: bool = False
    routing: Routing = "replicas"

    def job_name(self, revision: str) -> str:
        return f"{self.name}-optimize-{revision}"


def desired_from_spec(spec: ModelDeploymentSpec, name: str, generation: int) -> Desired:
    rollout = spec.rollout
    return Desired(
        name=name,
        generation=generation,
        revision=compute_revision(spec),
        strategy=rollout.strategy,
        steps=tuple(rollout.steps),
        interval=rollout.interval,
        progress_deadline=rollout.progress_deadline,
        failure_threshold=rollout.analysis.failure_threshold,
        max_consecutive_errors=rollout.analysis.max_consecutive_errors,
        serving_replicas=spec.serving.replicas,
        autoscaled=spec.autoscaling.engine != "none",
        routing=rollout.traffic_routing.type,
    )


@dataclass(frozen=True)
class ObservedJob:
    name: str
    revision: str
    state: Literal["running", "succeeded", "failed"]
    reason: str = ""  # the Job's own failure reason (BackoffLimitExceeded: ...) when it failed
    started: datetime | None = None
    finished: datetime | None = None


@dataclass(frozen=True)
class ObservedDeployment:
    name: str
    revision: str
    track: str
    replicas: int | None
    available_replicas: int
    # Whether the operator's field manager holds `spec.replicas` (metadata.managedFields): before the
    # operator stops setting replicas, the count must be handed to another manager or it falls to 1.
    operator_sets_replicas: bool = False


@dataclass(frozen=True)
class JobResult:
    """The optimization Job's termination message, parsed (see `modeldeploy.job_result`)."""

    ok: bool
    cached: bool = False
    summary: Mapping[str, Any] = field(default_factory=dict)  # goes into status.optimization
    error: str = ""


@dataclass(frozen=True)
class Observed:
    jobs: Mapping[str, ObservedJob] = field(default_factory=dict)  # by revision
    deployments: Mapping[str, ObservedDeployment] = field(default_factory=dict)  # by revision
    job_result: JobResult | None = None  # of the desired revision's finished Job, once read
    missing_apis: tuple[str, ...] = ()  # kinds of optional children the cluster does not serve
    last_failure: str = ""  # why the previous reconcile failed (it is retried with backoff), if it did


@dataclass(frozen=True)
class Manual:
    promote: bool = False
    abort: bool = False
    pause: bool = False
    retry: bool = False  # try a rolled-back or failed revision again (acts once, then removed)

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> Manual:
        def flag(key: str) -> bool:
            return str(annotations.get(key, "")).strip().lower() == "true"

        return cls(
            promote=flag(ANNOTATION_PROMOTE),
            abort=flag(ANNOTATION_ABORT),
            pause=flag(ANNOTATION_PAUSE),
            retry=flag(ANNOTATION_RETRY),
        )


@dataclass(frozen=True)
class SmokeOutcome:
    ok: bool
    reason: str


@dataclass(frozen=True)
class AnalysisOutcome:
    verdict: VerdictKind
    reason: str
    failed_checks: tuple[str, ...] = ()
    stable: Mapping[str, float | None] = field(default_factory=dict)
    canary: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Measurements:
    smoke: SmokeOutcome | None = None  # canary's Triton model readiness, when checked this round
    analysis: AnalysisOutcome | None = None  # only when `analysis_due` said so
