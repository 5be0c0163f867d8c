"""Choosing what ships, and the preferred batch sizes for Triton's dynamic batcher. Pure functions.

Objective: the smallest candidate not measurably slower than the fastest. Candidates are timed in the same
interleaved rounds, so each round gives a paired latency ratio (candidate / fastest); its median and a 95%
distribution-free confidence interval (order statistics of the per-round ratios) say how much slower a
candidate is. A candidate is "as fast" when the interval's low end is within NOISE_BAND of 1 (it cannot be
shown to be more than 5% slower), and among those the smallest file wins; a remaining tie goes to the
earlier candidate (the original comes first). A candidate measurably slower than the baseline (the
original: low end of its ratio above 1) never wins on size alone: shipping must not cost latency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modeldeploy.optimizer.outcome import CandidateOutcome, Timing

NOISE_BAND = 0.05
# Preferred batch sizes reach at least this share of the best measured throughput.
PREFERRED_THROUGHPUT_SHARE = 0.9
Z_95 = 1.96


@dataclass(frozen=True)
class Choice:
    winner: CandidateOutcome
    explanation: str


@dataclass(frozen=True)
class Ratio:
    """Latency ratio of one candidate to another, paired round by round: median and 95% interval."""

    median: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"median": round(self.median, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


def paired_ratio(candidate: Timing, reference: Timing) -> Ratio:
    """Per-round ratios when both were timed in the same rounds; else the ratio of their p50s (no spread)."""
    if not candidate.rounds or len(candidate.rounds) != len(reference.rounds):
        value = candidate.latency_ms_p50 / reference.latency_ms_p50
        return Ratio(value, value, value)
    ratios = sorted(a / b for a, b in zip(candidate.rounds, reference.rounds, strict=True))
    count = len(ratios)
    half_width = Z_95 * math.sqrt(count) / 2
    low = max(math.floor(count / 2 - half_width), 0)
    high = min(math.ceil(count / 2 + half_width), count - 1)
    middle = ratios[count // 2] if count % 2 else (ratios[count // 2 - 1] + ratios[count // 2]) / 2
    return Ratio(middle, ratios[low], ratios[high])


def choose_by_objective(
    candidates: Sequence[CandidateOutcome], baseline: CandidateOutcome | None = None
) -> Choice:
    """The smallest kept candidate not measurably slower than the fastest (nor than `baseline`)."""
    eligible = [
        c for c in candidates if c.status == "kept" and c.timing is not None and c.size_bytes is not None
    ]
    if not eligible:
        raise ValueError("no kept and measured candidate to choose from (the original is always one)")
    fastest = min(eligible, key=lambda c: c.timing.latency_ms_p50 if c.timing else math.inf)
    assert fastest.timing is not None
    close = [c for c in eligible if c.timing and paired_ratio(c.timing, fastest.timing).low <= 1 + NOISE_BAND]
    capped_by_baseline = False
    if baseline is not None and baseline.timing is not None:
        reference = baseline.timing
        no_slower = [c for c in close if c.timing and paired_ratio(c.timing, reference).low <= 1.0]
        capped_by_baseline = len(no_slower) < len(close)
        close = no_slower or [fastest]
    winner = min(close, key=lambda c: c.size_bytes or 0)  # min() keeps the earliest among equal sizes
    others = ", ".join(c.name for c in close if c is not winner)
    band = (
        f"not measurably slower than the fastest ({fastest.name}, {fastest.timing.latency_ms_p50:.3f} ms; "
        f"95% interval of the paired latency ratio within {NOISE_BAND:.0%})"
    )
    if capped_by_baseline:
        assert baseline is not None and baseline.timing is not None
        band += f", no slower than the original ({baseline.timing.latency_ms_p50:.3f} ms)"
    explanation = band + (f" and smallest among {winner.name}, {others}" if others else "")
    return Choice(winner=winner, explanation=explanation)


def choose(
    candidates: Sequence[CandidateOutcome], requested: str | None, baseline: CandidateOutcome | None = None
) -> Choice:
    """`requested` (an explicit --quantization) wins when it passed the gate; else the objective decides."""
    if requested is not None:
        for candidate in candidates:
            if candidate.name == requested and candidate.status == "kept":
                return Choice(candidate, f"requested {requested!r} and it passed the accuracy gate")
        fallback = choose_by_objective(candidates, baseline)
        return Choice(
            fallback.winner,
            f"requested {requested!r} did not pass (see its reason); {fallback.explanation}",
        )
    return choose_by_objective(candidates, baseline)


def preferred_batch_sizes(throughput: Mapping[int, float]) -> list[int]:
    """Batch sizes worth waiting for: the smallest reaching 90% of the peak throughput, and the peak itself.

    Triton sends a batch as soon as it reaches a preferred size; waiting longer than that buys little.
    """
    if not throughput:
        return []
    peak_size = max(throughput, key=lambda size: (throughput[size], -size))
    enough = min(
        size
        for size, value in throughput.items()
        if value >= PREFERRED_THROUGHPUT_SHARE * throughput[peak_size]
    )
    return sorted({enough, peak_size})


def batch_sizes_to_measure(max_batch_size: int, limit: int = 64) -> list[int]:
    """Powers of two up to the max batch size (and the max itself), at most `limit`."""
    top = min(max_batch_size, limit)
    sizes = [1 << power for power in range(top.bit_length()) if (1 << power) <= top]
    if top not in sizes and top > 0:
        sizes.append(top)
    return sizes
