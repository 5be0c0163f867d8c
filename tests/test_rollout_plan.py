"""The plan of children (surge first, retire after availability, replica hand-off, pruning by owner uid),
the retry annotation's two steps, the whole-status write and the failure backoff, as tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from test_rollout import (
    NEW,
    OLD,
    T0,
    canary_children_at,
    deleted,
    deployment,
    deployments_applied,
    desired,
    in_canary,
    job,
    observed,
    run,
    serving,
)

from modeldeploy.conditions import ConditionType, Phase, Reason
from modeldeploy.handlers import failure_delay
from modeldeploy.rollout import (
    ANNOTATION_RETRY,
    ClearAnnotation,
    DeleteJob,
    HandOffReplicas,
    RecordEvent,
    RolloutStatus,
    prune,
    replacing_patch,
    stored_form,
)


def test_rollback_restores_stable_to_full_size_before_deleting_the_canary() -> None:
    """Defect 4: stable was shrunk to 2 beside a 2-pod canary; it grows back first."""
    shrunk = observed(
        deployment(OLD, replicas=2), deployment(NEW, "canary", replicas=2), job(NEW, "succeeded")
    )
    status = in_canary(step=1, canary_weight=50)
    aborted = run(status, shrunk, annotations={"modeldeploy.io/abort": "true"})
    assert aborted.status.phase == Phase.DEGRADED
    assert deployments_applied(aborted) == {OLD: ("stable", 4)}
    assert deleted(aborted) == []  # the canary keeps serving until stable has its 4 pods
    growing = observed(deployment(OLD, replicas=4, available=3), deployment(NEW, "canary", replicas=2))
    assert deleted(run(aborted.status, growing)) == []
    grown = observed(deployment(OLD, replicas=4, available=4), deployment(NEW, "canary", replicas=2))
    assert deleted(run(aborted.status, grown)) == [f"ocr-{NEW}"]


@pytest.mark.parametrize(
    ("canary_available", "stable_replicas"),
    [(0, 4), (1, 3), (2, 2), (3, 2)],
    ids=["none-available", "one", "all-wanted", "more-than-wanted"],
)
def test_stable_gives_up_only_what_the_canary_already_serves(
    canary_available: int, stable_replicas: int
) -> None:
    """Defect 4 at a step: 50 % of 4 wants 2 + 2; stable shrinks by the canary's available pods."""
    status = in_canary(step=1, canary_weight=50)
    seen = canary_children_at(replicas=2, available=canary_available)
    assert deployments_applied(run(status, seen)) == {OLD: ("stable", stable_replicas), NEW: ("canary", 2)}


def test_turning_an_autoscaler_on_in_place_hands_the_count_over_before_dropping_it() -> None:
    """Defect 1: engine none → hpa on the same revision; the operator set replicas=4 until now."""
    decision = run(serving(), observed(deployment(OLD)), want=desired(OLD, autoscaled=True))
    kinds = [type(action).__name__ for action in decision.actions]
    assert decision.of_type(HandOffReplicas) == [HandOffReplicas(OLD, 4)]
    assert kinds.index("HandOffReplicas") < kinds.index("ApplyDeployment")
    assert deployments_applied(decision) == {OLD: ("stable", None)}
    handed = observed(deployment(OLD, operator_sets_replicas=False))
    assert run(serving(), handed, want=desired(OLD, autoscaled=True)).of_type(HandOffReplicas) == []


def test_retry_of_a_failed_optimization_removes_the_failed_job_first_and_keeps_the_annotation() -> None:
    status = replace(
        serving(), phase=Phase.DEGRADED, optimization={"revision": NEW, "state": "Failed", "error": "oom"}
    )
    retry = {ANNOTATION_RETRY: "true"}
    first = run(status, observed(deployment(OLD), job(NEW, "failed")), annotations=retry)
    assert first.of_type(DeleteJob) == [DeleteJob(f"ocr-optimize-{NEW}")]
    assert ClearAnnotation(ANNOTATION_RETRY) not in first.actions
    assert first.status.phase == Phase.DEGRADED
    second = run(first.status, observed(deployment(OLD)), annotations=retry)
    assert ClearAnnotation(ANNOTATION_RETRY) in second.actions
    assert second.status.phase == Phase.OPTIMIZING
    assert second.status.optimization == {"revision": NEW, "job": f"ocr-optimize-{NEW}", "state": "Running"}
    assert Reason.RETRYING in [event.reason for event in second.of_type(RecordEvent)]


