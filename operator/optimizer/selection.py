"""Choosing what ships, and the preferred batch sizes for Triton's dynamic batcher. Pure functions.

Objective: the lowest p50 latency at the measured batch size; candidates within NOISE_BAND of the fastest
count as equally fast (timings on a shared machine vary by a few percent), and among those the smallest
file wins; a remaining tie goes to the earlier candidate (the original comes first). A candidate measured
slower than the baseline (the original) never wins on size alone: shipping must not cost latency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modeldeploy.optimizer.outcome import CandidateOutcome

NOISE_BAND = 0.05
# Preferred batch sizes reach at least this share of the best measured throughput.
PREFERRED_THROUGHPUT_SHARE = 0.9


@dataclass(frozen=True)
class Choice:
    winner: CandidateOutcome
    explanation: str


def choose_by_objective(
    candidates: Sequence[CandidateOutcome], baseline: CandidateOutcome | None = None
) -> Choice:
    """The kept candidate that is fastest (within the noise band, and no slower than `baseline`), then
    smallest."""
    eligible = [
        c for c in candidates if c.status == "kept" and c.timing is not None and c.size_bytes is not None
    ]
    if not eligible:
        raise ValueError("no kept and measured candidate to choose from (the original is always one)")
    fastest = min(c.timing.latency_ms_p50 for c in eligible if c.timing is not None)
    limit = fastest * (1 + NOISE_BAND)
    capped_by_baseline = False
    if baseline is not None and baseline.timing is not None:
        capped = max(fastest, min(limit, baseline.timing.latency_ms_p50))
        capped_by_baseline = capped < limit
        limit = capped
    close = [c for c in eligible if c.timing is not None and c.timing.latency_ms_p50 <= limit]
    winner = min(close, key=lambda c: c.size_bytes or 0)  # min() keeps the earliest among equal sizes
    others = ", ".join(c.name for c in close if c is not winner)
    # Say when the original's own latency narrowed the band: it explains why a smaller candidate lost.
    band = f"within {NOISE_BAND:.0%} of the best ({fastest:.3f} ms)" + (
        f", no slower than the original ({limit:.3f} ms)" if capped_by_baseline else ""
    )
    explanation = f"fastest p50 {band}" + (f" and smallest among {winner.name}, {others}" if others else "")
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
