"""The rollout of a ModelDeployment as a state machine (see docs/operator.md):

- `inputs`: what a reconcile knows (spec reduced to `Desired`, observed children, annotations,
  measurements); `status`: the recorded status, typed; `state`: the named state it is in;
- `transitions` (and `canary`): the pure decision, one function per input, moving the recorded state;
- `plan`: the desired children derived from the resulting state (surge first, prune, replica hand-off);
- `actions`: the decision's output, carried out by `modeldeploy.reconciler`.
"""

from modeldeploy.rollout.actions import (
    Action,
    ApplyDeployment,
    ApplyJob,
    ApplyTrafficObjects,
    ClearAnnotation,
    Decision,
    DeleteDeployment,
    DeleteJob,
    HandOffReplicas,
    RecordEvent,
)
from modeldeploy.rollout.inputs import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSE,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    AnalysisOutcome,
    Desired,
    JobResult,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    SmokeOutcome,
    Track,
    VerdictKind,
    desired_from_spec,
)
from modeldeploy.rollout.plan import fully_available, plan_children, prune
from modeldeploy.rollout.state import State, StateKind, state_of
from modeldeploy.rollout.status import AnalysisStatus, RolloutStatus, replacing_patch, stored_form
from modeldeploy.rollout.transitions import (
    analysis_due,
    decide,
    decide_invalid_spec,
    smoke_check_due,
    wants_job_result,
)

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_PAUSE",
    "ANNOTATION_PROMOTE",
    "ANNOTATION_RETRY",
    "Action",
    "AnalysisOutcome",
    "AnalysisStatus",
    "ApplyDeployment",
    "ApplyJob",
    "ApplyTrafficObjects",
    "ClearAnnotation",
    "Decision",
    "DeleteDeployment",
    "DeleteJob",
    "Desired",
    "HandOffReplicas",
    "JobResult",
    "Manual",
    "Measurements",
    "Observed",
    "ObservedDeployment",
    "ObservedJob",
    "RecordEvent",
    "RolloutStatus",
    "SmokeOutcome",
    "State",
    "StateKind",
    "Track",
    "VerdictKind",
    "analysis_due",
    "decide",
    "decide_invalid_spec",
    "desired_from_spec",
    "fully_available",
    "plan_children",
    "prune",
    "replacing_patch",
    "smoke_check_due",
    "state_of",
    "stored_form",
    "wants_job_result",
]
