"""The reconcile decision: (desired, recorded status, observed children, annotations, measurements, now)
→ (new status, actions). Pure: no I/O, no clock, no randomness, so a restarted operator resumes from the
stored status, and every (state, input) pair is a cell of the table in docs/operator.md, which
tests/test_rollout_table.py runs.

`decide` moves the recorded state by one function per input (job finished, retry, deadline, and the
canary's inputs in `canary`), then derives every child from the resulting state (`plan`): the status
says what should be, the plan makes the cluster match it, so acting twice changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from modeldeploy.conditions import ConditionType, ConditionUpdate, Phase, Reason, merge_conditions
from modeldeploy.rollout import canary
from modeldeploy.rollout.actions import ClearAnnotation, Decision, DeleteJob
from modeldeploy.rollout.inputs import (
    ANNOTATION_ABORT,
    ANNOTATION_RETRY,
    Desired,
    Manual,
    Measurements,
    Observed,
    ObservedJob,
)
from modeldeploy.rollout.plan import plan_children
from modeldeploy.rollout.round import Round, analysis_reference, duration, hold_rolled_back
from modeldeploy.rollout.status import AnalysisStatus, RolloutStatus


def analysis_due(desired: Desired, status: RolloutStatus, manual: Manual, now: datetime) -> bool:
    """Whether the handler should measure the canary against stable before calling `decide`."""
    if desired.strategy != "canary" or manual.pause or manual.abort or manual.promote:
        return False
    if status.canary_revision != desired.revision or status.canary_step is None:
        return False
    return now >= analysis_reference(status) + desired.interval


def smoke_check_due(desired: Desired, status: RolloutStatus, observed: Observed) -> bool:
    """Whether the canary's pods are up and its Triton model readiness should be checked now."""
    if status.canary_revision != desired.revision or status.canary_step is not None:
        return False
    deployment = observed.deployments.get(desired.revision)
    return deployment is not None and canary.available(deployment)


def wants_job_result(desired: Desired, status: RolloutStatus, observed: Observed) -> str | None:
    """Name of the finished Job whose termination message must be read (once per revision)."""
    job = observed.jobs.get(desired.revision)
    if job is None or job.state == "running":
        return None
    recorded = status.optimization
    if recorded.get("revision") == desired.revision and recorded.get("state") in ("Succeeded", "Failed"):
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
    r = Round(desired, status, observed, manual, measured, now)
    transition(r)
    final = r.finish()
    children = plan_children(desired, final, observed)
    return Decision(
        # Annotations acted on are removed right after the status that records their effect is stored.
        actions=(
            *(ClearAnnotation(key) for key in r.consumed),
            *children,
            *(DeleteJob(name) for name in r.delete_jobs),
            *r.events,
        ),
        status=final,
        requeue_after=min(r.requeue) if r.requeue else None,
    )


def transition(r: Round) -> None:
    """Which state the recorded status is in for the desired revision, and its handler."""
    retire_superseded(r)
    status, revision = r.status, r.desired.revision
    if revision == status.stable_revision:
        on_stable(r)
    elif revision == status.canary_revision:
        canary.on_canary(r)
    elif revision == status.last_rollback.get("revision") and status.stable_revision:
        on_rolled_back(r)
    elif r.optimization_state(revision) == "Failed":
        on_failed_optimization(r)
    else:
        on_optimize(r)


def decide_invalid_spec(status: RolloutStatus, generation: int, message: str, now: datetime) -> RolloutStatus:
    """Status for a spec the operator refuses: nothing new is created; a stable revision keeps serving."""
    serving = status.stable_revision is not None
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
        phase=Phase.DEGRADED if serving else Phase.FAILED,
        conditions=merge_conditions(status.conditions, updates, generation, now),
    )


# ---------------------------------------------------------------------------------------------- inputs


def retire_superseded(r: Round) -> None:
    """Spec changed mid-rollout: the canary is abandoned (the plan removes it and old Jobs)."""
    old = r.status.canary_revision
    if old and old != r.desired.revision:
        r.update(
            canary_revision=None,
            canary_step=None,
            canary_weight=0,
            canary_step_start=None,
            analysis=AnalysisStatus(),
        )
        r.event(
            "Normal", Reason.CANARY_SUPERSEDED, f"canary {old} superseded by revision {r.desired.revision}"
        )


def on_stable(r: Round) -> None:
    """The desired revision is stable: Ready once a pod is available, Failed after progressDeadline."""
    stable, deadline = r.desired.revision, r.desired.progress_deadline
    if r.manual.retry and r.before.phase == Phase.FAILED:
        r.consume(ANNOTATION_RETRY)
        r.update(canary_step_start=r.now)
        r.event("Normal", Reason.RETRYING, f"waiting for revision {stable} again ({ANNOTATION_RETRY})")
    r.ignore_one_shot_annotations("no rollout is in progress")
    r.note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")
    if r.stable_available(stable):
        r.update(phase=Phase.READY, canary_step_start=None)
        r.note(ConditionType.READY, "True", Reason.AVAILABLE, f"revision {stable} is serving")
        r.note(ConditionType.PROGRESSING, "False", Reason.IDLE, f"revision {stable} is rolled out")
        return
    started = r.status.canary_step_start or r.now
    r.update(canary_step_start=started)
    if r.now >= started + deadline:
        message = (
            f"revision {stable} has no available pod after progressDeadline {duration(deadline)};"
            f' fix the cause, then set {ANNOTATION_RETRY}: "true" or change the spec'
        )
        r.update(phase=Phase.FAILED)
        r.note(ConditionType.READY, "False", Reason.PROGRESS_DEADLINE_EXCEEDED, message)
        r.note(ConditionType.PROGRESSING, "False", Reason.PROGRESS_DEADLINE_EXCEEDED, message)
        r.note(ConditionType.DEGRADED, "True", Reason.PROGRESS_DEADLINE_EXCEEDED, message)
        return
    r.requeue.append(started + deadline - r.now)
    r.update(phase=Phase.DEPLOYING)
    r.note(ConditionType.READY, "False", Reason.DEPLOYING, f"waiting for revision {stable} to be available")
    r.note(ConditionType.PROGRESSING, "True", Reason.DEPLOYING, f"deploying revision {stable}")


