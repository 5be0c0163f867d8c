"""The reconcile decision: (desired, status, observed children, manual annotations, measurements, now)
→ (actions, new status). Pure: no I/O, no clock, no randomness, so a restarted operator resumes from the
stored status and every branch is a line in a transition table (tests/test_rollout.py).

Lifecycle of a revision (see docs/operator.md):
  new revision → optimization Job → (first revision) stable, or (later) canary
  canary: Deployment available + Triton model READY → steps[0] … each `interval` an analysis verdict:
  pass → next step (the last → promote), wait → stay (until progressDeadline), fail → count
  (failureThreshold → roll back), error → count (maxConsecutiveErrors → roll back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from modeldeploy.conditions import (
    Condition,
    ConditionStatus,
    ConditionType,
    ConditionUpdate,
    Phase,
    Reason,
    find_condition,
    format_time,
    merge_conditions,
    parse_time,
)
from modeldeploy.revision import compute_revision
from modeldeploy.spec import ModelDeploymentSpec
from modeldeploy.traffic import Routing, split_replicas

Track = Literal["stable", "canary"]
_A = TypeVar("_A")
VerdictKind = Literal["pass", "fail", "wait", "error"]

ANNOTATION_PROMOTE = "modeldeploy.io/promote"
ANNOTATION_ABORT = "modeldeploy.io/abort"
ANNOTATION_PAUSE = "modeldeploy.io/pause"


# ---------------------------------------------------------------------------------------------- inputs


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


@dataclass(frozen=True)
class Manual:
    promote: bool = False
    abort: bool = False
    pause: bool = False

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str]) -> Manual:
        def flag(key: str) -> bool:
            return str(annotations.get(key, "")).strip().lower() == "true"

        return cls(
            promote=flag(ANNOTATION_PROMOTE), abort=flag(ANNOTATION_ABORT), pause=flag(ANNOTATION_PAUSE)
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


# ---------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class AnalysisStatus:
    time: datetime | None = None
    verdict: VerdictKind | None = None
    reason: str = ""
    failed_checks: int = 0  # failed analyses of the current canary
    errors: int = 0  # consecutive analyses that could not be measured
    checks: tuple[str, ...] = ()  # names of the checks that failed last time
    stable: Mapping[str, float | None] = field(default_factory=dict)
    canary: Mapping[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any] | None:
        if self.time is None:
            return None
        return {
            "time": format_time(self.time),
            "verdict": self.verdict,
            "reason": self.reason,
            "failedChecks": self.failed_checks,
            "errors": self.errors,
            "checks": list(self.checks),
            "stable": dict(self.stable),
            "canary": dict(self.canary),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> AnalysisStatus:
        if not raw:
            return cls()
        verdict = raw.get("verdict")
        return cls(
            time=parse_time(raw.get("time")),
            verdict=verdict if verdict in ("pass", "fail", "wait", "error") else None,
            reason=str(raw.get("reason", "")),
            failed_checks=int(raw.get("failedChecks", 0)),
            errors=int(raw.get("errors", 0)),
            checks=tuple(raw.get("checks", ())),
            stable=dict(raw.get("stable") or {}),
            canary=dict(raw.get("canary") or {}),
        )


@dataclass(frozen=True)
class RolloutStatus:
    """Typed view of `.status` (camelCase in the object; see `to_dict`)."""

    observed_generation: int = 0
    phase: Phase = Phase.PENDING
    conditions: tuple[Condition, ...] = ()
    stable_revision: str | None = None
    canary_revision: str | None = None
    canary_weight: int = 0
    canary_step: int | None = None  # None: canary not ready yet, no traffic step started
    canary_step_start: datetime | None = None  # when the current step (or the canary) started
    optimization: Mapping[str, Any] = field(default_factory=dict)
    analysis: AnalysisStatus = field(default_factory=AnalysisStatus)
    last_rollback: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The status as stored; `None` values delete the key under a merge patch."""
        return {
            "observedGeneration": self.observed_generation,
            "phase": str(self.phase),
            "conditions": [condition.to_dict() for condition in self.conditions],
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "canaryWeight": self.canary_weight,
            "canaryStep": self.canary_step,
            "canaryStepStartTime": format_time(self.canary_step_start) if self.canary_step_start else None,
            "optimization": dict(self.optimization) or None,
            "analysis": self.analysis.to_dict(),
            "lastRollback": dict(self.last_rollback) or None,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RolloutStatus:
        raw = raw or {}
        try:
            phase = Phase(raw.get("phase", Phase.PENDING))
        except ValueError:
            phase = Phase.PENDING
        conditions = tuple(
            condition
            for condition in (Condition.from_dict(item) for item in raw.get("conditions") or ())
            if condition is not None
        )
        step = raw.get("canaryStep")
        return cls(
            observed_generation=int(raw.get("observedGeneration") or 0),
            phase=phase,
            conditions=conditions,
            stable_revision=raw.get("stableRevision") or None,
            canary_revision=raw.get("canaryRevision") or None,
            canary_weight=int(raw.get("canaryWeight") or 0),
            canary_step=int(step) if step is not None else None,
            canary_step_start=parse_time(raw.get("canaryStepStartTime")),
            optimization=dict(raw.get("optimization") or {}),
            analysis=AnalysisStatus.from_dict(raw.get("analysis")),
            last_rollback=dict(raw.get("lastRollback") or {}),
        )


# ---------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class ApplyJob:
    revision: str


@dataclass(frozen=True)
class ApplyDeployment:
    revision: str
    track: Track
    replicas: int | None  # None: an autoscaler owns spec.replicas


@dataclass(frozen=True)
class ApplyTrafficObjects:
    """Services, autoscaler (always on the stable revision), PodMonitor and HTTPRoute."""

    stable_revision: str
    canary_revision: str | None
    canary_weight: int


@dataclass(frozen=True)
class HandOffReplicas:
    """Before the operator stops setting replicas of a Deployment, give the count to another field
    manager so that server-side apply keeps it (instead of resetting it to 1) until the autoscaler acts."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class DeleteDeployment:
    name: str


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class ClearAnnotation:
    key: str


@dataclass(frozen=True)
class RecordEvent:
    type: Literal["Normal", "Warning"]
    reason: Reason
    message: str


Action = (
    ApplyJob
    | ApplyDeployment
    | ApplyTrafficObjects
    | HandOffReplicas
    | DeleteDeployment
    | DeleteJob
    | ClearAnnotation
    | RecordEvent
)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    status: RolloutStatus
    requeue_after: timedelta | None  # when the clock alone will change the decision next

    def of_type(self, kind: type[_A]) -> list[_A]:
        return [action for action in self.actions if isinstance(action, kind)]


# ---------------------------------------------------------------------------------------------- decision


def analysis_due(desired: Desired, status: RolloutStatus, manual: Manual, now: datetime) -> bool:
    """Whether the handler should measure the canary against stable before calling `decide`."""
    if desired.strategy != "canary" or manual.pause or manual.abort or manual.promote:
        return False
    if status.canary_revision != desired.revision or status.canary_step is None:
        return False
    return now >= _analysis_reference(status) + desired.interval


def smoke_check_due(desired: Desired, status: RolloutStatus, observed: Observed) -> bool:
    """Whether the canary's pods are up and its Triton model readiness should be checked now."""
    if status.canary_revision != desired.revision or status.canary_step is not None:
        return False
    deployment = observed.deployments.get(desired.revision)
    return deployment is not None and _available(deployment)


def wants_job_result(desired: Desired, status: RolloutStatus, observed: Observed) -> str | None:
    """Name of the finished Job whose termination message must be read (once per revision)."""
    job = observed.jobs.get(desired.revision)
    if job is None or job.state == "running":
        return None
    if status.optimization.get("revision") == desired.revision and status.optimization.get("state") in (
        "Succeeded",
        "Failed",
    ):
        return None
    return job.name


def decide(
    desired: Desired,
    status: RolloutStatus,
    observed: Observed,
    *,
    manual: Manual,
    measured: Measurements,
    now: datetime,
) -> Decision:
    return _Reconcile(desired, status, observed, manual=manual, measured=measured, now=now).run()


def decide_invalid_spec(status: RolloutStatus, generation: int, message: str, now: datetime) -> RolloutStatus:
    """Status for a spec the operator refuses: nothing new is created; a stable revision keeps serving."""
    serving = status.stable_revision is not None
    phase = Phase.DEGRADED if serving else Phase.FAILED
    updates = [
        ConditionUpdate(
            ConditionType.READY,
            "True" if serving else "False",
            Reason.AVAILABLE if serving else Reason.INVALID_SPEC,
            f"revision {status.stable_revision} keeps serving" if serving else message,
        ),
        ConditionUpdate(ConditionType.PROGRESSING, "False", Reason.INVALID_SPEC, message),
        ConditionUpdate(ConditionType.DEGRADED, "True", Reason.INVALID_SPEC, message),
    ]
    return replace(
        status,
        observed_generation=generation,
        phase=phase,
        conditions=merge_conditions(status.conditions, updates, generation, now),
    )


class _Reconcile:
    """One decision. Mutable only while it is being made; `run` returns a frozen `Decision`."""

    def __init__(
        self,
        desired: Desired,
        status: RolloutStatus,
        observed: Observed,
        *,
        manual: Manual,
        measured: Measurements,
        now: datetime,
    ) -> None:
        self.desired = desired
        self.before = status
        self.status = status
        self.observed = observed
        self.manual = manual
        self.measured = measured
        self.now = now
        self.actions: list[Action] = []
        self.deletions: list[Action] = []
        self.events: list[RecordEvent] = []
        self.requeue: list[timedelta] = []
        self.notes: dict[ConditionType, tuple[ConditionStatus, Reason, str]] = {}
        self.consumed: set[str] = set()  # one-shot annotations already acted on this round

    # -- entry

    def run(self) -> Decision:
        self._retire_superseded()
        status, revision = self.status, self.desired.revision
        if revision == status.stable_revision:
            self._steady()
        elif revision == status.canary_revision:
            self._canary()
        elif revision == status.last_rollback.get("revision") and status.stable_revision:
            self._hold_rolled_back()
        elif self._optimization_state(revision) == "Failed":
            self._hold_failed_optimization()
        else:
            self._optimize()
        return self._finish()

    # -- phases

    def _retire_superseded(self) -> None:
        """A spec change mid-rollout abandons the canary and any Job of another revision."""
        status, revision = self.status, self.desired.revision
        canary = status.canary_revision
        if canary and canary != revision:
            self._delete_deployment(canary)
            self.status = replace(
                status,
                canary_revision=None,
                canary_step=None,
                canary_weight=0,
                canary_step_start=None,
                analysis=AnalysisStatus(),
            )
            self._event(
                "Normal", Reason.CANARY_SUPERSEDED, f"canary {canary} superseded by revision {revision}"
            )
        for job in self.observed.jobs.values():
            if job.revision != revision:
                self.deletions.append(DeleteJob(job.name))

    def _steady(self) -> None:
        stable = self.desired.revision
        self._serve_stable_only(stable)
        self._ignore_one_shot_annotations("no rollout is in progress")
        if self._stable_available(stable):
            self.status = replace(self.status, phase=Phase.READY)
            self._note(ConditionType.READY, "True", Reason.AVAILABLE, f"revision {stable} is serving")
            self._note(ConditionType.PROGRESSING, "False", Reason.IDLE, f"revision {stable} is rolled out")
        else:
            self.status = replace(self.status, phase=Phase.DEPLOYING)
            self._note(
                ConditionType.READY,
                "False",
                Reason.DEPLOYING,
                f"waiting for revision {stable} to be available",
            )
            self._note(ConditionType.PROGRESSING, "True", Reason.DEPLOYING, f"deploying revision {stable}")
        self._note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")

    def _hold_rolled_back(self) -> None:
        stable = self.status.stable_revision
        assert stable is not None
        self._serve_stable_only(stable)
        self._ignore_one_shot_annotations(
            f"revision {self.desired.revision} was rolled back; change the spec"
        )
        reason = str(self.status.last_rollback.get("reason", "rolled back"))
        message = (
            f"revision {self.desired.revision} was rolled back ({reason});"
            " it is not retried until the spec changes"
        )
        self.status = replace(self.status, phase=Phase.DEGRADED)
        self._note_serving(stable)
        self._note(ConditionType.PROGRESSING, "False", Reason.ROLLED_BACK, message)
        self._note(ConditionType.DEGRADED, "True", Reason.ROLLED_BACK, message)

    def _hold_failed_optimization(self) -> None:
        error = str(self.status.optimization.get("error", "the optimization Job failed"))
        message = f"optimizing revision {self.desired.revision} failed: {error}"
        self._ignore_one_shot_annotations("the newest revision failed to optimize; change the spec")
        self._note(ConditionType.OPTIMIZED, "False", Reason.OPTIMIZATION_FAILED, message)
        self._note(ConditionType.PROGRESSING, "False", Reason.OPTIMIZATION_FAILED, message)
        self._note(ConditionType.DEGRADED, "True", Reason.OPTIMIZATION_FAILED, message)
        stable = self.status.stable_revision
        if stable:
            self._serve_stable_only(stable)
            self.status = replace(self.status, phase=Phase.DEGRADED)
            self._note_serving(stable)
        else:
            self.status = replace(self.status, phase=Phase.FAILED)
            self._note(ConditionType.READY, "False", Reason.OPTIMIZATION_FAILED, message)

    def _optimize(self) -> None:
        revision, stable = self.desired.revision, self.status.stable_revision
        if self.manual.abort and stable:
            self._consume(ANNOTATION_ABORT)
            job = self.observed.jobs.get(revision)
            if job is not None:
                self.deletions.append(DeleteJob(job.name))
            self._roll_back_revision(revision, "aborted by annotation during optimization", Reason.ABORTED)
            self._hold_rolled_back()
            return
        if self._optimization_state(revision) != "Succeeded":
            job = self.observed.jobs.get(revision)
            if job is None or job.state == "running":
                self._optimizing(revision, job)
                return
            self._record_job_result(revision, job)
            if job.state == "failed" or not self._job_succeeded(job):
                self._hold_failed_optimization()
                return
        if stable is None:
            # The first revision has nothing to compare with: it becomes stable directly.
            self.status = replace(self.status, stable_revision=revision)
            self._steady()
            return
        self.status = replace(
            self.status,
            canary_revision=revision,
            canary_step=None,
            canary_weight=0,
            canary_step_start=self.now,
            analysis=AnalysisStatus(),
        )
        self._event("Normal", Reason.CANARY_STARTING, f"starting canary {revision} next to stable {stable}")
        self._canary()

    def _optimizing(self, revision: str, job: ObservedJob | None) -> None:
        self.actions.append(ApplyJob(revision))
        self._ignore_one_shot_annotations(f"revision {revision} is still optimizing")
        self.status = replace(
            self.status,
            phase=Phase.OPTIMIZING,
            optimization={
                "revision": revision,
                "job": job.name if job else self.desired.job_name(revision),
                "state": "Running",
            },
        )
        message = f"optimization Job {self.desired.job_name(revision)} is running for revision {revision}"
        self._note(ConditionType.OPTIMIZED, "False", Reason.OPTIMIZING, message)
        self._note(ConditionType.PROGRESSING, "True", Reason.OPTIMIZING, message)
        self._note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")
        stable = self.status.stable_revision
        if stable:
            self._serve_stable_only(stable, delete_others=False)
            self._note_serving(stable)
        else:
            self._note(ConditionType.READY, "False", Reason.OPTIMIZING, "no revision is serving yet")

    def _canary(self) -> None:
        desired, status, manual = self.desired, self.status, self.manual
        canary, stable = desired.revision, status.stable_revision
        assert stable is not None
        deployment = self.observed.deployments.get(canary)
        if manual.abort:
            self._consume(ANNOTATION_ABORT)
            self._roll_back("aborted by annotation modeldeploy.io/abort", Reason.ABORTED)
            return
        # Without an available canary pod the promote annotation stays: it acts as soon as there is one.
        if manual.promote and deployment is not None and deployment.available_replicas >= 1:
            self._consume(ANNOTATION_PROMOTE)
            self._promote("promoted by annotation modeldeploy.io/promote")
            return
        if status.canary_step is None:
            self._canary_starting(deployment)
        else:
            self._canary_stepping()

    def _canary_starting(self, deployment: ObservedDeployment | None) -> None:
        desired, canary = self.desired, self.desired.revision
        smoke = self.measured.smoke
        if self.before.phase == Phase.PAUSED and not self.manual.pause:
            self.status = replace(self.status, canary_step_start=self.now)
            self._event("Normal", Reason.RESUMED, f"canary {canary} resumed")
        if deployment is not None and _available(deployment) and smoke is not None and smoke.ok:
            if desired.strategy == "immediate" or not desired.steps:
                self._promote("strategy immediate: canary is ready")
                return
            self.status = replace(
                self.status, canary_step=0, canary_weight=desired.steps[0], canary_step_start=self.now
            )
            self._event(
                "Normal",
                Reason.CANARY_PROGRESSING,
                f"canary {canary} is ready; step 1 at {desired.steps[0]}%",
            )
            self._canary_stepping()
            return
        if self.manual.pause:
            self._paused(f"canary {canary} is paused before its first step")
            return
        started = self.status.canary_step_start or self.now
        if self.now >= started + desired.progress_deadline:
            why = smoke.reason if smoke is not None and not smoke.ok else "its Deployment is not available"
            self._roll_back(
                f"canary did not become ready within progressDeadline"
                f" {_duration(desired.progress_deadline)}: {why}",
                Reason.PROGRESS_DEADLINE_EXCEEDED,
            )
            return
        self.requeue.append(started + desired.progress_deadline - self.now)
        self._serve_canary(weight=0)
        self.status = replace(self.status, phase=Phase.CANARY)
        message = f"waiting for canary {canary} to be available and its model READY"
        if smoke is not None and not smoke.ok:
            message += f" ({smoke.reason})"
        self._note_canary(message)

    def _canary_stepping(self) -> None:
        desired, canary = self.desired, self.desired.revision
        if self.manual.pause:
            self._paused(f"canary {canary} is paused at step {self._step_label()}")
            return
        if self.before.phase == Phase.PAUSED and self.before.canary_step is not None:
            # The deadline measures progress; time spent paused is not the canary's fault.
            self.status = replace(self.status, canary_step_start=self.now)
            self._event("Normal", Reason.RESUMED, f"canary {canary} resumed at step {self._step_label()}")
        outcome = self.measured.analysis
        if outcome is not None and self._apply_verdict(outcome):
            return
        started = self.status.canary_step_start or self.now
        if self.now >= started + desired.progress_deadline:
            self._roll_back(
                f"no progress within progressDeadline {_duration(desired.progress_deadline)}"
                f" at step {self._step_label()}: {self.status.analysis.reason or 'no verdict'}",
                Reason.PROGRESS_DEADLINE_EXCEEDED,
            )
            return
        next_analysis = _analysis_reference(self.status) + desired.interval
        self.requeue.append(
            max(min(next_analysis, started + desired.progress_deadline) - self.now, timedelta(0))
        )
        self._serve_canary(weight=self.status.canary_weight)
        self.status = replace(self.status, phase=Phase.CANARY)
        self._note_canary(
            f"canary {canary} at step {self._step_label()} ({self.status.canary_weight}%)"
            + (f"; last analysis: {self.status.analysis.reason}" if self.status.analysis.reason else "")
        )

    def _apply_verdict(self, outcome: AnalysisOutcome) -> bool:
        """Record the verdict; True when it ended the canary (promoted or rolled back)."""
        desired, previous = self.desired, self.status.analysis
        failed = previous.failed_checks + (1 if outcome.verdict == "fail" else 0)
        errors = previous.errors + 1 if outcome.verdict == "error" else 0
        self.status = replace(
            self.status,
            analysis=AnalysisStatus(
                time=self.now,
                verdict=outcome.verdict,
                reason=outcome.reason,
                failed_checks=failed,
                errors=errors,
                checks=outcome.failed_checks,
                stable=outcome.stable,
                canary=outcome.canary,
            ),
        )
        if outcome.verdict == "pass":
            step = (self.status.canary_step or 0) + 1
            if step >= len(desired.steps):
                self._promote(f"analysis passed at the last step: {outcome.reason}")
                return True
            self.status = replace(
                self.status, canary_step=step, canary_weight=desired.steps[step], canary_step_start=self.now
            )
            self._event(
                "Normal",
                Reason.CANARY_STEP_PASSED,
                f"analysis passed ({outcome.reason});"
                f" step {step + 1}/{len(desired.steps)} at {desired.steps[step]}%",
            )
        elif outcome.verdict == "fail":
            self._event(
                "Warning",
                Reason.ANALYSIS_FAILED,
                f"analysis failed ({failed}/{desired.failure_threshold}): {outcome.reason}",
            )
            if failed >= desired.failure_threshold:
                self._roll_back(f"analysis failed {failed} times: {outcome.reason}", Reason.ANALYSIS_FAILED)
                return True
        elif outcome.verdict == "error":
            self._event(
                "Warning",
                Reason.ANALYSIS_ERROR,
                f"analysis could not measure ({errors}/{desired.max_consecutive_errors}): {outcome.reason}",
            )
            if errors >= desired.max_consecutive_errors:
                self._roll_back(
                    f"{errors} consecutive analysis errors: {outcome.reason}", Reason.ANALYSIS_ERROR
                )
                return True
        return False

    def _paused(self, message: str) -> None:
        if self.before.phase != Phase.PAUSED:
            self._event("Normal", Reason.PAUSED, message)
        self._serve_canary(weight=self.status.canary_weight)
        self.status = replace(self.status, phase=Phase.PAUSED)
        self._note_serving(self.status.stable_revision or "")
        self._note(
            ConditionType.PROGRESSING,
            "Unknown",
            Reason.PAUSED,
            message + f" (remove {ANNOTATION_PAUSE} to resume)",
        )
        self._note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")

    def _promote(self, why: str) -> None:
        desired, status = self.desired, self.status
        canary, old = desired.revision, status.stable_revision
        assert old is not None
        if desired.autoscaled:
            fleet = self._observed_replicas(old) or desired.serving_replicas
            self.actions.append(HandOffReplicas(canary, max(fleet, 1)))
        self.actions.append(
            ApplyDeployment(canary, "stable", None if desired.autoscaled else desired.serving_replicas)
        )
        self.actions.append(ApplyTrafficObjects(canary, None, 0))
        self._delete_deployment(old)
        self.status = replace(
            status,
            phase=Phase.READY,
            stable_revision=canary,
            canary_revision=None,
            canary_step=None,
            canary_weight=0,
            canary_step_start=None,
        )
        self._event("Normal", Reason.PROMOTED, f"revision {canary} promoted to stable, {old} retired: {why}")
        self._note(ConditionType.READY, "True", Reason.AVAILABLE, f"revision {canary} is serving")
        self._note(ConditionType.PROGRESSING, "False", Reason.PROMOTED, f"revision {canary} promoted: {why}")
        self._note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")

    def _roll_back(self, why: str, cause: Reason) -> None:
        canary = self.desired.revision
        self._roll_back_revision(canary, why, cause)
        self._delete_deployment(canary)
        self._hold_rolled_back()

    def _roll_back_revision(self, revision: str, why: str, cause: Reason) -> None:
        self.status = replace(
            self.status,
            canary_revision=None,
            canary_step=None,
            canary_weight=0,
            canary_step_start=None,
            last_rollback={
                "revision": revision,
                "reason": why,
                "cause": str(cause),
                "time": format_time(self.now),
            },
        )
        self._event("Warning", Reason.ROLLED_BACK, f"revision {revision} rolled back: {why}")

    # -- children

    def _serve_stable_only(self, stable: str, delete_others: bool = True) -> None:
        desired = self.desired
        self.actions.append(
            ApplyDeployment(stable, "stable", None if desired.autoscaled else desired.serving_replicas)
        )
        self.actions.append(ApplyTrafficObjects(stable, None, 0))
        if delete_others:
            for revision in self.observed.deployments:
                if revision != stable:
                    self._delete_deployment(revision)

    def _serve_canary(self, weight: int) -> None:
        desired, status = self.desired, self.status
        stable, canary = status.stable_revision, desired.revision
        assert stable is not None
        sizing_weight = 100 if desired.strategy == "immediate" else (weight or desired.steps[0])
        split = split_replicas(
            sizing_weight,
            desired.routing,
            desired.serving_replicas,
            desired.autoscaled,
            self._observed_replicas(stable),
        )
        if desired.strategy == "immediate":
            split = replace(split, stable=None if desired.autoscaled else desired.serving_replicas)
        self.actions.append(ApplyDeployment(stable, "stable", split.stable))
        self.actions.append(ApplyDeployment(canary, "canary", split.canary))
        self.actions.append(ApplyTrafficObjects(stable, canary, weight))
        for revision in self.observed.deployments:
            if revision not in (stable, canary):
                self._delete_deployment(revision)

    def _delete_deployment(self, revision: str) -> None:
        deployment = self.observed.deployments.get(revision)
        if deployment is not None and DeleteDeployment(deployment.name) not in self.deletions:
            self.deletions.append(DeleteDeployment(deployment.name))

    # -- bits

    def _optimization_state(self, revision: str) -> str | None:
        if self.status.optimization.get("revision") != revision:
            return None
        state = self.status.optimization.get("state")
        return str(state) if state else None

    def _record_job_result(self, revision: str, job: ObservedJob) -> None:
        result = self.observed.job_result
        record: dict[str, Any] = {"revision": revision, "job": job.name}
        if result is not None:
            record.update(result.summary)
        if job.started and job.finished:
            record["durationSeconds"] = round((job.finished - job.started).total_seconds(), 3)
        if self._job_succeeded(job):
            record["state"] = "Succeeded"
            record["cached"] = bool(result.cached) if result is not None else False
            how = "reused cached artifacts" if record["cached"] else "optimized"
            self._event(
                "Normal",
                Reason.ARTIFACTS_CACHED if record["cached"] else Reason.OPTIMIZED,
                f"revision {revision} {how}",
            )
        else:
            record["state"] = "Failed"
            record["error"] = (
                (result.error if result is not None and result.error else "")
                or job.reason
                or "the Job failed"
            )
            self._event(
                "Warning",
                Reason.OPTIMIZATION_FAILED,
                f"optimizing revision {revision} failed: {record['error']}",
            )
        self.status = replace(self.status, optimization=record)

    def _job_succeeded(self, job: ObservedJob) -> bool:
        # A Job that exited 0 but wrote an error message is a failure (the message is the contract).
        result = self.observed.job_result
        return job.state == "succeeded" and (result is None or result.ok)

    def _ignore_one_shot_annotations(self, why: str) -> None:
        for key, present in (
            (ANNOTATION_PROMOTE, self.manual.promote),
            (ANNOTATION_ABORT, self.manual.abort),
        ):
            if present and key not in self.consumed:
                self._consume(key)
                self._event("Normal", Reason.MANUAL_ANNOTATION_IGNORED, f"{key} ignored: {why}")

    def _consume(self, key: str) -> None:
        """Promote and abort act once: the operator removes the annotation it acted on."""
        if key not in self.consumed:
            self.consumed.add(key)
            self.actions.append(ClearAnnotation(key))

    def _stable_available(self, revision: str) -> bool:
        deployment = self.observed.deployments.get(revision)
        return deployment is not None and deployment.available_replicas >= 1

    def _observed_replicas(self, revision: str) -> int | None:
        deployment = self.observed.deployments.get(revision)
        return deployment.replicas if deployment is not None else None

    def _step_label(self) -> str:
        return f"{(self.status.canary_step or 0) + 1}/{len(self.desired.steps)}"

    def _note(self, kind: ConditionType, state: ConditionStatus, reason: Reason, message: str) -> None:
        self.notes[kind] = (state, reason, message)

    def _note_serving(self, stable: str) -> None:
        if self._stable_available(stable):
            self._note(ConditionType.READY, "True", Reason.AVAILABLE, f"revision {stable} is serving")
        else:
            self._note(
                ConditionType.READY, "False", Reason.UNAVAILABLE, f"revision {stable} has no available pod"
            )

    def _note_canary(self, message: str) -> None:
        self._note_serving(self.status.stable_revision or "")
        reason = Reason.CANARY_STARTING if self.status.canary_step is None else Reason.CANARY_PROGRESSING
        self._note(ConditionType.PROGRESSING, "True", reason, message)
        self._note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")

    def _event(self, kind: Literal["Normal", "Warning"], reason: Reason, message: str) -> None:
        self.events.append(RecordEvent(kind, reason, message))

    def _finish(self) -> Decision:
        status, desired = self.status, self.desired
        if ConditionType.OPTIMIZED not in self.notes:
            self.notes[ConditionType.OPTIMIZED] = self._optimized_note()
        updates = [ConditionUpdate(kind, *note) for kind, note in self.notes.items()]
        status = replace(
            status,
            observed_generation=desired.generation,
            conditions=merge_conditions(status.conditions, updates, desired.generation, self.now),
        )
        events = list(self.events)
        if status.phase != self.before.phase and not events:
            kind: Literal["Normal", "Warning"] = (
                "Warning" if status.phase in (Phase.DEGRADED, Phase.FAILED) else "Normal"
            )
            progressing = find_condition(status.conditions, ConditionType.PROGRESSING)
            reason = progressing.reason if progressing is not None else Reason.ACCEPTED
            events.append(RecordEvent(kind, reason, f"phase {self.before.phase} → {status.phase}"))
        requeue = min(self.requeue) if self.requeue else None
        return Decision(
            actions=(*self.actions, *self.deletions, *events), status=status, requeue_after=requeue
        )

    def _optimized_note(self) -> tuple[ConditionStatus, Reason, str]:
        record = self.status.optimization
        revision = self.desired.revision
        if record.get("revision") == revision and record.get("state") == "Succeeded":
            cached = bool(record.get("cached"))
            return (
                "True",
                Reason.ARTIFACTS_CACHED if cached else Reason.OPTIMIZED,
                f"revision {revision} {'reused cached artifacts' if cached else 'optimized'}",
            )
        return ("True", Reason.OPTIMIZED, f"revision {revision} is optimized")


def _available(deployment: ObservedDeployment) -> bool:
    wanted = deployment.replicas if deployment.replicas is not None else 1
    return deployment.available_replicas >= max(wanted, 1)


def _analysis_reference(status: RolloutStatus) -> datetime:
    """Analyses are `interval` apart, counted from the later of the step start and the last analysis."""
    start = status.canary_step_start or status.analysis.time or datetime.min.replace(tzinfo=UTC)
    last = status.analysis.time
    return start if last is None else max(start, last)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (
        (f"{hours}h" if hours else "")
        + (f"{minutes}m" if minutes else "")
        + (f"{seconds}s" if seconds else "")
    )
    return text or "0s"
