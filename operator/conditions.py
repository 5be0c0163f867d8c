"""Status vocabulary of a ModelDeployment: phases, condition types, and the one enum of reasons.

Conditions follow the Kubernetes convention (`metav1.Condition`): a list keyed by `type`, each with
`status`, `reason`, `message`, `lastTransitionTime` and `observedGeneration`. `lastTransitionTime` only
moves when `status` flips, so `kubectl wait` and Argo CD see real transitions, not every reconcile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal


class Phase(StrEnum):
    PENDING = "Pending"
    OPTIMIZING = "Optimizing"
    DEPLOYING = "Deploying"
    CANARY = "Canary"
    PAUSED = "Paused"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    OPTIMIZED = "Optimized"
    # Optional children the cluster cannot take (their API is not installed): False names what to install.
    CHILDREN_APPLIED = "ChildrenApplied"
    # The last reconcile's own health: False names what fails while the operator backs off.
    RECONCILED = "Reconciled"


class Reason(StrEnum):
    """Every reason the operator ever writes into a condition or an Event (one fixed set)."""

    ACCEPTED = "Accepted"
    INVALID_SPEC = "InvalidSpec"
    OPTIMIZING = "Optimizing"
    OPTIMIZED = "OptimizationSucceeded"
    ARTIFACTS_CACHED = "ArtifactsCached"
    OPTIMIZATION_FAILED = "OptimizationFailed"
    DEPLOYING = "Deploying"
    AVAILABLE = "Available"
    UNAVAILABLE = "Unavailable"
    CANARY_STARTING = "CanaryStarting"
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_STEP_PASSED = "CanaryStepPassed"
    CANARY_SUPERSEDED = "CanarySuperseded"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_ERROR = "AnalysisError"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    MANUAL_ANNOTATION_IGNORED = "AnnotationIgnored"
    RETRYING = "Retrying"
    API_NOT_INSTALLED = "APINotInstalled"
    RECONCILE_FAILED = "ReconcileFailed"
    IDLE = "Idle"
    AS_EXPECTED = "AsExpected"


ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str
    last_transition_time: str
    observed_generation: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": str(self.type),
            "status": self.status,
            "reason": str(self.reason),
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
            "observedGeneration": self.observed_generation,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Condition | None:
        """Read a stored condition; one written by someone else (unknown type/reason) is dropped."""
        try:
            return cls(
                type=ConditionType(raw["type"]),
                status=raw.get("status", "Unknown"),
                reason=Reason(raw.get("reason", Reason.ACCEPTED)),
                message=str(raw.get("message", "")),
                last_transition_time=str(raw.get("lastTransitionTime", "")),
                observed_generation=int(raw.get("observedGeneration", 0)),
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class ConditionUpdate:
    """What a condition should say now; `merge_conditions` decides the transition time."""

    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, the form Kubernetes writes (second precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def merge_conditions(
    current: Iterable[Condition],
    updates: Iterable[ConditionUpdate],
    generation: int,
    now: datetime,
) -> tuple[Condition, ...]:
    """Apply `updates` over `current`, keeping `lastTransitionTime` unless the status flips."""
    by_type = {condition.type: condition for condition in current}
    for update in updates:
        previous = by_type.get(update.type)
        moved = previous is None or previous.status != update.status
        by_type[update.type] = Condition(
            type=update.type,
            status=update.status,
            reason=update.reason,
            message=update.message,
            last_transition_time=format_time(now)
            if moved or previous is None
            else previous.last_transition_time,
            observed_generation=generation,
        )
    order = list(ConditionType)
    return tuple(sorted(by_type.values(), key=lambda condition: order.index(condition.type)))


def find_condition(conditions: Iterable[Condition], kind: ConditionType) -> Condition | None:
    return next((condition for condition in conditions if condition.type == kind), None)
