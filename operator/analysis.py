"""Canary analysis, pure: the PromQL for each track's numbers, and the verdict over those numbers.

Label matchers reach PromQL only through `format_selector`, which checks label names and quotes values
(quotes, backslashes, newlines and control characters are escaped), so no value can change the query's
shape. `parse_matchers` reads the CLI's `L="v",...` text with PromQL's own string rules.

No I/O here: `modeldeploy.prometheus` runs the queries and calls `judge`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
DURATION = "nv_inference_request_duration_us"
LATENCY_SUMMARY = "nv_inference_request_summary_us"

# Labels the queries set themselves; a user matcher on them would contradict the query.
RESERVED_LABELS = frozenset({"model", "quantile"})
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

# The names of the checks, as the thresholds are called in the ModelDeployment's rollout.analysis.
CHECK_ERROR_RATE = "maxErrorRate"
CHECK_P99 = "maxP99LatencyMs"
CHECK_LATENCY_RATIO = "maxLatencyRatio"

VerdictKind = Literal["pass", "fail", "wait", "error"]


class MatcherError(ValueError):
    """A label matcher text or mapping that cannot be turned into a safe selector."""


class ThresholdError(ValueError):
    """A threshold out of range; `field` is the Thresholds attribute."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- Label matchers -------------------------------------------------------------------------------

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote_label_value(value: str) -> str:
    """A PromQL double-quoted string that reads back as exactly `value`."""
    parts = ['"']
    for char in value:
        if char in _QUOTE_ESCAPES:
            parts.append(_QUOTE_ESCAPES[char])
        elif unicodedata.category(char) == "Cs":
            raise MatcherError(f"label value {value!r} holds a lone surrogate, which is not valid Unicode")
        elif unicodedata.category(char) == "Cc":
            # \u, not \x: in PromQL (Go) \xNN is a byte, which is a different character above 0x7f.
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def check_label_name(name: str) -> None:
    if not LABEL_NAME.fullmatch(name):
        raise MatcherError(
            f"{name!r} is not a label name (letters, digits and '_', not starting with a digit)"
        )
    if name.startswith("__"):
        raise MatcherError(f"label {name!r}: names starting with '__' are reserved by Prometheus")
    if name in RESERVED_LABELS:
        raise MatcherError(f"label {name!r} is set by the analysis itself; leave it out of the matchers")


def format_selector(model: str, matchers: Mapping[str, str], **extra: str) -> str:
    """`{model="M",L="v",...}`: the series of `model` on one track, every value quoted."""
    for name in matchers:
        check_label_name(name)
    pairs = [("model", model), *sorted(matchers.items()), *extra.items()]
    return "{" + ",".join(f"{name}={quote_label_value(value)}" for name, value in pairs) + "}"


