"""report.json (everything the optimizer did and why) and the compact Job summary the operator reads.

Layout of report.json is documented in docs/optimizer.md. The summary follows docs/architecture.md:
`{"v": 1, "cached", "chosen", "before", "after", "accuracy", "gateInputs", "report"}` in under 4096 bytes.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from modeldeploy.optimizer.outcome import CandidateOutcome
from modeldeploy.optimizer.selection import paired_ratio

REPORT_NAME = "report.json"
SUMMARY_LIMIT_BYTES = 4096
TOOLS = ("modeldeploy", "onnx", "onnxruntime", "onnxconverter-common", "numpy", "tritonclient", "tensorrt")


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in TOOLS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def figures(candidate: CandidateOutcome) -> dict[str, Any]:
    """Size, latency and throughput of one candidate (snake_case, as in report.json)."""
    timing = candidate.timing
    return {
        "name": candidate.name,
        "size_bytes": candidate.size_bytes,
        "latency_ms_p50": None if timing is None else round(timing.latency_ms_p50, 4),
        "latency_ms_p99": None if timing is None else round(timing.latency_ms_p99, 4),
        "throughput_per_s": None if timing is None else round(timing.throughput_per_s, 2),
        "batch_size": None if timing is None else timing.batch_size,
    }


def build_report(
    *,
    model: str,
    source: str,
    chosen: CandidateOutcome,
    explanation: str,
    baseline: CandidateOutcome,
    candidates: Sequence[CandidateOutcome],
    max_accuracy_drop: float,
    inputs: Mapping[str, Any],
    triton: Mapping[str, Any],
    repository: Mapping[str, str],
    notes: Sequence[str],
) -> dict[str, Any]:
    return {
        "model": model,
        "source": source,
        "chosen": chosen.name,
        "explanation": explanation,
        "objective": (
            "smallest candidate not measurably slower than the fastest (95% interval of the paired latency "
            "ratio at the measured batch size within 5%) nor than the original"
        ),
        "max_accuracy_drop": max_accuracy_drop,
        "baseline": figures(baseline),
        "after": {
            **figures(chosen),
            "accuracy": None if chosen.accuracy is None else chosen.accuracy.to_json(),
        },
        "candidates": [_with_ratio(candidate, baseline) for candidate in candidates],
        "inputs": dict(inputs),
        "triton": dict(triton),
        "repository": dict(repository),
        "notes": list(notes),
        "tools": tool_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _with_ratio(candidate: CandidateOutcome, baseline: CandidateOutcome) -> dict[str, Any]:
    """The candidate's JSON with its latency ratio to the original, paired round by round."""
    entry = candidate.to_json()
    if candidate.timing is not None and baseline.timing is not None:
        entry["latency_ratio_vs_original"] = paired_ratio(candidate.timing, baseline.timing).to_json()
    return entry


def _camel_figures(section: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sizeBytes": section.get("size_bytes"),
        "latencyMs": section.get("latency_ms_p50"),
        "throughput": section.get("throughput_per_s"),
    }


def summary(report: Mapping[str, Any], *, cached: bool, location: str) -> dict[str, Any]:
    """The termination message: what the operator copies into `status.optimization`."""
    after = report.get("after") or {}
    accuracy = after.get("accuracy") or {}
    message: dict[str, Any] = {
        "v": 1,
        "cached": cached,
        "chosen": report.get("chosen"),
        "before": _camel_figures(report.get("baseline") or {}),
        "after": _camel_figures(after),
        "accuracy": {
            "drop": accuracy.get("drop"),
            "cosine": accuracy.get("cosine"),
            "top1Agreement": accuracy.get("top1_agreement"),
            "minCosine": accuracy.get("min_cosine"),
            "maxAccuracyDrop": report.get("max_accuracy_drop"),
        },
        # Whether the gate judged on real samples or on inputs generated from the model's shapes.
        "gateInputs": "generated" if (report.get("inputs") or {}).get("generated") else "real",
        "report": location,
    }
    if len(encode_summary(message)) > SUMMARY_LIMIT_BYTES:
        message["report"] = message["report"][-512:]  # only a pathological path can push it over
    return message


def error_summary(reason: str) -> dict[str, Any]:
    message: dict[str, Any] = {"v": 1, "error": reason}
    while len(encode_summary(message)) > SUMMARY_LIMIT_BYTES:
        message["error"] = message["error"][: len(message["error"]) // 2] + "…"
    return message


def encode_summary(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def complete_report(text: str | None, exists: Any) -> dict[str, Any] | None:
    """The cached report when `text` is a finished report whose repository files all exist, else None.

    `exists(relative_path) -> bool` checks a file next to report.json (locally or in an object store).
    """
    if not text:
        return None
    try:
        report = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(report, dict) or not report.get("chosen"):
        return None
    repository = report.get("repository")
    if not isinstance(repository, dict) or not repository.get("config") or not repository.get("model_file"):
        return None
    if not all(exists(str(repository[key])) for key in ("config", "model_file")):
        return None
    return report


def read_local_report(directory: Path, report_path: Path) -> dict[str, Any] | None:
    text = report_path.read_text(encoding="utf-8") if report_path.is_file() else None
    return complete_report(text, lambda relative: (directory / relative).is_file())
