"""The reconcile decision as a transition table: (status, observed, annotations, measurements, now) → outcome.

Each test states one row: where the ModelDeployment is, what happened, what the operator must do next.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.conditions import ConditionType, Phase, Reason, format_time
from modeldeploy.rollout import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSE,
    ANNOTATION_PROMOTE,
    AnalysisOutcome,
    AnalysisStatus,
    ApplyDeployment,
    ApplyJob,
    ApplyTrafficObjects,
    ClearAnnotation,
    Decision,
    DeleteDeployment,
    DeleteJob,
    Desired,
    HandOffReplicas,
    JobResult,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    RecordEvent,
    RolloutStatus,
    SmokeOutcome,
    analysis_due,
    decide,
    decide_invalid_spec,
    smoke_check_due,
    wants_job_result,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OLD, NEW, NEWER = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"
INTERVAL = timedelta(minutes=1)
DEADLINE = timedelta(minutes=10)


def desired(revision: str = NEW, **changes: Any) -> Desired:
    base = Desired(
        name="ocr",
        generation=2,
        revision=revision,
        steps=(10, 50),
        interval=INTERVAL,
        progress_deadline=DEADLINE,
        failure_threshold=2,
        max_consecutive_errors=3,
        serving_replicas=4,
    )
    return replace(base, **changes)


def deployment(
    revision: str,
    track: str = "stable",
    replicas: int = 4,
    available: int | None = None,
    operator_sets_replicas: bool = True,
) -> ObservedDeployment:
    return ObservedDeployment(
        name=f"ocr-{revision}",
        revision=revision,
        track=track,
        replicas=replicas,
        available_replicas=replicas if available is None else available,
        operator_sets_replicas=operator_sets_replicas,
    )


def job(revision: str, state: str = "running", reason: str = "") -> ObservedJob:
    return ObservedJob(name=f"ocr-optimize-{revision}", revision=revision, state=state, reason=reason)  # type: ignore[arg-type]


def observed(*children: ObservedDeployment | ObservedJob, result: JobResult | None = None) -> Observed:
    return Observed(
        jobs={c.revision: c for c in children if isinstance(c, ObservedJob)},
        deployments={c.revision: c for c in children if isinstance(c, ObservedDeployment)},
        job_result=result,
    )


def serving(revision: str = OLD) -> RolloutStatus:
    """A ModelDeployment whose `revision` is stable and Ready."""
    return RolloutStatus(observed_generation=1, phase=Phase.READY, stable_revision=revision)


def in_canary(step: int | None = 0, started: datetime = T0, **changes: Any) -> RolloutStatus:
    weights = (10, 50)
    status = RolloutStatus(
        observed_generation=2,
        phase=Phase.CANARY,
        stable_revision=OLD,
        canary_revision=NEW,
        canary_step=step,
        canary_weight=weights[step] if step is not None else 0,
        canary_step_start=started,
        optimization={"revision": NEW, "job": f"ocr-optimize-{NEW}", "state": "Succeeded", "cached": False},
    )
    return replace(status, **changes)


def canary_children_at(replicas: int, available: int) -> Observed:
    grown = deployment(NEW, "canary", replicas=replicas, available=available)
    return observed(deployment(OLD), grown, job(NEW, "succeeded"))


def canary_children(available: int | None = None) -> Observed:
    return observed(
        deployment(OLD), deployment(NEW, "canary", replicas=1, available=available), job(NEW, "succeeded")
    )


def run(
    status: RolloutStatus,
    seen: Observed,
    *,
    want: Desired | None = None,
    now: datetime = T0,
    annotations: dict[str, str] | None = None,
    smoke: SmokeOutcome | None = None,
    verdict: AnalysisOutcome | None = None,
) -> Decision:
    return decide(
        want or desired(),
        status,
        seen,
        manual=Manual.from_annotations(annotations or {}),
        measured=Measurements(smoke=smoke, analysis=verdict),
        now=now,
    )


def condition(decision: Decision, kind: ConditionType) -> tuple[str, Reason]:
    found = next(c for c in decision.status.conditions if c.type == kind)
    return found.status, found.reason


def event_reasons(decision: Decision) -> list[Reason]:
    return [event.reason for event in decision.of_type(RecordEvent)]


def deployments_applied(decision: Decision) -> dict[str, tuple[str, int | None]]:
    return {a.revision: (a.track, a.replicas) for a in decision.of_type(ApplyDeployment)}


def deleted(decision: Decision) -> list[str]:
    return [a.name for a in decision.of_type(DeleteDeployment)] + [
        a.name for a in decision.of_type(DeleteJob)
    ]


PASS = AnalysisOutcome("pass", "canary within thresholds")
FAIL = AnalysisOutcome("fail", "error rate 0.2 > 0.01", failed_checks=("errorRate",))
WAIT = AnalysisOutcome("wait", "12 requests < minRequests 50")
ERROR = AnalysisOutcome("error", "prometheus unreachable")
READY = SmokeOutcome(ok=True, reason="model READY")


# ------------------------------------------------------------------------------------ optimization


def test_new_object_starts_the_optimization_job_and_nothing_else() -> None:
    decision = run(RolloutStatus(), observed(), want=desired(OLD))
    assert decision.of_type(ApplyJob) == [ApplyJob(OLD)]
    assert deployments_applied(decision) == {}
    assert decision.status.phase == Phase.OPTIMIZING
    assert decision.status.optimization == {"revision": OLD, "job": f"ocr-optimize-{OLD}", "state": "Running"}
    assert condition(decision, ConditionType.OPTIMIZED) == ("False", Reason.OPTIMIZING)
    assert condition(decision, ConditionType.READY) == ("False", Reason.OPTIMIZING)
    assert decision.status.observed_generation == 2


def test_running_job_keeps_optimizing_without_a_second_job() -> None:
    first = run(RolloutStatus(), observed(), want=desired(OLD))
    again = run(first.status, observed(job(OLD)), want=desired(OLD), now=T0 + timedelta(minutes=5))
    assert again.of_type(ApplyJob) == [ApplyJob(OLD)]  # same name: server-side apply is a no-op
    assert again.status.phase == Phase.OPTIMIZING
    assert again.of_type(RecordEvent) == []  # no phase change, no event spam


def test_first_revision_goes_straight_to_stable_once_its_job_succeeded() -> None:
    status = run(RolloutStatus(), observed(), want=desired(OLD)).status
    summary = {"chosen": "int8-dynamic", "before": {"sizeBytes": 400}, "after": {"sizeBytes": 100}}
    result = JobResult(ok=True, cached=False, summary=summary)
    decision = run(status, observed(job(OLD, "succeeded"), result=result), want=desired(OLD))
    assert deployments_applied(decision) == {OLD: ("stable", 4)}
    assert decision.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(OLD, None, 0)]
    assert decision.status.stable_revision == OLD
    assert decision.status.phase == Phase.DEPLOYING
    assert decision.status.optimization["state"] == "Succeeded"
    assert decision.status.optimization["after"] == {"sizeBytes": 100}
    assert condition(decision, ConditionType.OPTIMIZED) == ("True", Reason.OPTIMIZED)
    assert Reason.OPTIMIZED in event_reasons(decision)


def test_cached_artifacts_are_reported_as_such() -> None:
    status = run(RolloutStatus(), observed(), want=desired(OLD)).status
    decision = run(
        status, observed(job(OLD, "succeeded"), result=JobResult(ok=True, cached=True)), want=desired(OLD)
    )
    assert decision.status.optimization["cached"] is True
    assert condition(decision, ConditionType.OPTIMIZED) == ("True", Reason.ARTIFACTS_CACHED)


def test_stable_becomes_ready_when_its_deployment_has_an_available_pod() -> None:
    status = replace(serving(), phase=Phase.DEPLOYING)
    waiting = run(status, observed(deployment(OLD, available=0)), want=desired(OLD))
    assert waiting.status.phase == Phase.DEPLOYING
    assert condition(waiting, ConditionType.READY) == ("False", Reason.DEPLOYING)
    ready = run(status, observed(deployment(OLD, available=1)), want=desired(OLD))
    assert ready.status.phase == Phase.READY
    assert condition(ready, ConditionType.READY) == ("True", Reason.AVAILABLE)
    assert condition(ready, ConditionType.PROGRESSING) == ("False", Reason.IDLE)
    assert condition(ready, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED)
    assert [e.reason for e in ready.of_type(RecordEvent)] == [Reason.IDLE]  # phase change → one event


def test_first_revision_job_failure_is_failed_with_the_jobs_reason_and_not_retried() -> None:
    status = run(RolloutStatus(), observed(), want=desired(OLD)).status
    result = JobResult(ok=False, error="accuracy drop 0.3 > maxAccuracyDrop 0.01")
    failed = run(
        status, observed(job(OLD, "failed", "BackoffLimitExceeded"), result=result), want=desired(OLD)
    )
    assert failed.status.phase == Phase.FAILED
    assert failed.status.optimization["error"] == "accuracy drop 0.3 > maxAccuracyDrop 0.01"
    assert condition(failed, ConditionType.OPTIMIZED) == ("False", Reason.OPTIMIZATION_FAILED)
    assert condition(failed, ConditionType.READY) == ("False", Reason.OPTIMIZATION_FAILED)
    assert "Warning" in [e.type for e in failed.of_type(RecordEvent)]
    # Next rounds, even with the Job deleted by someone: no new Job (no retry storm), no re-read.
    for seen in (observed(job(OLD, "failed")), observed()):
        later = run(failed.status, seen, want=desired(OLD), now=T0 + timedelta(hours=1))
        assert later.of_type(ApplyJob) == []
        assert later.status.phase == Phase.FAILED
        assert wants_job_result(desired(OLD), failed.status, seen) is None


def test_job_failure_without_a_message_uses_the_jobs_own_reason() -> None:
    status = run(RolloutStatus(), observed(), want=desired(OLD)).status
    failed = run(
        status,
        observed(job(OLD, "failed", "DeadlineExceeded: Job was active longer than allowed")),
        want=desired(OLD),
    )
    assert failed.status.optimization["error"] == "DeadlineExceeded: Job was active longer than allowed"


def test_job_that_exits_zero_but_reports_an_error_is_a_failure() -> None:
    status = run(RolloutStatus(), observed(), want=desired(OLD)).status
    decision = run(
        status,
        observed(job(OLD, "succeeded"), result=JobResult(ok=False, error="no model")),
        want=desired(OLD),
    )
    assert decision.status.phase == Phase.FAILED
    assert deployments_applied(decision) == {}


def test_later_revision_job_failure_keeps_stable_serving_and_is_degraded() -> None:
    status = run(serving(), observed(deployment(OLD))).status
    decision = run(
        status, observed(deployment(OLD), job(NEW, "failed"), result=JobResult(ok=False, error="oom"))
    )
    assert decision.status.phase == Phase.DEGRADED
    assert deployments_applied(decision) == {OLD: ("stable", 4)}
    assert condition(decision, ConditionType.READY) == ("True", Reason.AVAILABLE)
    assert condition(decision, ConditionType.DEGRADED) == ("True", Reason.OPTIMIZATION_FAILED)


def test_job_result_is_read_once_per_finished_job() -> None:
    status = run(serving(), observed(deployment(OLD))).status
    assert wants_job_result(desired(), status, observed(job(NEW, "running"))) is None
    assert wants_job_result(desired(), status, observed(job(NEW, "succeeded"))) == f"ocr-optimize-{NEW}"
    recorded = run(status, observed(deployment(OLD), job(NEW, "succeeded"), result=JobResult(ok=True))).status
    assert wants_job_result(desired(), recorded, observed(job(NEW, "succeeded"))) is None


# ------------------------------------------------------------------------------------ canary start


def test_later_revision_starts_a_canary_beside_stable_without_traffic() -> None:
    status = run(serving(), observed(deployment(OLD))).status
    decision = run(status, observed(deployment(OLD), job(NEW, "succeeded"), result=JobResult(ok=True)))
    assert decision.status.canary_revision == NEW
    assert decision.status.canary_step is None
    assert decision.status.phase == Phase.CANARY
    # Surge first: stable keeps its full size until canary pods are available (issue 10, defect 4).
    assert deployments_applied(decision) == {OLD: ("stable", 4), NEW: ("canary", 1)}
    assert decision.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(OLD, NEW, 0)]
    assert condition(decision, ConditionType.PROGRESSING) == ("True", Reason.CANARY_STARTING)
    assert Reason.CANARY_STARTING in event_reasons(decision)


def test_canary_waits_for_available_pods_before_the_model_check() -> None:
    status = in_canary(step=None)
    assert not smoke_check_due(desired(), status, canary_children(available=0))
    assert smoke_check_due(desired(), status, canary_children(available=1))
    decision = run(status, canary_children(available=0), now=T0 + timedelta(minutes=1))
    assert decision.status.canary_step is None
    assert decision.requeue_after == DEADLINE - timedelta(minutes=1)


def test_canary_model_not_ready_keeps_waiting_with_the_reason() -> None:
    not_ready = SmokeOutcome(ok=False, reason="model ocr is UNAVAILABLE")
    decision = run(in_canary(step=None), canary_children(), smoke=not_ready, now=T0 + timedelta(minutes=2))
    assert decision.status.canary_step is None
    progressing = next(c for c in decision.status.conditions if c.type == ConditionType.PROGRESSING)
    assert "UNAVAILABLE" in progressing.message


def test_ready_canary_enters_the_first_step() -> None:
    now = T0 + timedelta(minutes=2)
    decision = run(in_canary(step=None), canary_children(), smoke=READY, now=now)
    assert (decision.status.canary_step, decision.status.canary_weight) == (0, 10)
    assert decision.status.canary_step_start == now
    assert decision.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(OLD, NEW, 10)]
    assert decision.requeue_after == INTERVAL


@pytest.mark.parametrize(
    ("elapsed", "rolled_back"),
    [(DEADLINE - timedelta(seconds=1), False), (DEADLINE, True), (DEADLINE + timedelta(seconds=1), True)],
    ids=["one-second-before", "exactly-reached", "passed"],
)
def test_canary_that_never_gets_ready_is_rolled_back_at_the_deadline(
    elapsed: timedelta, rolled_back: bool
) -> None:
    not_ready = SmokeOutcome(ok=False, reason="model ocr is UNAVAILABLE")
    decision = run(in_canary(step=None), canary_children(), smoke=not_ready, now=T0 + elapsed)
    assert (decision.status.canary_revision is None) is rolled_back
    if rolled_back:
        assert decision.status.last_rollback["cause"] == Reason.PROGRESS_DEADLINE_EXCEEDED
        assert "UNAVAILABLE" in decision.status.last_rollback["reason"]
        assert f"ocr-{NEW}" in deleted(decision)


# ------------------------------------------------------------------------------------ analysis


@pytest.mark.parametrize(
    ("elapsed", "due"),
    [(INTERVAL - timedelta(seconds=1), False), (INTERVAL, True), (INTERVAL * 2, True)],
    ids=["before-interval", "exactly-interval", "late"],
)
def test_analysis_is_due_one_interval_after_the_step_started(elapsed: timedelta, due: bool) -> None:
    assert analysis_due(desired(), in_canary(), Manual(), T0 + elapsed) is due


def test_analysis_is_due_one_interval_after_the_previous_analysis() -> None:
    status = in_canary(analysis=AnalysisStatus(time=T0 + timedelta(minutes=3), verdict="wait"))
    assert not analysis_due(desired(), status, Manual(), T0 + timedelta(minutes=3, seconds=59))
    assert analysis_due(desired(), status, Manual(), T0 + timedelta(minutes=4))


@pytest.mark.parametrize("manual", [Manual(pause=True), Manual(promote=True), Manual(abort=True)])
def test_no_analysis_while_a_manual_annotation_decides(manual: Manual) -> None:
    assert not analysis_due(desired(), in_canary(), manual, T0 + timedelta(hours=1))


def test_no_analysis_before_the_canary_is_ready_or_for_an_immediate_rollout() -> None:
    assert not analysis_due(desired(), in_canary(step=None), Manual(), T0 + timedelta(hours=1))
    assert not analysis_due(desired(strategy="immediate"), in_canary(), Manual(), T0 + timedelta(hours=1))


def test_passing_verdict_moves_to_the_next_step() -> None:
    now = T0 + INTERVAL
    decision = run(in_canary(), canary_children(), verdict=PASS, now=now)
    assert (decision.status.canary_step, decision.status.canary_weight) == (1, 50)
    assert decision.status.canary_step_start == now
    assert decision.status.analysis.verdict == "pass"
    assert decision.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(OLD, NEW, 50)]
    # The canary grows to 2 first; stable gives up only the pod the canary already serves with.
    assert deployments_applied(decision) == {OLD: ("stable", 3), NEW: ("canary", 2)}
    grown = canary_children_at(replicas=2, available=2)
    assert deployments_applied(run(decision.status, grown)) == {OLD: ("stable", 2), NEW: ("canary", 2)}
    assert Reason.CANARY_STEP_PASSED in event_reasons(decision)


def test_passing_the_last_step_promotes_and_retires_the_old_stable() -> None:
    decision = run(in_canary(step=1), canary_children(), verdict=PASS, now=T0 + INTERVAL)
    assert decision.status.stable_revision == NEW
    assert decision.status.canary_revision is None
    assert decision.status.phase == Phase.READY
    assert deployments_applied(decision) == {NEW: ("stable", 4)}
    assert decision.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(NEW, None, 0)]
    assert condition(decision, ConditionType.PROGRESSING) == ("False", Reason.PROMOTED)
    assert Reason.PROMOTED in event_reasons(decision)
    # The old stable serves until the new one has all 4 pods available (issue 10, defect 4).
    assert deleted(decision) == []
    surged = run(decision.status, canary_children_at(replicas=4, available=3), now=T0 + INTERVAL)
    assert deleted(surged) == []
    done = run(decision.status, canary_children_at(replicas=4, available=4), now=T0 + INTERVAL)
    assert deleted(done) == [f"ocr-{OLD}"]
    kinds = [type(a) for a in done.actions]
    assert kinds.index(ApplyDeployment) < kinds.index(DeleteDeployment)


def test_failing_verdicts_roll_back_at_the_failure_threshold() -> None:
    once = run(in_canary(), canary_children(), verdict=FAIL, now=T0 + INTERVAL)
    assert once.status.canary_revision == NEW
    assert once.status.analysis.failed_checks == 1
    assert once.status.analysis.checks == ("errorRate",)
    twice = run(once.status, canary_children(), verdict=FAIL, now=T0 + 2 * INTERVAL)
    assert twice.status.canary_revision is None
    assert twice.status.phase == Phase.DEGRADED
    assert twice.status.last_rollback["revision"] == NEW
    assert twice.status.last_rollback["cause"] == Reason.ANALYSIS_FAILED
    assert condition(twice, ConditionType.DEGRADED) == ("True", Reason.ROLLED_BACK)
    assert condition(twice, ConditionType.READY) == ("True", Reason.AVAILABLE)
    assert deleted(twice) == [f"ocr-{NEW}"]
    assert deployments_applied(twice) == {OLD: ("stable", 4)}  # stable back to full size
    assert twice.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(OLD, None, 0)]
    assert "Warning" in [e.type for e in twice.of_type(RecordEvent) if e.reason == Reason.ROLLED_BACK]


def test_rolled_back_revision_is_not_retried_until_the_spec_changes() -> None:
    status = run(
        in_canary(analysis=AnalysisStatus(time=T0, failed_checks=1)), canary_children(), verdict=FAIL
    ).status
    later = run(status, observed(deployment(OLD), job(NEW, "succeeded")), now=T0 + timedelta(hours=2))
    assert later.of_type(ApplyJob) == []
    assert NEW not in deployments_applied(later)
    assert later.status.phase == Phase.DEGRADED
    changed = run(
        status, observed(deployment(OLD)), want=desired(NEWER, generation=3), now=T0 + timedelta(hours=2)
    )
    assert changed.of_type(ApplyJob) == [ApplyJob(NEWER)]
    assert changed.status.phase == Phase.OPTIMIZING


def test_consecutive_query_errors_roll_back_and_a_measurement_resets_them() -> None:
    status = in_canary()
    for minute in (1, 2):
        status = run(status, canary_children(), verdict=ERROR, now=T0 + minute * INTERVAL).status
    assert status.analysis.errors == 2
    assert run(status, canary_children(), verdict=WAIT, now=T0 + 3 * INTERVAL).status.analysis.errors == 0
    third = run(status, canary_children(), verdict=ERROR, now=T0 + 3 * INTERVAL)
    assert third.status.last_rollback["cause"] == Reason.ANALYSIS_ERROR


@pytest.mark.parametrize(
    ("verdict", "rolled_back"),
    [(None, True), (WAIT, True), (FAIL, True), (PASS, False)],
    ids=["no-verdict", "wait", "fail-below-threshold", "pass-wins"],
)
def test_progress_deadline_exactly_reached_on_a_step(
    verdict: AnalysisOutcome | None, rolled_back: bool
) -> None:
    decision = run(in_canary(), canary_children(), verdict=verdict, now=T0 + DEADLINE)
    assert (decision.status.canary_revision is None) is rolled_back
    if rolled_back:
        assert decision.status.last_rollback["cause"] in (
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            Reason.ANALYSIS_FAILED,
        )


def test_waiting_verdict_extends_the_step_until_the_deadline() -> None:
    decision = run(in_canary(), canary_children(), verdict=WAIT, now=T0 + DEADLINE - timedelta(seconds=1))
    assert decision.status.canary_step == 0
    assert decision.status.analysis.verdict == "wait"
    assert decision.requeue_after == timedelta(seconds=1)  # the deadline comes before the next analysis


# ------------------------------------------------------------------------------------ spec changes


def test_spec_change_mid_canary_abandons_it_and_restarts_for_the_new_revision() -> None:
    status = in_canary(step=1, analysis=AnalysisStatus(time=T0, verdict="fail", failed_checks=1))
    decision = run(status, canary_children(), want=desired(NEWER, generation=3), now=T0 + INTERVAL)
    assert decision.status.canary_revision is None
    assert decision.status.analysis == AnalysisStatus()  # analysis restarts from zero for the new revision
    assert f"ocr-{NEW}" in deleted(decision)
    assert f"ocr-optimize-{NEW}" in deleted(decision)
    assert decision.of_type(ApplyJob) == [ApplyJob(NEWER)]
    assert deployments_applied(decision) == {OLD: ("stable", 4)}
    assert Reason.CANARY_SUPERSEDED in event_reasons(decision)
    assert decision.status.observed_generation == 3


def test_spec_reverted_to_stable_mid_canary_drops_the_canary() -> None:
    decision = run(in_canary(), canary_children(), want=desired(OLD, generation=3))
    assert decision.status.canary_revision is None
    assert decision.status.phase == Phase.READY
    assert f"ocr-{NEW}" in deleted(decision)


def test_in_place_rollout_settings_change_keeps_the_canary_step() -> None:
    decision = run(in_canary(step=1), canary_children(), want=desired(steps=(10, 50, 90), generation=3))
    assert decision.status.canary_step == 1
    assert decision.status.canary_revision == NEW


# ------------------------------------------------------------------------------------ manual annotations

# Every phase a ModelDeployment can be in, with the children that go with it.
PHASES: dict[str, tuple[RolloutStatus, Observed, Desired]] = {
    "optimizing-first": (
        RolloutStatus(phase=Phase.OPTIMIZING, optimization={"revision": OLD, "state": "Running"}),
        observed(job(OLD)),
        desired(OLD),
    ),
    "deploying": (
        replace(serving(), phase=Phase.DEPLOYING),
        observed(deployment(OLD, available=0)),
        desired(OLD),
    ),
    "ready": (serving(), observed(deployment(OLD)), desired(OLD)),
    "optimizing-next": (
        replace(serving(), phase=Phase.OPTIMIZING, optimization={"revision": NEW, "state": "Running"}),
        observed(deployment(OLD), job(NEW)),
        desired(),
    ),
    "canary-starting": (in_canary(step=None), canary_children(available=0), desired()),
    "canary-stepping": (in_canary(step=0), canary_children(), desired()),
    "paused": (in_canary(step=0, phase=Phase.PAUSED), canary_children(), desired()),
    "degraded": (
        replace(serving(), phase=Phase.DEGRADED, last_rollback={"revision": NEW, "reason": "failed"}),
        observed(deployment(OLD)),
        desired(),
    ),
    "failed": (
        RolloutStatus(phase=Phase.FAILED, optimization={"revision": OLD, "state": "Failed", "error": "x"}),
        observed(job(OLD, "failed")),
        desired(OLD),
    ),
}

# (phase, annotation) → (phase after, annotation removed?, what happened)
MANUAL_TABLE = [
    ("optimizing-first", ANNOTATION_PROMOTE, Phase.OPTIMIZING, True, "ignored"),
    ("optimizing-first", ANNOTATION_ABORT, Phase.OPTIMIZING, True, "ignored"),
    ("optimizing-first", ANNOTATION_PAUSE, Phase.OPTIMIZING, False, "nothing to pause"),
    ("deploying", ANNOTATION_PROMOTE, Phase.DEPLOYING, True, "ignored"),
    ("deploying", ANNOTATION_ABORT, Phase.DEPLOYING, True, "ignored"),
    ("deploying", ANNOTATION_PAUSE, Phase.DEPLOYING, False, "nothing to pause"),
    ("ready", ANNOTATION_PROMOTE, Phase.READY, True, "ignored"),
    ("ready", ANNOTATION_ABORT, Phase.READY, True, "ignored"),
    ("ready", ANNOTATION_PAUSE, Phase.READY, False, "nothing to pause"),
    ("optimizing-next", ANNOTATION_PROMOTE, Phase.OPTIMIZING, True, "ignored"),
    ("optimizing-next", ANNOTATION_ABORT, Phase.DEGRADED, True, "rolled back"),
    ("optimizing-next", ANNOTATION_PAUSE, Phase.OPTIMIZING, False, "nothing to pause"),
    ("canary-starting", ANNOTATION_PROMOTE, Phase.CANARY, False, "waits for a pod"),
    ("canary-starting", ANNOTATION_ABORT, Phase.DEGRADED, True, "rolled back"),
    ("canary-starting", ANNOTATION_PAUSE, Phase.PAUSED, False, "paused"),
    ("canary-stepping", ANNOTATION_PROMOTE, Phase.READY, True, "promoted"),
    ("canary-stepping", ANNOTATION_ABORT, Phase.DEGRADED, True, "rolled back"),
    ("canary-stepping", ANNOTATION_PAUSE, Phase.PAUSED, False, "paused"),
    ("paused", ANNOTATION_PROMOTE, Phase.READY, True, "promoted"),
    ("paused", ANNOTATION_ABORT, Phase.DEGRADED, True, "rolled back"),
    ("paused", ANNOTATION_PAUSE, Phase.PAUSED, False, "paused"),
    ("degraded", ANNOTATION_PROMOTE, Phase.DEGRADED, True, "ignored"),
    ("degraded", ANNOTATION_ABORT, Phase.DEGRADED, True, "ignored"),
    ("degraded", ANNOTATION_PAUSE, Phase.DEGRADED, False, "nothing to pause"),
    ("failed", ANNOTATION_PROMOTE, Phase.FAILED, True, "ignored"),
    ("failed", ANNOTATION_ABORT, Phase.FAILED, True, "ignored"),
    ("failed", ANNOTATION_PAUSE, Phase.FAILED, False, "nothing to pause"),
]


@pytest.mark.parametrize(
    ("where", "annotation", "phase_after", "removed", "outcome"),
    MANUAL_TABLE,
    ids=[f"{r[0]}-{r[1][15:]}" for r in MANUAL_TABLE],
)
def test_manual_annotation_at_every_phase(
    where: str, annotation: str, phase_after: Phase, removed: bool, outcome: str
) -> None:
    status, seen, want = PHASES[where]
    decision = run(status, seen, want=want, annotations={annotation: "true"}, now=T0 + timedelta(minutes=1))
    assert decision.status.phase == phase_after
    assert (ClearAnnotation(annotation) in decision.actions) is removed
    reasons = event_reasons(decision)
    if outcome == "ignored":
        assert Reason.MANUAL_ANNOTATION_IGNORED in reasons
    elif outcome == "rolled back":
        assert decision.status.last_rollback["revision"] == NEW
        assert decision.status.last_rollback["cause"] == Reason.ABORTED
        assert decision.of_type(ApplyJob) == []
    elif outcome == "promoted":
        assert decision.status.stable_revision == NEW
        assert Reason.PROMOTED in reasons
    elif outcome == "paused":
        assert condition(decision, ConditionType.PROGRESSING) == ("Unknown", Reason.PAUSED)


def test_pause_holds_the_step_past_the_deadline_and_resume_restarts_the_clock() -> None:
    paused = run(
        in_canary(), canary_children(), annotations={ANNOTATION_PAUSE: "true"}, now=T0 + DEADLINE * 3
    )
    assert paused.status.phase == Phase.PAUSED
    assert paused.status.canary_revision == NEW
    assert paused.of_type(ApplyTrafficObjects) == [
        ApplyTrafficObjects(OLD, NEW, 10)
    ]  # traffic stays as it was
    resume_at = T0 + DEADLINE * 4
    resumed = run(paused.status, canary_children(), now=resume_at)
    assert resumed.status.phase == Phase.CANARY
    assert resumed.status.canary_step_start == resume_at
    assert Reason.RESUMED in event_reasons(resumed)


def test_annotation_values_other_than_true_do_nothing() -> None:
    assert (
        Manual.from_annotations({ANNOTATION_PROMOTE: "false", ANNOTATION_ABORT: "", ANNOTATION_PAUSE: "yes"})
        == Manual()
    )
    assert Manual.from_annotations({ANNOTATION_PAUSE: " True "}) == Manual(pause=True)


# ------------------------------------------------------------------------------------ strategies and scaling


def test_immediate_strategy_promotes_as_soon_as_the_new_revision_is_ready() -> None:
    want = desired(strategy="immediate")
    starting = run(in_canary(step=None), canary_children(available=0), want=want)
    assert deployments_applied(starting) == {OLD: ("stable", 4), NEW: ("canary", 4)}
    ready = observed(deployment(OLD), deployment(NEW, "canary"), job(NEW, "succeeded"))
    promoted = run(in_canary(step=None), ready, want=want, smoke=READY)
    assert promoted.status.stable_revision == NEW
    assert deleted(promoted) == [f"ocr-{OLD}"]


def test_autoscaled_stable_is_never_given_replicas_and_the_count_is_handed_off_on_promotion() -> None:
    want = desired(autoscaled=True)
    hpa_scaled = deployment(OLD, replicas=6, operator_sets_replicas=False)  # the HPA's count
    fleet = observed(hpa_scaled, deployment(NEW, "canary", replicas=1), job(NEW, "succeeded"))
    stepping = run(in_canary(), fleet, want=want)
    assert deployments_applied(stepping) == {OLD: ("stable", None), NEW: ("canary", 1)}
    promoted = run(in_canary(step=1), fleet, want=want, verdict=PASS, now=T0 + INTERVAL)
    assert promoted.of_type(HandOffReplicas) == [HandOffReplicas(NEW, 6)]
    assert deployments_applied(promoted) == {NEW: ("stable", None)}
    kinds = [type(a) for a in promoted.actions]
    assert kinds.index(HandOffReplicas) < kinds.index(ApplyDeployment)
    assert deleted(promoted) == []  # the hand-off is not seen yet: the old fleet keeps serving
    handed = deployment(NEW, "stable", replicas=6, available=6, operator_sets_replicas=False)
    after = run(promoted.status, observed(hpa_scaled, handed, job(NEW, "succeeded")), want=want)
    assert after.of_type(HandOffReplicas) == []
    assert deleted(after) == [f"ocr-{OLD}"]


def test_gateway_routing_keeps_stable_full_and_routes_by_weight() -> None:
    want = desired(routing="gatewayAPI")
    decision = run(in_canary(step=1), canary_children(), want=want)
    assert deployments_applied(decision) == {OLD: ("stable", 4), NEW: ("canary", 2)}
    assert decision.of_type(ApplyTrafficObjects) == [ApplyTrafficObjects(OLD, NEW, 50)]


def test_leftover_deployments_of_other_revisions_are_deleted() -> None:
    decision = run(serving(), observed(deployment(OLD), deployment(NEWER, "canary")), want=desired(OLD))
    assert deleted(decision) == [f"ocr-{NEWER}"]


# ------------------------------------------------------------------------------------ status shape


def test_conditions_keep_their_transition_time_while_nothing_changes() -> None:
    first = run(serving(), observed(deployment(OLD)), want=desired(OLD))
    later = run(first.status, observed(deployment(OLD)), want=desired(OLD), now=T0 + timedelta(hours=1))
    assert later.status.conditions == first.status.conditions
    assert all(c.last_transition_time == format_time(T0) for c in later.status.conditions)
    assert later.of_type(RecordEvent) == []


def test_every_condition_carries_the_observed_generation() -> None:
    decision = run(in_canary(), canary_children(), want=desired(generation=7))
    assert {c.type for c in decision.status.conditions} == set(ConditionType)
    assert {c.observed_generation for c in decision.status.conditions} == {7}


def test_status_survives_a_round_trip_through_the_object() -> None:
    status = run(in_canary(), canary_children(), verdict=FAIL, now=T0 + INTERVAL).status
    assert RolloutStatus.from_dict(status.to_dict()) == status
    stored = status.to_dict()
    assert stored["canaryRevision"] == NEW
    assert stored["analysis"]["failedChecks"] == 1
    assert stored["conditions"][0]["type"] == "Ready"


def test_cleared_fields_are_written_as_nulls_so_a_merge_patch_removes_them() -> None:
    promoted = run(in_canary(step=1), canary_children(), verdict=PASS, now=T0 + INTERVAL).status.to_dict()
    assert promoted["canaryRevision"] is None
    assert promoted["canaryStep"] is None


def test_invalid_spec_fails_a_new_object_and_degrades_a_serving_one() -> None:
    fresh = decide_invalid_spec(RolloutStatus(), 1, "spec.rollout.steps[0]: must be at most 100", T0)
    assert fresh.phase == Phase.FAILED
    ready = next(c for c in fresh.conditions if c.type == ConditionType.READY)
    assert (ready.status, ready.reason) == ("False", Reason.INVALID_SPEC)
    assert "spec.rollout.steps[0]" in ready.message
    kept = decide_invalid_spec(serving(), 3, "spec.model.uri: required", T0)
    assert kept.phase == Phase.DEGRADED
    assert kept.observed_generation == 3