def on_rolled_back(r: Round) -> None:
    if not r.manual.retry:
        hold_rolled_back(r)
        return
    r.consume(ANNOTATION_RETRY)
    r.event(
        "Normal", Reason.RETRYING, f"retrying rolled-back revision {r.desired.revision} ({ANNOTATION_RETRY})"
    )
    r.update(last_rollback={})
    on_optimize(r)


def on_failed_optimization(r: Round) -> None:
    revision = r.desired.revision
    if r.manual.retry:
        job = r.observed.jobs.get(revision)
        if job is None:  # the failed Job is gone: optimize again
            r.consume(ANNOTATION_RETRY)
            r.event("Normal", Reason.RETRYING, f"optimizing revision {revision} again ({ANNOTATION_RETRY})")
            r.update(optimization={})
            on_optimize(r)
            return
        r.delete_jobs.append(job.name)  # the annotation stays until the Job is gone
        r.consume_later(ANNOTATION_RETRY)
    hold_failed_optimization(r)


def hold_failed_optimization(r: Round) -> None:
    error = str(r.status.optimization.get("error", "the optimization Job failed"))
    message = f"optimizing revision {r.desired.revision} failed: {error}"
    r.ignore_one_shot_annotations("the newest revision failed to optimize; change the spec or retry")
    r.note(ConditionType.OPTIMIZED, "False", Reason.OPTIMIZATION_FAILED, message)
    r.note(ConditionType.PROGRESSING, "False", Reason.OPTIMIZATION_FAILED, message)
    r.note(ConditionType.DEGRADED, "True", Reason.OPTIMIZATION_FAILED, message)
    stable = r.status.stable_revision
    if stable:
        r.update(phase=Phase.DEGRADED)
        r.note_serving(stable)
    else:
        r.update(phase=Phase.FAILED)
        r.note(ConditionType.READY, "False", Reason.OPTIMIZATION_FAILED, message)


def on_optimize(r: Round) -> None:
    revision, stable = r.desired.revision, r.status.stable_revision
    if r.manual.abort and stable:
        r.consume(ANNOTATION_ABORT)
        canary.roll_back_revision(r, revision, "aborted by annotation during optimization", Reason.ABORTED)
        hold_rolled_back(r)
        return
    if r.optimization_state(revision) != "Succeeded":
        job = r.observed.jobs.get(revision)
        if job is None or job.state == "running":
            optimizing(r, revision, job)
            return
        record_job_result(r, revision, job)
        if not job_succeeded(r, job):
            hold_failed_optimization(r)
            return
    if stable is None:
        # The first revision has nothing to compare with: it becomes stable directly.
        r.update(stable_revision=revision, canary_step_start=r.now)
        on_stable(r)
        return
    r.update(
        canary_revision=revision,
        canary_step=None,
        canary_weight=0,
        canary_step_start=r.now,
        analysis=AnalysisStatus(),
    )
    r.event("Normal", Reason.CANARY_STARTING, f"starting canary {revision} next to stable {stable}")
    canary.on_canary(r)


def optimizing(r: Round, revision: str, job: ObservedJob | None) -> None:
    r.ignore_one_shot_annotations(f"revision {revision} is still optimizing")
    name = job.name if job else r.desired.job_name(revision)
    r.update(phase=Phase.OPTIMIZING, optimization={"revision": revision, "job": name, "state": "Running"})
    message = f"optimization Job {r.desired.job_name(revision)} is running for revision {revision}"
    r.note(ConditionType.OPTIMIZED, "False", Reason.OPTIMIZING, message)
    r.note(ConditionType.PROGRESSING, "True", Reason.OPTIMIZING, message)
    r.note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")
    stable = r.status.stable_revision
    if stable:
        r.note_serving(stable)
    else:
        r.note(ConditionType.READY, "False", Reason.OPTIMIZING, "no revision is serving yet")


def job_succeeded(r: Round, job: ObservedJob) -> bool:
    # A Job that exited 0 but wrote an error message is a failure (the message is the contract).
    result = r.observed.job_result
    return job.state == "succeeded" and (result is None or result.ok)


def record_job_result(r: Round, revision: str, job: ObservedJob) -> None:
    """The whole `status.optimization` is replaced: nothing of an earlier revision or try survives."""
    result = r.observed.job_result
    record: dict[str, Any] = {"revision": revision, "job": job.name}
    if result is not None:
        record.update(result.summary)
    if job.started and job.finished:
        record["durationSeconds"] = round((job.finished - job.started).total_seconds(), 3)
    if job_succeeded(r, job):
        record["state"] = "Succeeded"
        record["cached"] = bool(result.cached) if result is not None else False
        record.pop("error", None)
        how = "reused cached artifacts" if record["cached"] else "optimized"
        reason = Reason.ARTIFACTS_CACHED if record["cached"] else Reason.OPTIMIZED
        r.event("Normal", reason, f"revision {revision} {how}")
    else:
        record["state"] = "Failed"
        error = result.error if result is not None and result.error else ""
        record["error"] = error or job.reason or "the Job failed"
        r.event(
            "Warning", Reason.OPTIMIZATION_FAILED, f"optimizing revision {revision} failed: {record['error']}"
        )
    r.update(optimization=record)
