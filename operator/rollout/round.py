"""One decision in the making: the inputs, the status as it evolves, and what the round has noted
(conditions, Events, annotations acted on, Jobs to remove, when to look again). Transition functions in
`transitions` and `canary` take a `Round` and move it; `Round.finish` freezes the result."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from modeldeploy.conditions import (
    ConditionStatus,
    ConditionType,
    ConditionUpdate,
    Phase,
    Reason,
    find_condition,
    merge_conditions,
)
from modeldeploy.rollout.actions import RecordEvent
from modeldeploy.rollout.inputs import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    OPTIONAL_APIS,
    Desired,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
)
from modeldeploy.rollout.status import RolloutStatus

EventType = Literal["Normal", "Warning"]


@dataclass
class Round:
    desired: Desired
    before: RolloutStatus
    observed: Observed
    manual: Manual
    measured: Measurements
    now: datetime
    status: RolloutStatus = field(init=False)
    events: list[RecordEvent] = field(default_factory=list)
    requeue: list[timedelta] = field(default_factory=list)
    notes: dict[ConditionType, tuple[ConditionStatus, Reason, str]] = field(default_factory=dict)
    consumed: list[str] = field(default_factory=list)  # one-shot annotations acted on (removed after)
    kept: set[str] = field(default_factory=set)  # one-shot annotations still acting (not removed yet)
    delete_jobs: list[str] = field(default_factory=list)  # finished Jobs a retry must remove first

    def __post_init__(self) -> None:
        self.status = self.before

    def update(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def event(self, kind: EventType, reason: Reason, message: str) -> None:
        self.events.append(RecordEvent(kind, reason, message))

    def note(self, kind: ConditionType, state: ConditionStatus, reason: Reason, message: str) -> None:
        self.notes[kind] = (state, reason, message)

    def consume(self, key: str) -> None:
        """Promote, abort and retry act once: the operator removes the annotation it acted on."""
        if key not in self.consumed:
            self.consumed.append(key)

    def consume_later(self, key: str) -> None:
        """The annotation is being acted on over several rounds: it stays, and is not 'ignored'."""
        self.kept.add(key)

    def ignore_one_shot_annotations(self, why: str) -> None:
        for key, present in (
            (ANNOTATION_PROMOTE, self.manual.promote),
            (ANNOTATION_ABORT, self.manual.abort),
            (ANNOTATION_RETRY, self.manual.retry),
        ):
            if present and key not in self.consumed and key not in self.kept:
                self.consume(key)
                self.event("Normal", Reason.MANUAL_ANNOTATION_IGNORED, f"{key} ignored: {why}")

    def deployment(self, revision: str | None) -> ObservedDeployment | None:
        return self.observed.deployments.get(revision) if revision else None

    def stable_available(self, revision: str) -> bool:
        deployment = self.deployment(revision)
        return deployment is not None and deployment.available_replicas >= 1

    def step_label(self) -> str:
        return f"{(self.status.canary_step or 0) + 1}/{len(self.desired.steps)}"

    def note_serving(self, stable: str) -> None:
        if self.stable_available(stable):
            self.note(ConditionType.READY, "True", Reason.AVAILABLE, f"revision {stable} is serving")
        else:
            self.note(
                ConditionType.READY, "False", Reason.UNAVAILABLE, f"revision {stable} has no available pod"
            )

    def note_canary(self, message: str) -> None:
        self.note_serving(self.status.stable_revision or "")
        reason = Reason.CANARY_STARTING if self.status.canary_step is None else Reason.CANARY_PROGRESSING
        self.note(ConditionType.PROGRESSING, "True", reason, message)
        self.note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")

    def optimization_state(self, revision: str) -> str | None:
        if self.status.optimization.get("revision") != revision:
            return None
        state = self.status.optimization.get("state")
        return str(state) if state else None

    def finish(self) -> RolloutStatus:
        """The final status (conditions merged, generation observed); adds the phase-change Event."""
        status, desired = self.status, self.desired
        if ConditionType.OPTIMIZED not in self.notes:
            self.notes[ConditionType.OPTIMIZED] = self._optimized_note()
        self.notes[ConditionType.CHILDREN_APPLIED] = self._children_note()
        failure = self.observed.last_failure
        self.notes[ConditionType.RECONCILED] = (
            (
                "False",
                Reason.RECONCILE_FAILED,
                f"the last reconcile failed and is retried with backoff: {failure}",
            )
            if failure
            else ("True", Reason.AS_EXPECTED, "")
        )
        updates = [ConditionUpdate(kind, *note) for kind, note in self.notes.items()]
        status = replace(
            status,
            observed_generation=desired.generation,
            conditions=merge_conditions(status.conditions, updates, desired.generation, self.now),
        )
        if status.phase != self.before.phase and not self.events:
            kind: EventType = "Warning" if status.phase in (Phase.DEGRADED, Phase.FAILED) else "Normal"
            progressing = find_condition(status.conditions, ConditionType.PROGRESSING)
            reason = progressing.reason if progressing is not None else Reason.ACCEPTED
            self.event(kind, reason, f"phase {self.before.phase} → {status.phase}")
        return status

    def _children_note(self) -> tuple[ConditionStatus, Reason, str]:
        missing = self.observed.missing_apis
        if not missing:
            return ("True", Reason.AS_EXPECTED, "")
        hints = [
            f"{kind} skipped: install {OPTIONAL_APIS[kind][0]} or set {OPTIONAL_APIS[kind][1]}"
            if kind in OPTIONAL_APIS
            else f"{kind} skipped: its API is not installed"
            for kind in missing
        ]
        return ("False", Reason.API_NOT_INSTALLED, "; ".join(hints))

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


def hold_rolled_back(r: Round) -> None:
    """The newest revision was rolled back: stable serves; a retry annotation or a spec change moves on."""
    stable = r.status.stable_revision
    assert stable is not None
    r.ignore_one_shot_annotations(f"revision {r.desired.revision} was rolled back; change the spec")
    reason = str(r.status.last_rollback.get("reason", "rolled back"))
    message = (
        f"revision {r.desired.revision} was rolled back ({reason}); it is not retried until the spec"
        f' changes or {ANNOTATION_RETRY}: "true" is set'
    )
    r.update(phase=Phase.DEGRADED)
    r.note_serving(stable)
    r.note(ConditionType.PROGRESSING, "False", Reason.ROLLED_BACK, message)
    r.note(ConditionType.DEGRADED, "True", Reason.ROLLED_BACK, message)


def analysis_reference(status: RolloutStatus) -> datetime:
    """Analyses are `interval` apart, counted from the later of the step start and the last analysis."""
    start = status.canary_step_start or status.analysis.time or datetime.min.replace(tzinfo=UTC)
    last = status.analysis.time
    return start if last is None else max(start, last)


def duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (
        (f"{hours}h" if hours else "")
        + (f"{minutes}m" if minutes else "")
        + (f"{seconds}s" if seconds else "")
    )
    return text or "0s"
