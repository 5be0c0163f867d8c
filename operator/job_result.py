"""The optimization Job's result as it comes back to the operator: its pod's termination message.

Contract (docs/architecture.md): the Job's container writes a compact JSON (< 4096 bytes) to
`/dev/termination-log`: `{"v": 1, "cached": bool, "chosen": ..., "before": {...}, "after": {...},
"accuracy": {...}, "gateInputs": "real"|"generated", "report": "..."}`, or `{"v": 1, "error": "..."}`
on failure. With
`terminationMessagePolicy: FallbackToLogsOnError` a crash leaves the tail of the log instead,
which is not JSON: it becomes the error text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy.credentials import redact
from modeldeploy.rollout import JobResult

# Keys copied from the message into status.optimization (camelCase, as in the message).
SUMMARY_KEYS = ("chosen", "before", "after", "accuracy", "gateInputs", "report")
MAX_ERROR_CHARS = 512


def parse_termination_message(message: str | None, exit_code: int | None) -> JobResult:
    """Turn the message (and the container's exit code) into a `JobResult`."""
    text = (message or "").strip()
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    if not isinstance(payload, Mapping):
        reason = _shorten(text) or "the optimizer left no termination message"
        if exit_code == 0 and not text:
            return JobResult(ok=True, summary={})
        return JobResult(ok=False, error=reason if exit_code != 0 else f"unreadable result: {reason}")
    if payload.get("error"):
        return JobResult(ok=False, error=_shorten(str(payload["error"])))
    if exit_code not in (0, None):
        return JobResult(ok=False, error=f"the optimizer exited with code {exit_code}")
    summary = {key: payload[key] for key in SUMMARY_KEYS if key in payload}
    return JobResult(ok=True, cached=bool(payload.get("cached", False)), summary=summary)


def message_from_pods(pods: Iterable[Mapping[str, Any]]) -> tuple[str | None, int | None]:
    """The termination message and exit code of the Job's newest terminated container."""
    newest: tuple[str, str | None, int | None] | None = None
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or ():
            terminated = (container.get("state") or {}).get("terminated") or (
                (container.get("lastState") or {}).get("terminated")
            )
            if not terminated:
                continue
            finished = str(terminated.get("finishedAt") or "")
            if newest is None or finished >= newest[0]:
                newest = (finished, terminated.get("message"), terminated.get("exitCode"))
    if newest is None:
        return None, None
    return newest[1], newest[2]


def _shorten(text: str) -> str:
    """One line, at most MAX_ERROR_CHARS, with any credentials in URLs blanked (it goes to status)."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= MAX_ERROR_CHARS else "…" + text[-MAX_ERROR_CHARS:]
