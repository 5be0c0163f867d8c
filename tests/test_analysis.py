"""The pure half of canary analysis: the verdict on edge values, matcher parsing and safe PromQL."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

from modeldeploy.analysis import (
    MatcherError,
    ThresholdError,
    Thresholds,
    TrackMeasurement,
    format_selector,
    judge,
    parse_matchers,
    prometheus_duration,
    quote_label_value,
    track_queries,
)
from modeldeploy.cli import main
from modeldeploy.prometheus import analyze

NAN = float("nan")
DEFAULTS = Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=50)


def track(
    requests: float | None = 500, error_rate: float | None = 0.0, p99_ms: float | None = 10.0
) -> TrackMeasurement:
    mean = None if p99_ms is None else p99_ms / 2
    return TrackMeasurement(requests=requests, error_rate=error_rate, mean_ms=mean, p99_ms=p99_ms)


# --- judge ----------------------------------------------------------------------------------------


def test_equal_latencies_and_no_errors_pass() -> None:
    verdict = judge(track(), track(), DEFAULTS)
    assert verdict.verdict == "pass"
    assert verdict.failed_checks == ()
    assert "p99 10.0 ms <= 1.2 x stable p99 10.0 ms" in verdict.reason


@pytest.mark.parametrize(
    ("stable_p99", "ratio", "canary_p99"),
    [(10.0, 1.2, 12.0), (10.0, 1.15, 11.5), (3.0, 1.1, 3.3), (7.0, 1.0, 7.0)],
)
def test_latency_exactly_at_the_ratio_limit_passes(
    stable_p99: float, ratio: float, canary_p99: float
) -> None:
    # 10 x 1.15 is 11.499999999999998 in floating point: the limit must still admit 11.5.
    thresholds = Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=ratio, min_requests=1)
    assert judge(track(p99_ms=stable_p99), track(p99_ms=canary_p99), thresholds).verdict == "pass"


def test_latency_just_over_the_ratio_fails_with_both_numbers() -> None:
    verdict = judge(track(p99_ms=10.0), track(p99_ms=12.1), DEFAULTS)
    assert verdict.verdict == "fail"
    assert verdict.failed_checks == ("maxLatencyRatio",)
    assert verdict.reason == "canary p99 12.1 ms > maxLatencyRatio 1.2 x stable p99 10.0 ms = 12.0 ms"


def test_error_rate_at_the_limit_passes_and_above_fails() -> None:
    assert judge(track(), track(error_rate=0.01), DEFAULTS).verdict == "pass"
    verdict = judge(track(), track(error_rate=0.0125), DEFAULTS)
    assert verdict.verdict == "fail"
    assert verdict.failed_checks == ("maxErrorRate",)
    assert verdict.reason == "canary error rate 1.25% > maxErrorRate 1.00%"


def test_zero_error_budget_fails_on_a_single_failure() -> None:
    strict = Thresholds(max_error_rate=0.0, max_p99_ms=None, max_latency_ratio=1.2, min_requests=1)
    assert judge(track(), track(error_rate=0.0), strict).verdict == "pass"
    assert judge(track(), track(requests=1000, error_rate=0.001), strict).verdict == "fail"


def test_stable_errors_do_not_fail_the_canary() -> None:
    assert judge(track(error_rate=0.5), track(error_rate=0.0), DEFAULTS).verdict == "pass"


def test_absolute_p99_limit_is_checked_only_when_set() -> None:
    assert judge(track(p99_ms=100), track(p99_ms=110), DEFAULTS).verdict == "pass"
    limited = Thresholds(max_error_rate=0.01, max_p99_ms=105, max_latency_ratio=1.2, min_requests=50)
    verdict = judge(track(p99_ms=100), track(p99_ms=110), limited)
    assert verdict.failed_checks == ("maxP99LatencyMs",)
    assert verdict.reason == "canary p99 110.0 ms > maxP99LatencyMs 105 ms"
    assert judge(track(p99_ms=100), track(p99_ms=105), limited).verdict == "pass"


def test_every_failing_check_is_reported() -> None:
    limited = Thresholds(max_error_rate=0.01, max_p99_ms=50, max_latency_ratio=1.2, min_requests=50)
    verdict = judge(track(p99_ms=20), track(error_rate=0.3, p99_ms=80), limited)
    assert verdict.failed_checks == ("maxErrorRate", "maxP99LatencyMs", "maxLatencyRatio")
    assert verdict.reason.count(";") == 2


@pytest.mark.parametrize("min_requests", [0, 1, 50])
def test_zero_traffic_waits_whatever_min_requests_says(min_requests: int) -> None:
    thresholds = Thresholds(
        max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=min_requests
    )
    verdict = judge(track(), track(requests=0, error_rate=NAN, p99_ms=None), thresholds)
    assert verdict.verdict == "wait"
    assert "canary has 0 requests in the window" in verdict.reason


def test_too_few_requests_on_either_track_waits_and_names_it() -> None:
    verdict = judge(track(requests=49), track(requests=12), DEFAULTS)
    assert verdict.verdict == "wait"
    assert verdict.reason == (
        "stable has 49 requests in the window and canary has 12 requests in the window,"
        " fewer than minRequests 50"
    )
    assert judge(track(requests=50), track(requests=50), DEFAULTS).verdict == "pass"


def test_waiting_beats_a_bad_canary_with_too_few_requests() -> None:
    # Ten requests with three failures is noise, not evidence.
    assert judge(track(), track(requests=10, error_rate=0.3, p99_ms=999), DEFAULTS).verdict == "wait"


@pytest.mark.parametrize("missing_value", [None, NAN, math.inf])
def test_no_request_count_is_an_error_never_a_pass(missing_value: float | None) -> None:
    verdict = judge(track(), track(requests=missing_value), DEFAULTS)
    assert verdict.verdict == "error"
    assert verdict.reason == "no data for canary requests (empty result or NaN)"


@pytest.mark.parametrize(
    ("stable", "canary", "named"),
    [
        (track(), track(p99_ms=NAN), "canary p99_ms"),
        (track(p99_ms=None), track(), "stable p99_ms"),
        (track(), track(error_rate=None), "canary error_rate"),
        (track(requests=None), track(requests=None), "stable requests and canary requests"),
    ],
)
def test_nan_or_empty_where_a_number_is_needed_is_an_error(
    stable: TrackMeasurement, canary: TrackMeasurement, named: str
) -> None:
    verdict = judge(stable, canary, DEFAULTS)
    assert verdict.verdict == "error"
    assert verdict.reason == f"no data for {named} (empty result or NaN)"


def test_mean_latency_is_informative_only() -> None:
    canary = TrackMeasurement(requests=500, error_rate=0.0, mean_ms=None, p99_ms=10.0)
    assert judge(track(), canary, DEFAULTS).verdict == "pass"


def test_verdict_json_has_no_nan_and_keeps_the_measurements() -> None:
    verdict = judge(track(), track(requests=0, error_rate=NAN, p99_ms=None), DEFAULTS)
    text = json.dumps(verdict.as_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["verdict"] == "wait"
    assert data["canary"] == {"requests": 0, "error_rate": None, "mean_ms": None, "p99_ms": None}
    assert data["stable"] == {"requests": 500, "error_rate": 0.0, "mean_ms": 5.0, "p99_ms": 10.0}
    assert data["failed_checks"] == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_error_rate": -0.1}, "max_error_rate"),
        ({"max_error_rate": 1.5}, "max_error_rate"),
        ({"max_p99_ms": 0}, "max_p99_ms"),
        ({"max_p99_ms": NAN}, "max_p99_ms"),
        ({"max_latency_ratio": 0}, "max_latency_ratio"),
        ({"max_latency_ratio": math.inf}, "max_latency_ratio"),
        ({"min_requests": -1}, "min_requests"),
    ],
)
def test_thresholds_out_of_range_name_the_field(changes: dict[str, float], field: str) -> None:
    values: dict[str, float | None] = {
        "max_error_rate": 0.01,
        "max_p99_ms": None,
        "max_latency_ratio": 1.2,
        "min_requests": 50,
    }
    values.update(changes)
    with pytest.raises(ThresholdError) as caught:
        Thresholds(**values)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: must be")


# --- matchers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a="1"', {"a": "1"}),
        (' a = "1" ,\tb="2", ', {"a": "1", "b": "2"}),
        (
            '{namespace="prod",modeldeploy_revision="3f2a"}',
            {"namespace": "prod", "modeldeploy_revision": "3f2a"},
        ),
        ('a="x,y=\\"z\\"",b="}"', {"a": 'x,y="z"', "b": "}"}),
        ("a='it\\'s'", {"a": "it's"}),
        ("a=`C:\\raw\\n`", {"a": "C:\\raw\\n"}),
        ('a="\\n\\t\\\\\\a\\b\\f\\r\\v"', {"a": "\n\t\\\a\b\f\r\v"}),
        ('a="\\x41\\101\\u00e9\\U0001F600"', {"a": "AAé😀"}),
        ('a="ünï 😀"', {"a": "ünï 😀"}),
        ('a=""', {"a": ""}),
        ("", {}),
        ("{}", {}),
    ],
)
def test_matchers_parse_like_promql_strings(text: str, expected: dict[str, str]) -> None:
    assert parse_matchers(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('a="1', 'at column 3: the value starting here is missing its closing "'),
        ('a=1"', "at column 3: expected a quoted value"),
        ('a "1"', "at column 3: expected '=' after label name 'a'"),
        ('a=~"1"', "at column 2: label 'a': only equality matchers"),
        ('a!="1"', "at column 2: label 'a': only equality matchers (L=\"v\") select a track, not '!='"),
        ('a="1" b="2"', "at column 7: expected ',' between matchers, found 'b'"),
        ('a="1",a="2"', "at column 7: label 'a' is given twice"),
        ('model="x"', "at column 1: label 'model' is set by the analysis itself"),
        ('__name__="x"', "at column 1: label '__name__': names starting with '__' are reserved"),
        ('9a="x"', "at column 1: expected a label name, found '9'"),
        ('a="\\q"', "at column 4: unknown escape \\q"),
        ('a="\\x4"', "at column 4: escape \\x needs 2 hex digits"),
        ('a="\\xe9"', "at column 4: escape \\xe9 is a raw byte; write \\u00e9 for U+00E9"),
        ('a="\\351"', "at column 4: escape \\351 is a raw byte; write \\u00e9 for U+00E9"),
        ('a="\\ud800"', "at column 4: escape \\ud800 is not a valid character"),
        ('a="\\777"', "at column 4: escape \\777 is a raw byte; write \\u01ff for U+01FF"),
        ('a="line\nbreak"', "at column 8: a newline inside a quoted value must be written \\n"),
        ('{a="1"', "at column 7: expected '}' to close the matchers"),
        ('{a="1"} x', "at column 9: unexpected 'x' after '}'"),
    ],
)
def test_bad_matchers_say_where_and_why(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_matchers(text)
    assert str(caught.value).startswith(message)


NASTY_VALUES = [
    'say "hi"',
    "back\\slash\\",
    "new\nline\r\n",
    "tab\there",
    "nul\x00 del\x7f bell\x07 next-line\x85",
    '"}) or vector(1) #',
    '\\"} or up{a="',
    "`raw` 'single'",
    "ünï 😀 \u2028",
    "",
]


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_quoted_values_read_back_exactly(value: str) -> None:
    quoted = quote_label_value(value)
    assert "\n" not in quoted and "\x00" not in quoted
    assert parse_matchers(f"team={quoted}") == {"team": value}


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_a_value_cannot_change_the_shape_of_a_query(value: str) -> None:
    nasty = track_queries("m", {"team": value}, timedelta(seconds=30))
    plain = track_queries("m", {"team": "PLACEHOLDER"}, timedelta(seconds=30))
    for field in ("requests", "error_rate", "mean_ms", "p99_ms"):
        shape = getattr(nasty, field).replace(quote_label_value(value), '"PLACEHOLDER"')
        assert shape == getattr(plain, field)


def test_model_name_is_quoted_too() -> None:
    assert format_selector('a"}b', {}) == '{model="a\\"}b"}'


def test_lone_surrogate_values_are_refused() -> None:
    with pytest.raises(MatcherError, match="lone surrogate"):
        quote_label_value("\ud800")


@pytest.mark.parametrize("name", ["model", "quantile", "__name__", "9lives", "with-dash", ""])
def test_selector_refuses_label_names_that_would_break_or_contradict_the_query(name: str) -> None:
    with pytest.raises(MatcherError):
        format_selector("m", {name: "x"})


# --- queries --------------------------------------------------------------------------------------


def test_track_queries_follow_the_design() -> None:
    queries = track_queries("ocr", {"modeldeploy_revision": "r1", "namespace": "prod"}, timedelta(minutes=1))
    selector = '{model="ocr",modeldeploy_revision="r1",namespace="prod"}'
    successes = f"sum(increase(nv_inference_request_success{selector}[60s]))"
    failures = f"sum(increase(nv_inference_request_failure{selector}[60s]))"
    assert queries.requests == f"{successes} + {failures}"
    assert queries.error_rate == f"{failures} / ({successes} + {failures})"
    assert queries.mean_ms == (
        f"sum(rate(nv_inference_request_duration_us{selector}[60s]))"
        f" / sum(rate(nv_inference_request_success{selector}[60s])) / 1000"
    )
    assert queries.p99_ms == (
        'max(nv_inference_request_summary_us{model="ocr",modeldeploy_revision="r1",namespace="prod",'
        'quantile="0.99"}) / 1000'
    )


@pytest.mark.parametrize(
    ("window", "expected"),
    [(timedelta(seconds=15), "15s"), (timedelta(minutes=1), "60s"), (timedelta(seconds=1.5), "1500ms")],
)
def test_windows_become_prometheus_durations(window: timedelta, expected: str) -> None:
    assert prometheus_duration(window) == expected


@pytest.mark.parametrize("window", [timedelta(0), timedelta(seconds=-5), timedelta(microseconds=100)])
def test_empty_windows_are_refused(window: timedelta) -> None:
    with pytest.raises(ValueError, match="window must be positive"):
        prometheus_duration(window)


# --- the CLI's refusals (no server needed) ----------------------------------------------------------

REQUIRED = ["analyze", "--prometheus", "http://127.0.0.1:9", "--model", "m"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--stable", 'r="a"', "--canary", 'r=~"b"'],
            "argument --canary: at column 2: label 'r': only equality",
        ),
        (["--stable", "", "--canary", 'r="b"'], "argument --stable: name at least one label"),
        (
            ["--stable", 'r="a"', "--canary", 'r="b"', "--window", "15"],
            "argument --window: '15' is not a duration",
        ),
        (["--stable", 'r="a"', "--canary", 'r="b"', "--window", "0s"], "the window must be longer than zero"),
        (
            ["--stable", 'r="a"', "--canary", 'r="b"', "--max-error-rate", "2"],
            "--max-error-rate: must be between",
        ),
        (
            ["--stable", 'r="a"', "--canary", 'r="b"', "--min-requests", "-3"],
            "--min-requests: must be 0 or more",
        ),
        (["--stable", 'r="a"', "--canary", "{r='a'}"], "--stable and --canary select the same series"),
        (
            ["--stable", 'r="a"', "--canary", 'r="b"', "--prometheus", "prom:9090"],
            "argument --prometheus: 'prom:9090'",
        ),
    ],
)
def test_cli_refuses_bad_input_with_exit_2_naming_the_option(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([*REQUIRED, *extra])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_analyze_reports_a_malformed_prometheus_url_as_an_error_verdict() -> None:
    verdict = analyze("prom:9090", "m", {"r": "a"}, {"r": "b"}, timedelta(minutes=1), DEFAULTS)
    assert verdict.verdict == "error"
    assert "must start with http:// or https://" in verdict.reason