class _MatcherParser:
    """Reads `L="v", L2='v2', L3=`raw``, optionally in braces, the way PromQL reads equality matchers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> MatcherError:
        column = (self.pos if pos is None else pos) + 1
        return MatcherError(f"at column {column}: {message}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() and self.peek() in " \t\n\r":
            self.pos += 1

    def parse(self) -> dict[str, str]:
        self.skip_spaces()
        braced = self.peek() == "{"
        if braced:
            self.pos += 1
        matchers: dict[str, str] = {}
        while True:
            self.skip_spaces()
            if not self.peek() or (braced and self.peek() == "}"):
                break
            name_at = self.pos
            name = self.label_name()
            self.skip_spaces()
            self.operator(name)
            self.skip_spaces()
            value = self.string()
            if name in matchers:
                raise self.fail(f"label {name!r} is given twice", name_at)
            try:
                check_label_name(name)
            except MatcherError as error:
                raise self.fail(str(error), name_at) from None
            matchers[name] = value
            self.skip_spaces()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() and not (braced and self.peek() == "}"):
                raise self.fail(f"expected ',' between matchers, found {self.peek()!r}")
        if braced:
            if self.peek() != "}":
                raise self.fail("expected '}' to close the matchers")
            self.pos += 1
            self.skip_spaces()
            if self.peek():
                raise self.fail(f"unexpected {self.peek()!r} after '}}'")
        return matchers

    def label_name(self) -> str:
        match = LABEL_NAME.match(self.text, self.pos)
        if not match:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected a label name, found {found}")
        self.pos = match.end()
        return match.group()

    def operator(self, name: str) -> None:
        for unsupported in ("!=", "=~", "!~"):
            if self.text.startswith(unsupported, self.pos):
                raise self.fail(
                    f'label {name!r}: only equality matchers (L="v") select a track, not {unsupported!r}'
                )
        if self.peek() != "=":
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected '=' after label name {name!r}, found {found}")
        self.pos += 1

    def string(self) -> str:
        quote = self.peek()
        if quote not in {'"', "'", "`"}:
            found = repr(quote) if quote else "the end"
            raise self.fail(f"expected a quoted value (\"...\", '...' or `...`), found {found}")
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail(f"the value starting here is missing its closing {quote}", start)
            self.pos += 1
            if char == quote:
                return "".join(chars)
            if char == "\\" and quote != "`":
                chars.append(self.escape())
            elif char == "\n" and quote != "`":
                raise self.fail("a newline inside a quoted value must be written \\n", self.pos - 1)
            else:
                chars.append(char)

    def escape(self) -> str:
        at = self.pos - 1
        char = self.peek()
        if not char:
            raise self.fail("a backslash ends the text", at)
        self.pos += 1
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        if char in {"\\", '"', "'", "`"}:
            return char
        digits_by_kind = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}
        if char in digits_by_kind:
            count, base = digits_by_kind[char]
        elif char in "01234567":
            count, base = 3, 8
            self.pos -= 1
        else:
            raise self.fail(f"unknown escape \\{char}", at)
        digits = self.text[self.pos : self.pos + count]
        allowed = "01234567" if base == 8 else "0123456789abcdefABCDEF"
        if len(digits) != count or any(digit not in allowed for digit in digits):
            raise self.fail(f"escape \\{char} needs {count} {'octal' if base == 8 else 'hex'} digits", at)
        self.pos += count
        code = int(digits, base)
        if char in "x01234567" and code > 0x7F:
            # Go reads \xNN and \NNN as one byte: above 0x7f that is not the character U+00NN.
            raise self.fail(
                f"escape {self.text[at : self.pos]} is a raw byte; write \\u{code:04x} for U+{code:04X}", at
            )
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise self.fail(f"escape {self.text[at : self.pos]} is not a valid character", at)
        return chr(code)


def parse_matchers(text: str) -> dict[str, str]:
    """Parse `L="v",L2="v2"` (PromQL equality matchers, braces optional) into a label → value mapping."""
    return _MatcherParser(text).parse()


# --- Queries --------------------------------------------------------------------------------------


def prometheus_duration(window: timedelta) -> str:
    """A PromQL range duration (`15s`, `1500ms`) for `window`."""
    milliseconds = round(window.total_seconds() * 1000)
    if milliseconds <= 0:
        raise ValueError(f"the analysis window must be positive, got {window}")
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    return f"{milliseconds // 1000}s"


@dataclass(frozen=True)
class TrackQueries:
    """The four instant queries that measure one track over the window."""

    requests: str
    error_rate: str
    mean_ms: str
    p99_ms: str


def track_queries(model: str, matchers: Mapping[str, str], window: timedelta) -> TrackQueries:
    selector = format_selector(model, matchers)
    span = prometheus_duration(window)
    successes = f"sum(increase({SUCCESS}{selector}[{span}]))"
    # Failures carry a `reason` label (BACKEND, REJECTED, ...): sum over it.
    failures = f"sum(increase({FAILURE}{selector}[{span}]))"
    requests = f"{successes} + {failures}"
    return TrackQueries(
        requests=requests,
        error_rate=f"{failures} / ({requests})",
        # The duration counter only grows with successful requests.
        mean_ms=f"sum(rate({DURATION}{selector}[{span}])) / sum(rate({SUCCESS}{selector}[{span}])) / 1000",
        # Quantiles are per pod and cannot be averaged: the worst pod's p99 speaks for the track.
        p99_ms=f"max({LATENCY_SUMMARY}{format_selector(model, matchers, quantile='0.99')}) / 1000",
    )


# --- Verdict --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float
    max_p99_ms: float | None
    max_latency_ratio: float
    min_requests: int

    def __post_init__(self) -> None:
        if not (0 <= self.max_error_rate <= 1):
            raise ThresholdError("max_error_rate", f"must be between 0 and 1, got {self.max_error_rate}")
        if self.max_p99_ms is not None and not (self.max_p99_ms > 0 and math.isfinite(self.max_p99_ms)):
            raise ThresholdError(
                "max_p99_ms", f"must be a positive number of milliseconds, got {self.max_p99_ms}"
            )
        if not (self.max_latency_ratio > 0 and math.isfinite(self.max_latency_ratio)):
            raise ThresholdError(
                "max_latency_ratio", f"must be a positive number, got {self.max_latency_ratio}"
            )
        if self.min_requests < 0:
            raise ThresholdError("min_requests", f"must be 0 or more, got {self.min_requests}")


@dataclass(frozen=True)
class TrackMeasurement:
    """One track's numbers over the window; None means no data (empty result or NaN)."""

    requests: float | None
    error_rate: float | None
    mean_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "requests": _known(self.requests),
            "error_rate": _known(self.error_rate),
            "mean_ms": _known(self.mean_ms),
            "p99_ms": _known(self.p99_ms),
        }


