"""What the sandbox prints: one line per change of a ModelDeployment's status (phase, canary weight, each
analysis verdict with both tracks' figures, the optimizer's before/after), and the summary table. Pure
functions of status dicts, so they are tested by tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def _number(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{float(value):.{digits}f}{unit}"


def track_figures(figures: Mapping[str, Any]) -> str:
    requests = figures.get("requests")
    error_rate = figures.get("errorRate")
    percent = None if error_rate is None else 100 * float(error_rate)
    return (
        f"{_number(requests, digits=0)} req, errors {_number(percent, '%', 2)}"
        f", p99 {_number(figures.get('p99Ms'), ' ms')}"
    )


def verdict_line(analysis: Mapping[str, Any], weight: int) -> str:
    verdict = str(analysis.get("verdict") or "?").upper()
    return (
        f"analysis {verdict:<5} at {weight:>3}%  stable: {track_figures(analysis.get('stable') or {})}"
        f" | canary: {track_figures(analysis.get('canary') or {})}\n"
        f"      {analysis.get('reason', '')}"
    )


def optimization_line(optimization: Mapping[str, Any]) -> str:
    before, after = optimization.get("before") or {}, optimization.get("after") or {}
    revision = optimization.get("revision", "?")
    if optimization.get("state") == "Failed":
        return f"optimizer  rev {revision}: failed: {optimization.get('error', '')}"
    return (
        f"optimizer  rev {revision}: chose {optimization.get('chosen', '?')};"
        f" size {_number(before.get('sizeBytes'), ' B', 0)} -> {_number(after.get('sizeBytes'), ' B', 0)},"
        f" p50 {_number(before.get('latencyMs'), ' ms', 2)} -> {_number(after.get('latencyMs'), ' ms', 2)}"
        f" (accuracy drop {_number((optimization.get('accuracy') or {}).get('drop'), '', 6)})"
    )


def changes(previous: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
    """The lines that tell what changed from `previous` to `status` (both `.status` of the object)."""
    lines = []
    phase = status.get("phase")
    revisions = (status.get("stableRevision"), status.get("canaryRevision"), status.get("canaryWeight"))
    before = (previous.get("stableRevision"), previous.get("canaryRevision"), previous.get("canaryWeight"))
    if phase != previous.get("phase") or revisions != before:
        canary = f", canary {revisions[1]} at {revisions[2] or 0}%" if revisions[1] else ""
        lines.append(f"phase      {phase}: stable {revisions[0] or '-'}{canary}")
    optimization = status.get("optimization") or {}
    if optimization.get("state") in ("Succeeded", "Failed") and optimization != (
        previous.get("optimization") or {}
    ):
        lines.append(optimization_line(optimization))
    analysis = status.get("analysis") or {}
    if analysis.get("time") and analysis.get("time") != (previous.get("analysis") or {}).get("time"):
        # The last verdict arrives with the promotion, which resets the weight: show the step it judged.
        weight = status.get("canaryWeight") or previous.get("canaryWeight") or 0
        lines.append(verdict_line(analysis, int(weight)))
    rollback = status.get("lastRollback") or {}
    if rollback and rollback != previous.get("lastRollback"):
        lines.append(f"ROLLBACK   rev {rollback.get('revision')}: {rollback.get('reason')}")
    return lines


@dataclass(frozen=True)
class SummaryRow:
    revision: str
    change: str  # what this revision changed
    optimizer: str  # chosen candidate, size and p50 before -> after
    outcome: str  # stable, promoted, rolled back
    verdicts: str  # e.g. "pass, pass"
    sent: int  # requests the load generator sent to its pods
    failed: int
    scraped: float | None  # successful requests Prometheus counted for it


def summary_table(rows: Sequence[SummaryRow]) -> str:
    header = ("revision", "change", "optimizer", "outcome", "verdicts", "sent", "failed", "Prometheus ok")
    body = [
        (
            row.revision,
            row.change,
            row.optimizer,
            row.outcome,
            row.verdicts,
            str(row.sent),
            str(row.failed),
            _number(row.scraped, digits=0),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in (header, *body)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
