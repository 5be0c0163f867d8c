"""The canary analysis at its edges, where mutation testing (benchmarks/mutation.py) found bugs that the
main table (tests/test_analysis.py) let through: exact error messages of the matcher parser, escape ranges,
boundaries of the thresholds and of the verdict's wording.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from modeldeploy.analysis import (
    MatcherError,
    ThresholdError,
    Thresholds,
    TrackMeasurement,
    Verdict,
    format_selector,
    judge,
    parse_matchers,
    prometheus_duration,
)

QUOTES = "(\"...\", '...' or `...`)"

# (text, the whole error message): what a user of `modeldeploy analyze --stable/--canary` reads.
REFUSED: list[tuple[str, str]] = [
    ("a=", f"at column 3: expected a quoted value {QUOTES}, found the end"),
    ("a=1", f"at column 3: expected a quoted value {QUOTES}, found '1'"),
    ("a", "at column 2: expected '=' after label name 'a', found the end"),
    ('a~"1"', "at column 2: expected '=' after label name 'a', found '~'"),
    ('a!~"1"', "at column 2: label 'a': only equality matchers (L=\"v\") select a track, not '!~'"),
    ('a=~"1"', "at column 2: label 'a': only equality matchers (L=\"v\") select a track, not '=~'"),
    ('a="\\', "at column 4: a backslash ends the text"),
    ('a="\\X"', "at column 4: unknown escape \\X"),
    ('a="\\xXA"', "at column 4: escape \\x needs 2 hex digits"),
    ('a="\\x4g"', "at column 4: escape \\x needs 2 hex digits"),
    ('a="\\1X1"', "at column 4: escape \\1 needs 3 octal digits"),
    ('a="\\18"', "at column 4: escape \\1 needs 3 octal digits"),
    ('a="\\x80"', "at column 4: escape \\x80 is a raw byte; write \\u0080 for U+0080"),
    ('a="\\200"', "at column 4: escape \\200 is a raw byte; write \\u0080 for U+0080"),
    ('a="\\U00110000"', "at column 4: escape \\U00110000 is not a valid character"),
    ('a="\\uD800"', "at column 4: escape \\uD800 is not a valid character"),
    ('a="\\uDFFF"', "at column 4: escape \\uDFFF is not a valid character"),
    ('{a="1" b="2"}', "at column 8: expected ',' between matchers, found 'b'"),
    ('a="1" b="2"', "at column 7: expected ',' between matchers, found 'b'"),
    ('1a="x"', "at column 1: expected a label name, found '1'"),
    ('a="x', 'at column 3: the value starting here is missing its closing "'),
    ('a="x\ny"', "at column 5: a newline inside a quoted value must be written \\n"),
    (
        'a-b="x"',
        "at column 2: expected '=' after label name 'a', found '-'",
    ),
    (
        '__name__="x"',
        "at column 1: label '__name__': names starting with '__' are reserved by Prometheus",
    ),
]


@pytest.mark.parametrize(("text", "message"), REFUSED, ids=[text for text, _ in REFUSED])
def test_matcher_errors_say_exactly_where_and_why(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as error:
        parse_matchers(text)
    assert str(error.value) == message


PARSED: list[tuple[str, dict[str, str]]] = [
    ('  {a="1"}', {"a": "1"}),  # spaces before the brace
    ('a="1",b="2"', {"a": "1", "b": "2"}),  # no space after the comma
    ('X="1"', {"X": "1"}),
    ("a=`x\ny`", {"a": "x\ny"}),  # raw strings may hold newlines
    ("a=`\\n`", {"a": "\\n"}),  # ... and no escapes
    ('a="\\`"', {"a": "`"}),
    ("a='\\''", {"a": "'"}),
    ('a="\\x7f"', {"a": "\x7f"}),  # the last one-byte escape that is a character
    ('a="\\177"', {"a": "\x7f"}),
    ('a="\\101\\x41\\u00e9\\U0001F600"', {"a": "AAé😀"}),
    ('a="\\U0010FFFF"', {"a": "\U0010ffff"}),  # the last character
    ('a="\\uD7FF\\uE000"', {"a": "\ud7ff\ue000"}),  # either side of the surrogates
]


@pytest.mark.parametrize(("text", "expected"), PARSED, ids=[text for text, _ in PARSED])
def test_matchers_read_like_promql(text: str, expected: dict[str, str]) -> None:
    assert parse_matchers(text) == expected


def test_bad_label_name_in_a_mapping_is_named() -> None:
    with pytest.raises(MatcherError) as error:
        format_selector("m", {"9lives": "x"})
    assert str(error.value) == (
        "'9lives' is not a label name (letters, digits and '_', not starting with a digit)"
    )


def test_a_one_millisecond_window_is_a_window() -> None:
    assert prometheus_duration(timedelta(milliseconds=1)) == "1ms"


def test_threshold_edges_that_are_allowed() -> None:
    Thresholds(max_error_rate=1, max_p99_ms=0.5, max_latency_ratio=1.0, min_requests=0)
    with pytest.raises(ThresholdError) as error:
        Thresholds(max_error_rate=0.01, max_p99_ms=float("inf"), max_latency_ratio=1.2, min_requests=0)
    assert error.value.field == "max_p99_ms"


def track(requests: float, error_rate: float = 0.0, p99_ms: float = 10.0) -> TrackMeasurement:
    return TrackMeasurement(requests=requests, error_rate=error_rate, mean_ms=p99_ms / 2, p99_ms=p99_ms)


def limits(**changes: float | int | None) -> Thresholds:
    values: dict[str, float | int | None] = {
        "max_error_rate": 0.01,
        "max_p99_ms": None,
        "max_latency_ratio": 1.2,
        "min_requests": 10,
    }
    values.update(changes)
    return Thresholds(**values)  # type: ignore[arg-type]


def test_min_requests_zero_judges_a_single_request() -> None:
    assert judge(track(1), track(1), limits(min_requests=0)).verdict == "pass"
    assert judge(track(1), track(1), limits(min_requests=1)).verdict == "pass"
    assert judge(track(1), track(1), limits(min_requests=2)).verdict == "wait"


def test_float_noise_around_a_zero_error_budget_is_not_a_failure() -> None:
    assert judge(track(100), track(100, error_rate=1e-13), limits(max_error_rate=0)).verdict == "pass"
    assert judge(track(100), track(100, error_rate=1e-3), limits(max_error_rate=0)).verdict == "fail"


def test_missing_numbers_are_all_named_in_one_reason() -> None:
    canary = TrackMeasurement(requests=100, error_rate=None, mean_ms=None, p99_ms=None)
    result = judge(track(100), canary, limits())
    assert (result.verdict, result.reason) == (
        "error",
        "no data for canary error_rate and canary p99_ms (empty result or NaN)",
    )


def test_every_failed_check_is_in_the_reason_separated_by_semicolons() -> None:
    result = judge(track(100), track(100, error_rate=0.5, p99_ms=300), limits(max_p99_ms=100))
    assert result.failed_checks == ("maxErrorRate", "maxP99LatencyMs", "maxLatencyRatio")
    assert result.reason == (
        "canary error rate 50.00% > maxErrorRate 1.00%; canary p99 300.0 ms > maxP99LatencyMs 100 ms;"
        " canary p99 300.0 ms > maxLatencyRatio 1.2 x stable p99 10.0 ms = 12.0 ms"
    )


def test_a_pass_names_the_absolute_limit_only_when_there_is_one() -> None:
    with_limit = judge(track(100), track(100), limits(max_p99_ms=250))
    without = judge(track(100), track(100), limits())
    assert with_limit.reason == (
        "canary error rate 0.00% <= 1.00%, p99 10.0 ms <= 1.2 x stable p99 10.0 ms and <= 250 ms"
    )
    assert without.reason == "canary error rate 0.00% <= 1.00%, p99 10.0 ms <= 1.2 x stable p99 10.0 ms"


def test_verdict_json_keys() -> None:
    verdict = Verdict("wait", "why", track(1), track(2))
    assert set(verdict.as_dict()) == {"verdict", "reason", "stable", "canary", "failed_checks"}
    assert verdict.as_dict()["reason"] == "why"
