"""The typed view of `.status` and its stored (camelCase) form.

The reconciler replaces the whole status at once (with the object's resourceVersion): `to_dict` is the
complete stored form, and `None` means "absent" (`stored_form` drops it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modeldeploy.conditions import Condition, Phase, format_time, parse_time
from modeldeploy.rollout.inputs import VerdictKind


@dataclass(frozen=True)
class AnalysisStatus:
    time: datetime | None = None
    verdict: VerdictKind | None = None
    reason: str = ""
    failed_checks: int = 0  # failed analyses of the current canary
    errors: int = 0  # consecutive analyses that could not be measured
    checks: tuple[str, ...] = ()  # names of the checks that failed last time
    stable: Mapping[str, float | None] = field(default_factory=dict)
    canary: Mapping[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any] | None:
        if self.time is None:
            return None
        return {
            "time": format_time(self.time),
            "verdict": self.verdict,
            "reason": self.reason,
            "failedChecks": self.failed_checks,
            "errors": self.errors,
            "checks": list(self.checks),
            "stable": dict(self.stable),
            "canary": dict(self.canary),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> AnalysisStatus:
        if not raw:
            return cls()
        verdict = raw.get("verdict")
        return cls(
            time=parse_time(raw.get("time")),
            verdict=verdict if verdict in ("pass", "fail", "wait", "error") else None,
            reason=str(raw.get("reason", "")),
            failed_checks=int(raw.get("failedChecks", 0)),
            errors=int(raw.get("errors", 0)),
            checks=tuple(raw.get("checks", ())),
            stable=dict(raw.get("stable") or {}),
            canary=dict(raw.get("canary") or {}),
        )


@dataclass(frozen=True)
class RolloutStatus:
    """Typed view of `.status` (camelCase in the object; see `to_dict`)."""

    observed_generation: int = 0
    phase: Phase = Phase.PENDING
    conditions: tuple[Condition, ...] = ()
    stable_revision: str | None = None
    canary_revision: str | None = None
    canary_weight: int = 0
    canary_step: int | None = None  # None: canary not ready yet, no traffic step started
    canary_step_start: datetime | None = None  # when the current step (or the canary) started
    optimization: Mapping[str, Any] = field(default_factory=dict)
    analysis: AnalysisStatus = field(default_factory=AnalysisStatus)
    last_rollback: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The status as stored; `None` values delete the key under a merge patch."""
        return {
            "observedGeneration": self.observed_generation,
            "phase": str(self.phase),
            "conditions": [condition.to_dict() for condition in self.conditions],
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "canaryWeight": self.canary_weight,
            "canaryStep": self.canary_step,
            "canaryStepStartTime": format_time(self.canary_step_start) if self.canary_step_start else None,
            "optimization": dict(self.optimization) or None,
            "analysis": self.analysis.to_dict(),
            "lastRollback": dict(self.last_rollback) or None,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RolloutStatus:
        raw = raw or {}
        try:
            phase = Phase(raw.get("phase", Phase.PENDING))
        except ValueError:
            phase = Phase.PENDING
        conditions = tuple(
            condition
            for condition in (Condition.from_dict(item) for item in raw.get("conditions") or ())
            if condition is not None
        )
        step = raw.get("canaryStep")
        return cls(
            observed_generation=int(raw.get("observedGeneration") or 0),
            phase=phase,
            conditions=conditions,
            stable_revision=raw.get("stableRevision") or None,
            canary_revision=raw.get("canaryRevision") or None,
            canary_weight=int(raw.get("canaryWeight") or 0),
            canary_step=int(step) if step is not None else None,
            canary_step_start=parse_time(raw.get("canaryStepStartTime")),
            optimization=dict(raw.get("optimization") or {}),
            analysis=AnalysisStatus.from_dict(raw.get("analysis")),
            last_rollback=dict(raw.get("lastRollback") or {}),
        )


def stored_form(value: Any) -> Any:
    """The status as the API server keeps it: keys whose value is `None` are absent (recursively)."""
    if isinstance(value, Mapping):
        return {key: stored_form(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [stored_form(item) for item in value]
    return value


def replacing_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch that turns `before` into exactly `after`: every key `after` lacks is nulled,
    at every depth, so no stale key of a replaced sub-object survives (RFC 7386 merges objects)."""
    patch: dict[str, Any] = {}
    for key in before:
        if key not in after or after[key] is None:
            patch[key] = None
    for key, value in after.items():
        if value is None:
            continue
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = replacing_patch(old, value)
        else:
            patch[key] = value
    return patch
