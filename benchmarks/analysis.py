"""Canary analysis against a real Triton and a real Prometheus: how fast a regression fails, how often
identical tracks fail anyway.

    .venv/bin/python benchmarks/analysis.py [--rate 8] [--window 15s] [--trials 45] [--delay-ms 50]

One stable and three canary tritonservers serve the same 50 ms model; Prometheus scrapes them every second
with the PodMonitor's labels; traffic runs at a fixed rate per track. First every canary is analysed
against the stable track over and over (identical tracks: every `fail` is a false fail). Then, one canary
at a time, the traffic asks that canary for `--delay-ms` more latency per request (the test model's request
parameter), and the script analyses every 0.25 s until the first `fail`: the time from the regression's
start to that verdict is printed. Three canaries give three independent regressions, since Triton's p99
summary remembers past requests for a while.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from realservers import (
    PrometheusServer,
    ScrapeTarget,
    Traffic,
    TritonServer,
    start_prometheus,
    start_triton,
    stop_all,
)

from modeldeploy.analysis import Thresholds, format_selector
from modeldeploy.durations import parse_duration
from modeldeploy.prometheus import analyze, query_number

MODEL = "classifier"
CANARIES = ("canary-1", "canary-2", "canary-3")


def matchers(revision: str) -> dict[str, str]:
    return {"namespace": "bench", "modeldeploy_name": "ocr", "modeldeploy_revision": revision}


def wait_for_requests(
    prometheus: PrometheusServer, revisions: list[str], count: int, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = [
            query_number(
                prometheus.url, f"sum(nv_inference_request_success{format_selector(MODEL, matchers(rev))})"
            )
            or 0.0
            for rev in revisions
        ]
        if min(seen) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} requests reached Prometheus in {timeout_s:.0f} s")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=8.0, help="requests per second per track")
    parser.add_argument("--window", type=parse_duration, default=timedelta(seconds=15))
    parser.add_argument("--trials", type=int, default=45, help="analyses of identical tracks (>= 30)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="latency the regression adds")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up on a regression after this")
    args = parser.parse_args()
    window: timedelta = args.window
    thresholds = Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=50)

    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as scratch:
        return run(args, thresholds, window, Path(scratch))


def run(args: argparse.Namespace, thresholds: Thresholds, window: timedelta, workdir: Path) -> int:
    revisions = ["stable", *CANARIES]
    tritons: dict[str, TritonServer] = {}
    traffic: dict[str, Traffic] = {}
    prometheus: PrometheusServer | None = None
    try:
        for revision in revisions:
            tritons[revision] = start_triton(revision, {MODEL: "fast"}, workdir / revision)
        for triton in tritons.values():
            triton.wait_ready()
        prometheus = start_prometheus(
            [ScrapeTarget(tritons[rev].metrics_address, matchers(rev)) for rev in revisions], workdir / "prom"
        )
        prometheus.wait_ready()
        for revision in revisions:
            traffic[revision] = Traffic(tritons[revision].url, MODEL, args.rate).start()
        wait_for_requests(prometheus, revisions, thresholds.min_requests + 10, timeout_s=120)
        url = prometheus.url

        print(
            f"canary analysis benchmark: window {window.total_seconds():g}s, scrape 1s,"
            f" {args.rate:g} req/s per track, 50 ms model, maxLatencyRatio {thresholds.max_latency_ratio},"
            f" minRequests {thresholds.min_requests}"
        )
        verdicts: Counter[str] = Counter()
        reasons: list[str] = []
        while sum(verdicts.values()) < args.trials:
            round_started = time.monotonic()
            for canary in CANARIES:
                verdict = analyze(url, MODEL, matchers("stable"), matchers(canary), window, thresholds)
                verdicts[verdict.verdict] += 1
                if verdict.verdict != "pass":
                    reasons.append(f"{verdict.verdict}: {verdict.reason}")
            # One round per scrape: each round sees new samples.
            time.sleep(max(0.0, 1.0 - (time.monotonic() - round_started)))
        trials = sum(verdicts.values())
        print(
            f"identical tracks: {trials} analyses ({dict(verdicts)}), false-fail rate"
            f" {verdicts['fail'] / trials:.1%} ({verdicts['fail']}/{trials})"
        )
        for reason in reasons[:5]:
            print(f"  not a pass: {reason}")

        detections: list[float] = []
        for canary in CANARIES:
            started = time.monotonic()
            traffic[canary].extra_delay_ms = args.delay_ms
            while True:
                verdict = analyze(url, MODEL, matchers("stable"), matchers(canary), window, thresholds)
                elapsed = time.monotonic() - started
                if verdict.verdict == "fail":
                    detections.append(elapsed)
                    print(f"  {canary}: +{args.delay_ms:g} ms regression: fail after {elapsed:.2f} s")
                    print(f"    {verdict.reason}")
                    break
                if elapsed > args.timeout:
                    print(f"  {canary}: no fail within {args.timeout:g} s")
                    print(f"    last verdict: {verdict.verdict}: {verdict.reason}")
                    break
                time.sleep(0.25)
        if detections:
            listed = ", ".join(f"{value:.2f} s" for value in detections)
            print(
                f"time from regression start to first fail: median {statistics.median(detections):.2f} s"
                f" over {len(detections)} regressions ({listed})"
            )
        else:
            print("time from regression start to first fail: never (no regression was detected)")
            return 1
        return 0
    finally:
        stop_all(*traffic.values(), prometheus, *tritons.values())


if __name__ == "__main__":
    sys.exit(main())
