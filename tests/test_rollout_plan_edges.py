"""The plan at its edges: replica floors, an autoscaled fleet, a canary that starts or has no pods yet, the
hand-off's count, when other revisions may go and which Jobs are removed. `plan_children` directly."""

from __future__ import annotations

from dataclasses import replace

from test_rollout import NEW, NEWER, OLD, deployment, desired, in_canary, job, observed, serving

from modeldeploy.conditions import Phase
from modeldeploy.rollout import (
    Action,
    ApplyDeployment,
    ApplyJob,
    ApplyTrafficObjects,
    DeleteDeployment,
    DeleteJob,
    Desired,
    HandOffReplicas,
    Observed,
    RolloutStatus,
    plan_children,
)


def _sizes(actions: list[Action]) -> dict[str, int | None]:
    return {a.revision: a.replicas for a in actions if isinstance(a, ApplyDeployment)}


def _deleted(actions: list[Action]) -> list[str]:
    return [a.name for a in actions if isinstance(a, DeleteDeployment | DeleteJob)]


def _plan(want: Desired, status: RolloutStatus, seen: Observed) -> list[Action]:
    return plan_children(want, status, seen)


def test_zero_serving_replicas_still_run_one_pod() -> None:
    want = desired(OLD, serving_replicas=0)
    seen = observed(deployment(OLD, replicas=1, available=1), deployment(NEW, replicas=1))
    actions = _plan(want, serving(), seen)
    assert _sizes(actions) == {OLD: 1}
    assert _deleted(actions) == [f"ocr-{NEW}"]  # one available pod is the whole stable
    immediate = replace(desired(serving_replicas=0), strategy="immediate")
    assert _sizes(_plan(immediate, in_canary(None), observed(deployment(OLD)))) == {OLD: 1, NEW: 1}


def test_without_a_canary_no_traffic_goes_to_one() -> None:
    stale = replace(serving(), canary_weight=50)  # a weight left behind with no canary revision
    traffic = [
        a for a in _plan(desired(OLD), stale, observed(deployment(OLD))) if isinstance(a, ApplyTrafficObjects)
    ]
    assert traffic == [ApplyTrafficObjects(OLD, None, 0)]


def test_an_autoscaled_canary_is_sized_against_the_fleet_the_autoscaler_runs() -> None:
    want = desired(autoscaled=True)
    status = in_canary(step=1)  # 50 %
    big_fleet = observed(deployment(OLD, replicas=6, operator_sets_replicas=False), deployment(NEW, "canary"))
    assert _sizes(_plan(want, status, big_fleet)) == {OLD: None, NEW: 6}
    # No stable Deployment seen yet: the configured replicas (4) are the fleet.
    assert _sizes(_plan(want, status, observed(deployment(NEW, "canary")))) == {OLD: None, NEW: 4}


def test_a_canary_without_steps_starts_at_full_weight() -> None:
    want = desired(steps=())
    starting = in_canary(step=None)
    assert _sizes(_plan(want, starting, observed(deployment(OLD)))) == {OLD: 4, NEW: 4}


def test_stable_keeps_its_full_size_while_the_canary_starts() -> None:
    starting = in_canary(step=None)
    seen = observed(deployment(OLD), deployment(NEW, "canary", replicas=1, available=1))
    assert _sizes(_plan(desired(), starting, seen)) == {OLD: 4, NEW: 1}


def test_stable_keeps_its_full_size_while_no_canary_pod_is_seen() -> None:
    at_step = in_canary(step=1)
    assert _sizes(_plan(desired(), at_step, observed(deployment(OLD)))) == {OLD: 4, NEW: 2}


def test_the_hand_off_counts_only_stable_fleets() -> None:
    want = desired(autoscaled=True)
    seen = observed(deployment(OLD, replicas=3), deployment(NEW, "canary", replicas=6))
    assert [a for a in _plan(want, in_canary(step=1), seen) if isinstance(a, HandOffReplicas)] == [
        HandOffReplicas(OLD, 3)
    ]
    # A Deployment without a replica count runs Kubernetes' default of one.
    unset = observed(replace(deployment(OLD), replicas=None))
    assert [
        a for a in _plan(desired(OLD, autoscaled=True), serving(), unset) if isinstance(a, HandOffReplicas)
    ] == [HandOffReplicas(OLD, 1)]


def test_other_revisions_wait_for_a_stable_that_is_not_there_yet() -> None:
    seen = observed(deployment(NEWER))
    assert _deleted(_plan(desired(OLD), serving(), seen)) == []


def test_an_autoscaled_stable_is_fully_available_at_the_autoscalers_count() -> None:
    want = desired(OLD, autoscaled=True)
    short = observed(deployment(OLD, replicas=3, available=2, operator_sets_replicas=False), deployment(NEW))
    assert _deleted(_plan(want, serving(), short)) == []
    full = observed(deployment(OLD, replicas=3, available=3, operator_sets_replicas=False), deployment(NEW))
    assert _deleted(_plan(want, serving(), full)) == [f"ocr-{NEW}"]
    unset = replace(deployment(OLD, available=1, operator_sets_replicas=False), replicas=None)
    assert _deleted(_plan(want, serving(), observed(unset, deployment(NEW)))) == [f"ocr-{NEW}"]


def test_a_running_job_is_cancelled_outside_optimizing_and_kept_while_optimizing() -> None:
    running = observed(deployment(OLD), job(NEW))
    aborted = replace(serving(), phase=Phase.DEGRADED)
    assert _deleted(_plan(desired(), aborted, running)) == [f"ocr-optimize-{NEW}"]
    optimizing = replace(serving(), phase=Phase.OPTIMIZING)
    actions = _plan(desired(), optimizing, running)
    assert ApplyJob(NEW) in actions
    assert _deleted(actions) == []
    finished = observed(deployment(OLD), job(NEW, "failed"))
    assert _deleted(_plan(desired(), aborted, finished)) == []  # a finished Job keeps its logs