def test_first_revision_without_an_available_pod_fails_at_the_progress_deadline() -> None:
    status = replace(serving(), phase=Phase.DEPLOYING, canary_step_start=T0)
    unavailable = observed(deployment(OLD, available=0))
    waiting = run(status, unavailable, want=desired(OLD), now=T0 + timedelta(minutes=9))
    assert waiting.status.phase == Phase.DEPLOYING
    assert waiting.requeue_after == timedelta(minutes=1)
    failed = run(status, unavailable, want=desired(OLD), now=T0 + timedelta(minutes=10))
    assert failed.status.phase == Phase.FAILED
    ready = next(c for c in failed.status.conditions if c.type == ConditionType.READY)
    assert (ready.status, ready.reason) == ("False", Reason.PROGRESS_DEADLINE_EXCEEDED)
    assert ANNOTATION_RETRY in ready.message


def test_a_missing_optional_api_is_a_condition_naming_what_to_install_or_turn_off() -> None:
    seen = replace(observed(deployment(OLD)), missing_apis=("PodMonitor", "HTTPRoute"))
    decision = run(serving(), seen, want=desired(OLD))
    applied = next(c for c in decision.status.conditions if c.type == ConditionType.CHILDREN_APPLIED)
    assert (applied.status, applied.reason) == ("False", Reason.API_NOT_INSTALLED)
    assert "Prometheus Operator" in applied.message and "spec.monitoring.podMonitor: false" in applied.message
    assert "Gateway API" in applied.message and "trafficRouting.type: replicas" in applied.message
    assert decision.status.phase == Phase.READY


def test_a_failed_reconcile_is_recorded_by_the_next_one() -> None:
    seen = replace(observed(deployment(OLD)), last_failure="KubeError: 500: etcdserver: timeout")
    decision = run(serving(), seen, want=desired(OLD))
    reconciled = next(c for c in decision.status.conditions if c.type == ConditionType.RECONCILED)
    assert (reconciled.status, reconciled.reason) == ("False", Reason.RECONCILE_FAILED)
    assert "etcdserver: timeout" in reconciled.message


def owned(kind: str, name: str, uid: str = "uid-1", controller: bool = True) -> dict[str, Any]:
    ref = {"uid": uid, "controller": controller, "kind": "ModelDeployment", "name": "ocr"}
    return {"apiVersion": "v", "kind": kind, "metadata": {"name": name, "ownerReferences": [ref]}}


@pytest.mark.parametrize(
    ("child", "pruned"),
    [
        (owned("HorizontalPodAutoscaler", "ocr"), True),
        (owned("Service", "ocr"), False),  # still wanted
        (owned("HorizontalPodAutoscaler", "ocr", uid="uid-of-a-deleted-namesake"), False),
        (owned("HorizontalPodAutoscaler", "ocr", controller=False), False),
        ({"apiVersion": "v", "kind": "PodMonitor", "metadata": {"name": "ocr"}}, False),  # labels alone
    ],
    ids=["owned-unwanted", "wanted", "other-owner", "not-controller", "no-owner"],
)
def test_prune_deletes_only_what_this_object_controls_and_no_longer_wants(
    child: dict[str, Any], pruned: bool
) -> None:
    assert (prune([("v", "Service", "ocr")], [child], "uid-1") == [child]) is pruned


def test_status_write_replaces_sub_objects_whole() -> None:
    """Defect 5: a merge patch of the new status kept `optimization.error` of the failed try."""
    before = {"phase": "Failed", "optimization": {"state": "Failed", "error": "oom"}, "canaryStep": 1}
    after = stored_form(
        RolloutStatus(phase=Phase.READY, optimization={"state": "Succeeded", "cached": True}).to_dict()
    )
    patch = replacing_patch(before, after)
    assert patch["optimization"] == {"state": "Succeeded", "error": None, "cached": True}
    assert patch["canaryStep"] is None
    assert _merge(before, patch) == after


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


class _Runtime:
    retry_s = 5.0
    retry_max_s = 300.0


@pytest.mark.parametrize(("failures", "ceiling"), [(1, 5.0), (2, 10.0), (4, 40.0), (7, 300.0), (50, 300.0)])
def test_failures_back_off_exponentially_with_a_cap(failures: int, ceiling: float) -> None:
    delays = [failure_delay(_Runtime(), failures) for _ in range(50)]  # type: ignore[arg-type]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
