"""The pure pieces around the decision: replica splits, the Job's termination message, reading children,
and the status shape against the CRD (a field the schema does not declare would be pruned on a cluster)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from modeldeploy.conditions import ConditionType, Reason
from modeldeploy.job_result import message_from_pods, parse_termination_message
from modeldeploy.reconciler import observed_deployment, observed_job, owner_key
from modeldeploy.rollout import (
    AnalysisOutcome,
    Desired,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    RolloutStatus,
    decide,
)
from modeldeploy.traffic import ReplicaSplit, split_replicas

CRD = pathlib.Path(__file__).resolve().parent.parent / "crds" / "modeldeployment.yaml"


# ------------------------------------------------------------------------------------ replica splits


# (weight, routing, serving replicas, autoscaled, replicas the autoscaler runs now) → split
SPLITS: list[tuple[tuple[int, Any, int, bool, int | None], ReplicaSplit]] = [
    ((10, "replicas", 10, False, None), ReplicaSplit(stable=9, canary=1)),
    ((50, "replicas", 4, False, None), ReplicaSplit(stable=2, canary=2)),
    ((10, "replicas", 1, False, None), ReplicaSplit(stable=1, canary=1)),  # stable never drops to zero
    ((100, "replicas", 4, False, None), ReplicaSplit(stable=1, canary=4)),
    ((25, "gatewayAPI", 4, False, None), ReplicaSplit(stable=4, canary=1)),
    ((50, "gatewayAPI", 4, False, None), ReplicaSplit(stable=4, canary=2)),
    ((20, "replicas", 1, True, 8), ReplicaSplit(stable=None, canary=2)),  # 2 / (8 + 2) = 20%
    ((50, "replicas", 1, True, 3), ReplicaSplit(stable=None, canary=3)),
    ((20, "replicas", 2, True, None), ReplicaSplit(stable=None, canary=1)),  # autoscaler not started yet
    ((50, "gatewayAPI", 1, True, 6), ReplicaSplit(stable=None, canary=3)),
]


@pytest.mark.parametrize(("case", "expected"), SPLITS)
def test_replica_split(case: tuple[int, Any, int, bool, int | None], expected: ReplicaSplit) -> None:
    assert split_replicas(*case) == expected


def test_replica_split_refuses_a_weight_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        split_replicas(120, "replicas", 4, False, None)


# ------------------------------------------------------------------------------------ the Job's result


def test_successful_message_becomes_the_optimization_summary() -> None:
    message = json.dumps(
        {
            "v": 1,
            "cached": True,
            "chosen": "fp16",
            "before": {"sizeBytes": 9},
            "after": {"sizeBytes": 4},
            "x": 1,
        }
    )
    result = parse_termination_message(message, 0)
    assert result.ok and result.cached
    assert result.summary == {"chosen": "fp16", "before": {"sizeBytes": 9}, "after": {"sizeBytes": 4}}


@pytest.mark.parametrize(
    ("message", "exit_code", "error"),
    [
        ('{"v": 1, "error": "model not found at s3://m/x.onnx"}', 1, "model not found at s3://m/x.onnx"),
        (
            "Traceback ...\nMemoryError",
            137,
            "Traceback ... MemoryError",
        ),  # FallbackToLogsOnError: the log tail
        ('{"v": 1, "chosen": "fp16"}', 2, "the optimizer exited with code 2"),
        ("", 1, "the optimizer left no termination message"),
        ("not json", 0, "unreadable result: not json"),
    ],
)
def test_failures_carry_a_reason(message: str, exit_code: int, error: str) -> None:
    result = parse_termination_message(message, exit_code)
    assert not result.ok
    assert result.error == error


def test_long_errors_keep_their_end() -> None:
    result = parse_termination_message("x" * 5000 + " the real cause", 1)
    assert result.error.endswith("the real cause")
    assert len(result.error) <= 513


def test_message_comes_from_the_newest_terminated_container() -> None:
    def pod(finished: str, message: str, code: int) -> dict[str, Any]:
        terminated = {"finishedAt": finished, "message": message, "exitCode": code}
        return {"status": {"containerStatuses": [{"state": {"terminated": terminated}}]}}

    pods = [pod("2026-01-01T00:00:05Z", "first try", 1), pod("2026-01-01T00:01:00Z", "second try", 0)]
    assert message_from_pods(pods) == ("second try", 0)
    assert message_from_pods([{"status": {"containerStatuses": [{"state": {"running": {}}}]}}]) == (
        None,
        None,
    )


# ------------------------------------------------------------------------------------ reading children


def test_job_states_are_read_from_its_conditions() -> None:
    def job(conditions: list[dict[str, str]], **status: str) -> dict[str, Any]:
        meta = {"name": "ocr-optimize-abc", "labels": {"modeldeploy.io/revision": "abc"}}
        return {"metadata": meta, "status": {"conditions": conditions, **status}}

    running = observed_job(job([]))
    assert running is not None and running.state == "running"
    done = observed_job(
        job(
            [{"type": "Complete", "status": "True"}],
            startTime="2026-01-01T00:00:00Z",
            completionTime="2026-01-01T00:02:30Z",
        )
    )
    assert done is not None and done.state == "succeeded"
    assert done.finished is not None and done.started is not None
    assert done.finished - done.started == timedelta(minutes=2, seconds=30)
    failed = observed_job(
        job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}])
    )
    assert failed is not None and (failed.state, failed.reason) == ("failed", "DeadlineExceeded: too slow")
    assert observed_job({"metadata": {"name": "other", "labels": {}}}) is None


def test_deployment_and_owner_are_read_from_labels() -> None:
    body = {
        "metadata": {
            "name": "ocr-abc",
            "namespace": "ml",
            "labels": {
                "modeldeploy.io/revision": "abc",
                "modeldeploy.io/track": "canary",
                "app.kubernetes.io/instance": "ocr",
            },
        },
        "spec": {},
        "status": {"availableReplicas": 2},
    }
    assert observed_deployment(body) == ObservedDeployment("ocr-abc", "abc", "canary", None, 2)
    assert owner_key(body) == ("ml", "ocr")


# ------------------------------------------------------------------------------------ status vs CRD


def _undeclared(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        missing = [f"{path}.{key}" for key in value if key not in properties and value[key] is not None]
        return missing + [
            problem
            for key, item in value.items()
            if key in properties and item is not None
            for problem in _undeclared(item, properties[key], f"{path}.{key}")
        ]
    if isinstance(value, list):
        return [
            problem for item in value for problem in _undeclared(item, schema.get("items", {}), f"{path}[]")
        ]
    return []


def test_every_status_field_the_operator_writes_is_declared_in_the_crd() -> None:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    desired = Desired(name="ocr", generation=3, revision="bbbbbbbbbb")
    status = RolloutStatus(
        stable_revision="aaaaaaaaaa",
        canary_revision="bbbbbbbbbb",
        canary_step=0,
        canary_weight=10,
        canary_step_start=now - timedelta(minutes=5),
        optimization={
            "revision": "bbbbbbbbbb",
            "job": "j",
            "state": "Succeeded",
            "cached": False,
            "chosen": "fp16",
        },
        last_rollback={
            "revision": "cccccccccc",
            "reason": "x",
            "cause": "Aborted",
            "time": "2026-01-01T00:00:00Z",
        },
    )
    seen = Observed(
        jobs={"bbbbbbbbbb": ObservedJob("j", "bbbbbbbbbb", "succeeded")},
        deployments={
            "aaaaaaaaaa": ObservedDeployment("ocr-a", "aaaaaaaaaa", "stable", 3, 3),
            "bbbbbbbbbb": ObservedDeployment("ocr-b", "bbbbbbbbbb", "canary", 1, 1),
        },
    )
    verdict = AnalysisOutcome("fail", "error rate", ("errorRate",), {"requests": 9.0}, {"requests": 3.0})
    decision = decide(
        desired, status, seen, manual=Manual(), measured=Measurements(analysis=verdict), now=now
    )
    written = decision.status.to_dict()
    assert written["analysis"]["failedChecks"] == 1
    assert _undeclared(written, schema, "status") == []
    reasons = {c["reason"] for c in written["conditions"]}
    assert reasons <= {str(reason) for reason in Reason}
    assert {c["type"] for c in written["conditions"]} == {str(kind) for kind in ConditionType}
