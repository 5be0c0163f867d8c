"""`modeldeploy analyze` against a real Prometheus scraping real Triton servers under live traffic.

One tritonserver process stands in for one pod: p99 is a per-server summary, so each pod keeps its own
quantiles, exactly as in a cluster (two revisions as two models of one process would not be faithful:
the `model` label would differ and nothing else would). All serve the model `classifier`; the tracks
differ only by the static labels Prometheus attaches, the same ones the PodMonitor gives (`namespace`,
`modeldeploy_name`, `modeldeploy_revision`, plus `modeldeploy_track`). One revision has two pods. The
stable target also carries a label whose value has quotes, a backslash, a newline, a tab, a control
character and a comma: the stable matcher must select it through PromQL intact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from realparts import missing
from realservers import (
    Fleet,
    FleetPod,
    PartMissingError,
    find_prometheus,
    running_fleet,
    start_prometheus,
    stop_all,
)

from modeldeploy.analysis import Thresholds
from modeldeploy.prometheus import QueryError, analyze, query_number

pytestmark = [pytest.mark.realpart("tritonserver"), pytest.mark.realpart("prometheus")]

MODEL = "classifier"
WINDOW = "15s"
MIN_REQUESTS = 50
NASTY_TEAM = 'ml "platform" \\ core\n, {x}=y;\t\x01\x85 ünï'
# The same value as a user types it on the command line, in PromQL string syntax.
NASTY_TEAM_TEXT = r'"ml \"platform\" \\ core\n, {x}=y;\t\x01\u0085 ünï"'


@dataclass(frozen=True)
class Pod:
    """One tritonserver process: one pod of a revision."""

    name: str
    revision: str
    test_model: str
    rate_per_s: float
    track: str = "canary"


PODS = (
    Pod("stable", "rev-stable", "fast", 10, track="stable"),
    Pod("same", "rev-same", "fast", 10),
    Pod("slow", "rev-slow", "slow", 10),  # 200 ms per request: about 5 per second get through
    Pod("flaky", "rev-flaky", "flaky", 10),
    Pod("quiet", "rev-quiet", "fast", 0.2),  # a canary that gets almost no traffic
    # A revision with two pods, one of them slow: the slow pod must not hide behind the fast one.
    Pod("mixed-fast", "rev-mixed", "fast", 10),
    Pod("mixed-slow", "rev-mixed", "slow", 10),
)
BUSY = sorted({pod.revision for pod in PODS if pod.rate_per_s >= 1})


def labels(pod: Pod) -> dict[str, str]:
    result = {
        "namespace": "prod",
        "modeldeploy_name": "ocr",
        "modeldeploy_revision": pod.revision,
        "modeldeploy_track": pod.track,
    }
    if pod.track == "stable":
        result["team"] = NASTY_TEAM
    return result


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    pods = [FleetPod(pod.name, pod.test_model, pod.rate_per_s, labels(pod)) for pod in PODS]
    workdir = tmp_path_factory.mktemp("analysis")
    try:
        # Ready for analysis once Prometheus has scraped enough requests of every busy track.
        with running_fleet(MODEL, pods, workdir, min_requests=MIN_REQUESTS + 10, revisions=BUSY) as fleet:
            yield fleet
    except PartMissingError as error:
        missing(error.part, error.why)


def run_analyze(
    prometheus_url: str, stable: str, canary: str, *extra: str
) -> tuple[int, dict[str, Any], str]:
    script = Path(sys.executable).with_name("modeldeploy")
    result = subprocess.run(
        [str(script), "analyze", "--prometheus", prometheus_url, "--model", MODEL, "--stable", stable,
         "--canary", canary, "--window", WINDOW, *extra],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    output = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, output, result.stderr


STABLE = (
    f'namespace="prod", modeldeploy_name="ocr", modeldeploy_revision="rev-stable", team={NASTY_TEAM_TEXT}'
)


def canary(revision: str) -> str:
    return f'namespace="prod",modeldeploy_name="ocr",modeldeploy_revision="{revision}"'


def test_same_model_on_both_tracks_passes(fleet: Fleet) -> None:
    code, output, stderr = run_analyze(fleet.prometheus.url, STABLE, canary("rev-same"))
    assert code == 0, f"{output}\n{stderr}\n{fleet.logs()}"
    assert output["verdict"] == "pass"
    assert output["failed_checks"] == []
    stable, canary_numbers = output["stable"], output["canary"]
    # The nasty label matched: the stable numbers come from the stable server.
    assert stable["requests"] >= MIN_REQUESTS and canary_numbers["requests"] >= MIN_REQUESTS
    assert stable["error_rate"] == 0 and canary_numbers["error_rate"] == 0
    for numbers in (stable, canary_numbers):
        assert 50 <= numbers["p99_ms"] < 100  # the model sleeps 50 ms
        # Not `mean <= p99`: the mean comes from counters over the window, p99 from Triton's own rolling
        # summary, so with a near-constant latency either can come out a fraction of a millisecond higher.
        assert 50 <= numbers["mean_ms"] < 100


def test_slow_canary_fails_on_latency_with_both_numbers(fleet: Fleet) -> None:
    code, output, _ = run_analyze(fleet.prometheus.url, STABLE, canary("rev-slow"), "--max-p99-ms", "120")
    assert code == 1, output
    assert output["verdict"] == "fail"
    assert output["failed_checks"] == ["maxP99LatencyMs", "maxLatencyRatio"]
    stable, slow = output["stable"], output["canary"]
    assert slow["p99_ms"] >= 3 * stable["p99_ms"]  # 200 ms against 50 ms
    reason = str(output["reason"])
    assert f"canary p99 {slow['p99_ms']:.1f} ms > maxP99LatencyMs 120 ms" in reason
    assert f"x stable p99 {stable['p99_ms']:.1f} ms" in reason


def test_one_slow_pod_fails_its_revision_even_beside_a_fast_one(fleet: Fleet) -> None:
    code, output, _ = run_analyze(fleet.prometheus.url, STABLE, canary("rev-mixed"))
    assert code == 1, output
    assert output["failed_checks"] == ["maxLatencyRatio"]
    mixed = output["canary"]
    # The worst pod's p99: every request of the slow pod sleeps 200 ms, so its p99 is at least that, while
    # an average of the two pods' quantiles would be near 125 ms. Requests add up over both pods.
    assert mixed["p99_ms"] >= 200
    assert mixed["requests"] > output["stable"]["requests"]


def test_erroring_canary_fails_on_error_rate(fleet: Fleet) -> None:
    code, output, _ = run_analyze(fleet.prometheus.url, STABLE, canary("rev-flaky"))
    assert code == 1, output
    assert output["failed_checks"] == ["maxErrorRate"]
    flaky = output["canary"]
    client = fleet.traffic["flaky"]
    client_share = client.failed / client.sent
    # Prometheus saw the share of failed requests the client saw (one in four, from the model's config).
    assert abs(flaky["error_rate"] - client_share) < 0.1, (flaky, client.failed, client.sent)
    assert f"canary error rate {flaky['error_rate']:.2%} > maxErrorRate 1.00%" in str(output["reason"])


def test_too_little_traffic_waits(fleet: Fleet) -> None:
    code, output, _ = run_analyze(fleet.prometheus.url, STABLE, canary("rev-quiet"))
    assert code == 3, output
    assert output["verdict"] == "wait"
    quiet = output["canary"]
    assert quiet["requests"] < MIN_REQUESTS
    assert f"canary has {quiet['requests']:.0f} requests in the window, fewer than minRequests 50" in str(
        output["reason"]
    )


def test_a_revision_prometheus_never_saw_is_an_error_not_a_pass(fleet: Fleet) -> None:
    code, output, _ = run_analyze(fleet.prometheus.url, STABLE, canary("rev-typo"))
    assert code == 4, output
    assert output["verdict"] == "error"
    assert "no data for canary requests" in str(output["reason"])


def test_stopped_prometheus_is_an_error(tmp_path: Path) -> None:
    try:
        find_prometheus()
    except PartMissingError as error:
        missing(error.part, error.why)
    lone = start_prometheus([], tmp_path)
    try:
        lone.wait_ready()
    finally:
        stop_all(lone)
    code, output, _ = run_analyze(lone.url, STABLE, canary("rev-same"))
    assert code == 4, output
    assert output["verdict"] == "error"
    assert f"Prometheus at {lone.url}: unreachable" in str(output["reason"])


def test_analyze_function_fills_both_measurements(fleet: Fleet) -> None:
    """The operator's entry point: the same verdict, with numbers for status.analysis."""
    thresholds = Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=50)
    common = {"namespace": "prod", "modeldeploy_name": "ocr"}
    verdict = analyze(
        fleet.prometheus.url,
        MODEL,
        {**common, "modeldeploy_revision": "rev-stable", "team": NASTY_TEAM},
        {**common, "modeldeploy_revision": "rev-flaky"},
        timedelta(seconds=15),
        thresholds,
    )
    assert verdict.verdict == "fail"
    assert verdict.failed_checks == ("maxErrorRate",)
    for measurement in (verdict.stable, verdict.canary):
        assert measurement.requests is not None and measurement.requests >= MIN_REQUESTS
        assert measurement.mean_ms is not None and measurement.p99_ms is not None
    assert verdict.stable.error_rate == 0
    assert verdict.canary.error_rate is not None and verdict.canary.error_rate > 0.1


def test_prometheus_refusing_a_query_is_reported_with_its_message(fleet: Fleet) -> None:
    with pytest.raises(QueryError, match=r"query refused: HTTP Status Code 400: bad_data: .*parse error"):
        query_number(fleet.prometheus.url, "sum(nv_inference_request_success{model=})")


def test_a_url_that_is_not_prometheus_is_an_error_that_says_so(fleet: Fleet) -> None:
    # A common slip: Triton's address where Prometheus's belongs.
    thresholds = Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=50)
    triton_url = fleet.tritons["stable"].url
    verdict = analyze(triton_url, MODEL, {"r": "a"}, {"r": "b"}, timedelta(seconds=15), thresholds)
    assert verdict.verdict == "error"
    assert verdict.reason.startswith(f"Prometheus at {triton_url}: query refused: HTTP Status Code")
    assert "is the URL Prometheus's base URL?" in verdict.reason
