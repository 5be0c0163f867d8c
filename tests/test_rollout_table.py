"""The rollout's transition table: every state by every input, read from docs/operator.md ("Transition
table") and run through `decide`. The documentation is the test: a cell that is wrong fails here.

Each row is a state (a recorded status with the children that go with it), each column an input that
arrives in that state; the cell is the state `decide` must move to (`state_of` of the new status).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modeldeploy.conditions import Phase
from modeldeploy.rollout import (
    AnalysisOutcome,
    Desired,
    JobResult,
    Manual,
    Measurements,
    Observed,
    ObservedDeployment,
    ObservedJob,
    RolloutStatus,
    SmokeOutcome,
    StateKind,
    decide,
    state_of,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "operator.md"
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
OLD, NEW, NEWER = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"
DEADLINE = timedelta(minutes=10)


@dataclass(frozen=True)
class Case:
    status: RolloutStatus
    observed: Observed
    desired: Desired
    manual: Manual = field(default_factory=Manual)
    measured: Measurements = field(default_factory=Measurements)
    now: datetime = T0 + timedelta(seconds=30)


def want(revision: str = NEW) -> Desired:
    # Thresholds of 1: a single failed (or unmeasurable) analysis is the one that rolls back.
    return Desired(
        name="ocr",
        generation=2,
        revision=revision,
        steps=(10, 50),
        interval=timedelta(seconds=30),
        progress_deadline=DEADLINE,
        failure_threshold=1,
        max_consecutive_errors=1,
        serving_replicas=2,
    )


def deployment(revision: str, track: str = "stable", available: int = 2) -> ObservedDeployment:
    return ObservedDeployment(f"ocr-{revision}", revision, track, 2, available, operator_sets_replicas=True)


def job(revision: str, state: str = "running") -> ObservedJob:
    return ObservedJob(f"ocr-optimize-{revision}", revision, state)  # type: ignore[arg-type]


def seen(*children: ObservedDeployment | ObservedJob) -> Observed:
    return Observed(
        jobs={c.revision: c for c in children if isinstance(c, ObservedJob)},
        deployments={c.revision: c for c in children if isinstance(c, ObservedDeployment)},
    )


def ready(revision: str = OLD) -> RolloutStatus:
    return RolloutStatus(observed_generation=1, phase=Phase.READY, stable_revision=revision)


def canary(step: int | None, phase: Phase = Phase.CANARY) -> RolloutStatus:
    return replace(
        ready(),
        phase=phase,
        canary_revision=NEW,
        canary_step=step,
        canary_weight=10 if step is not None else 0,
        canary_step_start=T0,
        optimization={"revision": NEW, "state": "Succeeded"},
    )


SUCCEEDED = {"revision": NEW, "state": "Succeeded"}
CANARY_CHILDREN = seen(deployment(OLD), deployment(NEW, "canary", available=0), job(NEW, "succeeded"))

# The rows: the state's name in the table → where a ModelDeployment in that state stands.
STATES: dict[str, Case] = {
    "Pending": Case(RolloutStatus(), seen(), want(OLD)),
    "Optimizing (first revision)": Case(
        RolloutStatus(phase=Phase.OPTIMIZING, optimization={"revision": OLD, "state": "Running"}),
        seen(job(OLD)),
        want(OLD),
    ),
    "Optimizing (a stable serves)": Case(
        replace(ready(), phase=Phase.OPTIMIZING, optimization={"revision": NEW, "state": "Running"}),
        seen(deployment(OLD), job(NEW)),
        want(),
    ),
    "Deploying": Case(
        replace(ready(OLD), phase=Phase.DEPLOYING, canary_step_start=T0),
        seen(deployment(OLD, available=0), job(OLD, "succeeded")),
        want(OLD),
    ),
    "Stable": Case(ready(OLD), seen(deployment(OLD), job(OLD, "succeeded")), want(OLD)),
    "CanaryStarting": Case(canary(None), CANARY_CHILDREN, want()),
    "Canary": Case(
        canary(0), seen(deployment(OLD), deployment(NEW, "canary"), job(NEW, "succeeded")), want()
    ),
    "Paused": Case(
        canary(0, Phase.PAUSED),
        seen(deployment(OLD), deployment(NEW, "canary"), job(NEW, "succeeded")),
        want(),
        manual=Manual(pause=True),
    ),
    "RolledBack": Case(
        replace(
            ready(),
            phase=Phase.DEGRADED,
            optimization=SUCCEEDED,
            last_rollback={"revision": NEW, "reason": "analysis failed", "cause": "AnalysisFailed"},
        ),
        seen(deployment(OLD), job(NEW, "succeeded")),
        want(),
    ),
    "OptimizationFailed": Case(
        replace(
            ready(), phase=Phase.DEGRADED, optimization={"revision": NEW, "state": "Failed", "error": "oom"}
        ),
        seen(deployment(OLD)),
        want(),
    ),
    "Failed (first revision)": Case(
        RolloutStatus(phase=Phase.FAILED, optimization={"revision": OLD, "state": "Failed", "error": "oom"}),
        seen(),
        want(OLD),
    ),
    "Failed (no pod in time)": Case(
        replace(ready(OLD), phase=Phase.FAILED, canary_step_start=T0 - DEADLINE),
        seen(deployment(OLD, available=0), job(OLD, "succeeded")),
        want(OLD),
    ),
}


def _job_finished(state: str, ok: bool) -> Callable[[Case], Case]:
    def arrive(case: Case) -> Case:
        revision = case.desired.revision
        result = JobResult(ok=True) if ok else JobResult(ok=False, error="accuracy drop too large")
        jobs = {**case.observed.jobs, revision: job(revision, state)}
        return replace(case, observed=replace(case.observed, jobs=jobs, job_result=result))

    return arrive


def _available(smoke_ok: bool) -> Callable[[Case], Case]:
    def arrive(case: Case) -> Case:
        up = {r: replace(d, available_replicas=d.replicas or 1) for r, d in case.observed.deployments.items()}
        smoke = SmokeOutcome(ok=smoke_ok, reason="model READY" if smoke_ok else "model UNAVAILABLE")
        return replace(
            case, observed=replace(case.observed, deployments=up), measured=Measurements(smoke=smoke)
        )

    return arrive


def _verdict(verdict: str) -> Callable[[Case], Case]:
    outcome = AnalysisOutcome(verdict, f"scripted {verdict}")  # type: ignore[arg-type]
    return lambda case: replace(case, measured=Measurements(analysis=outcome))


def _manual(**flags: bool) -> Callable[[Case], Case]:
    return lambda case: replace(case, manual=replace(case.manual, **flags))


# The columns: the input's name in the table → how it arrives.
INPUTS: dict[str, Callable[[Case], Case]] = {
    "job succeeded": _job_finished("succeeded", ok=True),
    "job failed": _job_finished("failed", ok=False),
    "pods available, model READY": _available(smoke_ok=True),
    "model not READY": _available(smoke_ok=False),
    "verdict pass": _verdict("pass"),
    "verdict fail": _verdict("fail"),
    "verdict error": _verdict("error"),
    "verdict wait": _verdict("wait"),
    "progressDeadline": lambda case: replace(case, now=T0 + DEADLINE),
    "promote": _manual(promote=True),
    "abort": _manual(abort=True),
    "pause": _manual(pause=True),
    "pause removed": _manual(pause=False),
    "retry": _manual(retry=True),
    "spec change": lambda case: replace(case, desired=replace(case.desired, revision=NEWER, generation=3)),
}


def read_table() -> tuple[list[str], dict[str, list[str]]]:
    text = DOC.read_text()
    section = text[text.index("## Transition table") :].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip().strip("`") for cell in rows[0].strip("|").split("|")][1:]
    table = {}
    for line in rows[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0].strip("*")] = [re.sub(r"[*`]", "", cell).split(" ")[0] for cell in cells[1:]]
    return header, table


def cells() -> list[tuple[str, str, str]]:
    """(state, input, expected state); `·` in the table means the state stays."""
    header, table = read_table()
    return [
        (state, column, state.split(" ")[0] if table[state][i] == "·" else table[state][i])
        for state in table
        for i, column in enumerate(header)
    ]


def test_the_table_covers_every_state_and_every_input() -> None:
    header, table = read_table()
    assert header == list(INPUTS)
    assert list(table) == list(STATES)
    assert {kind for kind in StateKind} <= {
        state_of(case.desired, case.status).kind for case in STATES.values()
    }
    for state, case in STATES.items():
        assert state.split(" ")[0] == state_of(case.desired, case.status).kind, state


@pytest.mark.parametrize(("state", "column", "expected"), cells(), ids=[f"{s} | {c}" for s, c, _ in cells()])
def test_transition(state: str, column: str, expected: str) -> None:
    case = INPUTS[column](STATES[state])
    decision = decide(
        case.desired, case.status, case.observed, manual=case.manual, measured=case.measured, now=case.now
    )
    assert state_of(case.desired, decision.status).kind == expected