NO_DATA = TrackMeasurement(requests=None, error_rate=None, mean_ms=None, p99_ms=None)


@dataclass(frozen=True)
class Verdict:
    verdict: VerdictKind
    reason: str
    stable: TrackMeasurement
    canary: TrackMeasurement
    failed_checks: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by `modeldeploy analyze` (NaN never appears: no data is null)."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "stable": self.stable.as_dict(),
            "canary": self.canary.as_dict(),
            "failed_checks": list(self.failed_checks),
        }


def _known(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _exceeds(value: float, limit: float) -> bool:
    # A value exactly at the limit passes, even when the limit itself came out of a multiplication.
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)


def _missing(fields: Mapping[str, float | None]) -> list[str]:
    return [name for name, value in fields.items() if _known(value) is None]


def judge(stable: TrackMeasurement, canary: TrackMeasurement, thresholds: Thresholds) -> Verdict:
    """Decide pass / fail / wait / error for one analysis of the canary against the stable track.

    Order: without request counts nothing can be said (error); with too few requests on either track the
    numbers are noise (wait); then every number a check needs must exist (error); then all checks run and
    every failing one is reported with both of its numbers.
    """

    def verdict(kind: VerdictKind, reason: str, failed: tuple[str, ...] = ()) -> Verdict:
        return Verdict(verdict=kind, reason=reason, stable=stable, canary=canary, failed_checks=failed)

    missing = _missing({"stable requests": stable.requests, "canary requests": canary.requests})
    if missing:
        return verdict("error", f"no data for {' and '.join(missing)} (empty result or NaN)")

    # Zero requests can never be judged, whatever minRequests says.
    needed = max(thresholds.min_requests, 1)
    short = [
        f"{track} has {count:.0f} requests in the window"
        for track, count in (("stable", stable.requests), ("canary", canary.requests))
        if count is not None and count < needed
    ]
    if short:
        return verdict("wait", f"{' and '.join(short)}, fewer than minRequests {needed}")

    missing = _missing(
        {
            "canary error_rate": canary.error_rate,
            "canary p99_ms": canary.p99_ms,
            "stable p99_ms": stable.p99_ms,
        }
    )
    if missing:
        return verdict("error", f"no data for {' and '.join(missing)} (empty result or NaN)")
    assert canary.error_rate is not None and canary.p99_ms is not None and stable.p99_ms is not None

    failed: list[str] = []
    reasons: list[str] = []
    if _exceeds(canary.error_rate, thresholds.max_error_rate):
        failed.append(CHECK_ERROR_RATE)
        reasons.append(
            f"canary error rate {canary.error_rate:.2%} > {CHECK_ERROR_RATE} {thresholds.max_error_rate:.2%}"
        )
    if thresholds.max_p99_ms is not None and _exceeds(canary.p99_ms, thresholds.max_p99_ms):
        failed.append(CHECK_P99)
        reasons.append(f"canary p99 {canary.p99_ms:.1f} ms > {CHECK_P99} {thresholds.max_p99_ms:g} ms")
    latency_limit = stable.p99_ms * thresholds.max_latency_ratio
    if _exceeds(canary.p99_ms, latency_limit):
        failed.append(CHECK_LATENCY_RATIO)
        reasons.append(
            f"canary p99 {canary.p99_ms:.1f} ms > {CHECK_LATENCY_RATIO} {thresholds.max_latency_ratio:g}"
            f" x stable p99 {stable.p99_ms:.1f} ms = {latency_limit:.1f} ms"
        )
    if failed:
        return verdict("fail", "; ".join(reasons), tuple(failed))
    absolute = f" and <= {thresholds.max_p99_ms:g} ms" if thresholds.max_p99_ms is not None else ""
    return verdict(
        "pass",
        f"canary error rate {canary.error_rate:.2%} <= {thresholds.max_error_rate:.2%},"
        f" p99 {canary.p99_ms:.1f} ms <= {thresholds.max_latency_ratio:g} x stable p99 {stable.p99_ms:.1f} ms"
        f"{absolute}",
    )
