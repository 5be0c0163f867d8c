"""`modeldeploy analyze`: one canary analysis from Triton metrics in Prometheus, as JSON.

Exit status: 0 pass, 1 fail, 3 wait, 4 error (2 stays argparse's usage error, e.g. a bad matcher).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from modeldeploy.analysis import MatcherError, ThresholdError, Thresholds, parse_matchers
from modeldeploy.durations import parse_duration

EXIT_CODES = {"pass": 0, "fail": 1, "wait": 3, "error": 4}
USAGE_ERROR = 2
_OPTION_OF_FIELD = {
    "max_error_rate": "--max-error-rate",
    "max_p99_ms": "--max-p99-ms",
    "max_latency_ratio": "--max-latency-ratio",
    "min_requests": "--min-requests",
}

DESCRIPTION = """\
Compare the canary track of a Triton model with its stable track over a window, from the Triton metrics
Prometheus scraped, and print one JSON object:
{"verdict": "pass|fail|wait|error", "reason": ..., "stable": {...}, "canary": {...}, "failed_checks": [...]}.
--stable and --canary are PromQL equality matchers added to model="NAME", e.g.
  --stable 'namespace="prod",modeldeploy_name="ocr",modeldeploy_revision="3f2a9c1b0d"'
Exit status: 0 pass, 1 fail, 3 wait (too few requests), 4 error (no data, Prometheus unreachable)."""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="judge a canary against the stable track from Triton metrics in Prometheus",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--prometheus",
        required=True,
        type=_http_url,
        metavar="URL",
        help="Prometheus base URL, http(s)://...",
    )
    parser.add_argument(
        "--model", required=True, metavar="NAME", help="Triton model name (the `model` label)"
    )
    parser.add_argument("--stable", required=True, type=_track_matchers, metavar="'L=\"v\",...'")
    parser.add_argument("--canary", required=True, type=_track_matchers, metavar="'L=\"v\",...'")
    parser.add_argument("--window", default="1m", type=_window, help="how far back to look (default 1m)")
    parser.add_argument("--max-error-rate", type=float, default=0.01, metavar="SHARE", help="default 0.01")
    parser.add_argument(
        "--max-p99-ms", type=float, default=None, metavar="N", help="absolute p99 limit (off)"
    )
    parser.add_argument("--max-latency-ratio", type=float, default=1.2, metavar="R", help="canary/stable p99")
    parser.add_argument("--min-requests", type=int, default=50, metavar="N", help="per track (default 50)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="for all queries")
    parser.set_defaults(handler=_handle)


def _http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a URL starting with http:// or https://")
    return text


def _track_matchers(text: str) -> dict[str, str]:
    try:
        matchers = parse_matchers(text)
    except MatcherError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not matchers:
        raise argparse.ArgumentTypeError('name at least one label, e.g. modeldeploy_revision="abc123"')
    return matchers


def _window(text: str) -> timedelta:
    """A Go/Prometheus-style duration, as the CRD writes `interval`: 15s, 1m, 1m30s, 500ms."""
    try:
        window = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if window <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: the window must be longer than zero")
    return window


def _handle(args: argparse.Namespace) -> int:
    if args.stable == args.canary:
        return _usage_error("--stable and --canary select the same series; they must differ")
    try:
        thresholds = Thresholds(
            max_error_rate=args.max_error_rate,
            max_p99_ms=args.max_p99_ms,
            max_latency_ratio=args.max_latency_ratio,
            min_requests=args.min_requests,
        )
    except ThresholdError as error:
        return _usage_error(f"{_OPTION_OF_FIELD.get(error.field, error.field)}: {error.message}")

    from modeldeploy.prometheus import analyze  # noqa: PLC0415  # heavy client import only when it runs

    verdict = analyze(
        prometheus_url=args.prometheus,
        model=args.model,
        stable=args.stable,
        canary=args.canary,
        window=args.window,
        thresholds=thresholds,
        timeout_s=args.timeout,
    )
    print(json.dumps(verdict.as_dict()))
    return EXIT_CODES[verdict.verdict]


def _usage_error(message: str) -> int:
    print(f"modeldeploy analyze: error: {message}", file=sys.stderr)
    return USAGE_ERROR
