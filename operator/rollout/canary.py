"""Transitions of a running canary, one function per input: the abort/promote annotations, the smoke
check (canary READY), the analysis verdict, the progress deadline and pause/resume. They change the
recorded status only; which Deployments exist and how big they are follows from it (`plan`)."""

from __future__ import annotations

from datetime import timedelta

from modeldeploy.conditions import ConditionType, Phase, Reason, format_time
from modeldeploy.rollout.inputs import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSE,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    AnalysisOutcome,
    ObservedDeployment,
)
from modeldeploy.rollout.round import Round, analysis_reference, duration, hold_rolled_back
from modeldeploy.rollout.status import AnalysisStatus


def on_canary(r: Round) -> None:
    deployment = r.deployment(r.desired.revision)
    if r.manual.abort:
        r.consume(ANNOTATION_ABORT)
        roll_back(r, "aborted by annotation modeldeploy.io/abort", Reason.ABORTED)
        return
    # Without an available canary pod the promote annotation stays: it acts as soon as there is one.
    if r.manual.promote and deployment is not None and deployment.available_replicas >= 1:
        r.consume(ANNOTATION_PROMOTE)
        promote(r, "promoted by annotation modeldeploy.io/promote")
        return
    if r.manual.retry and ANNOTATION_RETRY not in r.consumed:  # not when this round's retry started it
        r.consume(ANNOTATION_RETRY)
        r.event(
            "Normal", Reason.MANUAL_ANNOTATION_IGNORED, f"{ANNOTATION_RETRY} ignored: a canary is running"
        )
    if r.status.canary_step is None:
        on_starting(r, deployment)
    else:
        on_stepping(r)


def available(deployment: ObservedDeployment) -> bool:
    wanted = deployment.replicas if deployment.replicas is not None else 1
    return deployment.available_replicas >= max(wanted, 1)


def on_starting(r: Round, deployment: ObservedDeployment | None) -> None:
    desired, canary, smoke = r.desired, r.desired.revision, r.measured.smoke
    if r.before.phase == Phase.PAUSED and not r.manual.pause:
        r.update(canary_step_start=r.now)
        r.event("Normal", Reason.RESUMED, f"canary {canary} resumed")
    if deployment is not None and available(deployment) and smoke is not None and smoke.ok:
        if desired.strategy == "immediate" or not desired.steps:
            promote(r, "strategy immediate: canary is ready")
            return
        r.update(canary_step=0, canary_weight=desired.steps[0], canary_step_start=r.now)
        r.event(
            "Normal", Reason.CANARY_PROGRESSING, f"canary {canary} is ready; step 1 at {desired.steps[0]}%"
        )
        on_stepping(r)
        return
    if r.manual.pause:
        paused(r, f"canary {canary} is paused before its first step")
        return
    started = r.status.canary_step_start or r.now
    if r.now >= started + desired.progress_deadline:
        why = smoke.reason if smoke is not None and not smoke.ok else "its Deployment is not available"
        roll_back(
            r,
            f"canary did not become ready within progressDeadline"
            f" {duration(desired.progress_deadline)}: {why}",
            Reason.PROGRESS_DEADLINE_EXCEEDED,
        )
        return
    r.requeue.append(started + desired.progress_deadline - r.now)
    r.update(phase=Phase.CANARY)
    message = f"waiting for canary {canary} to be available and its model READY"
    if smoke is not None and not smoke.ok:
        message += f" ({smoke.reason})"
    r.note_canary(message)


def on_stepping(r: Round) -> None:
    desired, canary = r.desired, r.desired.revision
    if r.manual.pause:
        paused(r, f"canary {canary} is paused at step {r.step_label()}")
        return
    if r.before.phase == Phase.PAUSED and r.before.canary_step is not None:
        # The deadline measures progress; time spent paused is not the canary's fault.
        r.update(canary_step_start=r.now)
        r.event("Normal", Reason.RESUMED, f"canary {canary} resumed at step {r.step_label()}")
    outcome = r.measured.analysis
    if outcome is not None and on_verdict(r, outcome):
        return
    started = r.status.canary_step_start or r.now
    if r.now >= started + desired.progress_deadline:
        roll_back(
            r,
            f"no progress within progressDeadline {duration(desired.progress_deadline)}"
            f" at step {r.step_label()}: {r.status.analysis.reason or 'no verdict'}",
            Reason.PROGRESS_DEADLINE_EXCEEDED,
        )
        return
    next_analysis = analysis_reference(r.status) + desired.interval
    r.requeue.append(max(min(next_analysis, started + desired.progress_deadline) - r.now, timedelta(0)))
    r.update(phase=Phase.CANARY)
    r.note_canary(
        f"canary {canary} at step {r.step_label()} ({r.status.canary_weight}%)"
        + (f"; last analysis: {r.status.analysis.reason}" if r.status.analysis.reason else "")
    )


