"""The rollout state, typed: which of the states in docs/operator.md a recorded status is in for the
desired revision. The transition table (docs/operator.md, run by tests/test_rollout_table.py) is written
in these names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modeldeploy.conditions import Phase
from modeldeploy.rollout.inputs import Desired
from modeldeploy.rollout.status import RolloutStatus


class StateKind(StrEnum):
    PENDING = "Pending"
    OPTIMIZING = "Optimizing"  # the desired revision's Job runs (a stable one may serve meanwhile)
    DEPLOYING = "Deploying"  # the first revision is stable but has no available pod yet
    STABLE = "Stable"  # the desired revision serves; nothing in progress
    CANARY_STARTING = "CanaryStarting"  # canary beside stable, not yet available and READY
    CANARY = "Canary"  # canary at a traffic step
    PAUSED = "Paused"
    ROLLED_BACK = "RolledBack"  # the desired revision was rolled back; stable serves
    OPTIMIZATION_FAILED = "OptimizationFailed"  # its Job failed; a stable one may serve
    FAILED = "Failed"  # nothing serves: first revision failed to optimize or to become available


@dataclass(frozen=True)
class State:
    kind: StateKind
    revision: str | None = None
    step: int | None = None


def state_of(desired: Desired, status: RolloutStatus) -> State:
    revision = desired.revision
    optimization = status.optimization
    failed_job = optimization.get("revision") == revision and optimization.get("state") == "Failed"
    match status.phase:
        case Phase.OPTIMIZING:
            return State(StateKind.OPTIMIZING, optimization.get("revision"))
        case Phase.DEPLOYING:
            return State(StateKind.DEPLOYING, status.stable_revision)
        case Phase.READY:
            return State(StateKind.STABLE, status.stable_revision)
        case Phase.CANARY if status.canary_step is None:
            return State(StateKind.CANARY_STARTING, status.canary_revision)
        case Phase.CANARY:
            return State(StateKind.CANARY, status.canary_revision, status.canary_step)
        case Phase.PAUSED:
            return State(StateKind.PAUSED, status.canary_revision, status.canary_step)
        case Phase.DEGRADED if failed_job:
            return State(StateKind.OPTIMIZATION_FAILED, revision)
        case Phase.DEGRADED:
            return State(StateKind.ROLLED_BACK, status.last_rollback.get("revision"))
        case Phase.FAILED:
            return State(StateKind.FAILED, revision)
    return State(StateKind.PENDING)
