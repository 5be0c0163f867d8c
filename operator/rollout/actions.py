"""What a reconcile does to the cluster, as data: the decision and the plan return these; the reconciler
carries them out (status first, then these in order, then Events)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeVar

from modeldeploy.conditions import Reason
from modeldeploy.rollout.inputs import Track
from modeldeploy.rollout.status import RolloutStatus

_A = TypeVar("_A")


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