def on_verdict(r: Round, outcome: AnalysisOutcome) -> bool:
    """Record the verdict; True when it ended the canary (promoted or rolled back)."""
    desired, previous = r.desired, r.status.analysis
    failed = previous.failed_checks + (1 if outcome.verdict == "fail" else 0)
    errors = previous.errors + 1 if outcome.verdict == "error" else 0
    r.update(
        analysis=AnalysisStatus(
            time=r.now,
            verdict=outcome.verdict,
            reason=outcome.reason,
            failed_checks=failed,
            errors=errors,
            checks=outcome.failed_checks,
            stable=outcome.stable,
            canary=outcome.canary,
        )
    )
    if outcome.verdict == "pass":
        step = (r.status.canary_step or 0) + 1
        if step >= len(desired.steps):
            promote(r, f"analysis passed at the last step: {outcome.reason}")
            return True
        r.update(canary_step=step, canary_weight=desired.steps[step], canary_step_start=r.now)
        r.event(
            "Normal",
            Reason.CANARY_STEP_PASSED,
            f"analysis passed ({outcome.reason});"
            f" step {step + 1}/{len(desired.steps)} at {desired.steps[step]}%",
        )
    elif outcome.verdict == "fail":
        limit = desired.failure_threshold
        r.event("Warning", Reason.ANALYSIS_FAILED, f"analysis failed ({failed}/{limit}): {outcome.reason}")
        if failed >= limit:
            roll_back(r, f"analysis failed {failed} times: {outcome.reason}", Reason.ANALYSIS_FAILED)
            return True
    elif outcome.verdict == "error":
        limit = desired.max_consecutive_errors
        r.event(
            "Warning",
            Reason.ANALYSIS_ERROR,
            f"analysis could not measure ({errors}/{limit}): {outcome.reason}",
        )
        if errors >= limit:
            roll_back(r, f"{errors} consecutive analysis errors: {outcome.reason}", Reason.ANALYSIS_ERROR)
            return True
    return False


def paused(r: Round, message: str) -> None:
    if r.before.phase != Phase.PAUSED:
        r.event("Normal", Reason.PAUSED, message)
    r.update(phase=Phase.PAUSED)
    r.note_serving(r.status.stable_revision or "")
    r.note(
        ConditionType.PROGRESSING,
        "Unknown",
        Reason.PAUSED,
        message + f" (remove {ANNOTATION_PAUSE} to resume)",
    )
    r.note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")


def promote(r: Round, why: str) -> None:
    """The canary becomes stable. The old stable keeps serving until the new one is fully available
    (the plan retires it then), and an autoscaler's replica count is handed over first."""
    canary, old = r.desired.revision, r.status.stable_revision
    r.update(
        phase=Phase.READY,
        stable_revision=canary,
        canary_revision=None,
        canary_step=None,
        canary_weight=0,
        canary_step_start=None,
    )
    r.event("Normal", Reason.PROMOTED, f"revision {canary} promoted to stable, {old} retired: {why}")
    r.note(ConditionType.READY, "True", Reason.AVAILABLE, f"revision {canary} is serving")
    r.note(ConditionType.PROGRESSING, "False", Reason.PROMOTED, f"revision {canary} promoted: {why}")
    r.note(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, "")


def roll_back(r: Round, why: str, cause: Reason) -> None:
    roll_back_revision(r, r.desired.revision, why, cause)
    hold_rolled_back(r)


def roll_back_revision(r: Round, revision: str, why: str, cause: Reason) -> None:
    r.update(
        canary_revision=None,
        canary_step=None,
        canary_weight=0,
        canary_step_start=None,
        last_rollback={"revision": revision, "reason": why, "cause": str(cause), "time": format_time(r.now)},
    )
    r.event("Warning", Reason.ROLLED_BACK, f"revision {revision} rolled back: {why}")
