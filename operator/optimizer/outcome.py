"""What happened to one candidate: built or not, its accuracy, its timing, kept or not and why. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # keeps this module (and report.py, which the CLI imports eagerly) free of numpy
    from modeldeploy.optimizer.accuracy import AccuracyReport

# kept: passed the gate (eligible); rejected: over the accuracy bound or slower than asked;
# failed: the step raised (reason says what); skipped: not applicable here (e.g. no GPU for TensorRT).
Status = Literal["kept", "rejected", "failed", "skipped"]


@dataclass(frozen=True)
class Timing:
    latency_ms_p50: float
    latency_ms_p99: float
    throughput_per_s: float  # items (batch elements) per second, one request at a time
    batch_size: int
    runs: int
    # Milliseconds per round, in round order: candidates timed together are paired round by round.
    rounds: tuple[float, ...] = ()


@dataclass(frozen=True)
class CandidateOutcome:
    name: str
    status: Status
    reason: str
    path: Path | None = None
    size_bytes: int | None = None
    accuracy: AccuracyReport | None = None
    timing: Timing | None = None
    # Which candidate this one was built from ("original" for the input model itself).
    base: str | None = None
    # What a search step tried and decided (int8: plans tried, nodes kept in float and why).
    details: Mapping[str, Any] | None = None

    def with_reason(self, reason: str) -> CandidateOutcome:
        return replace(self, reason=reason)

    def to_json(self) -> dict[str, object]:
        timing = self.timing
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "base": self.base,
            "size_bytes": self.size_bytes,
            "latency_ms_p50": None if timing is None else round(timing.latency_ms_p50, 4),
            "latency_ms_p99": None if timing is None else round(timing.latency_ms_p99, 4),
            "throughput_per_s": None if timing is None else round(timing.throughput_per_s, 2),
            "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
            **({"search": dict(self.details)} if self.details is not None else {}),
        }
