"""`modeldeploy sandbox` (`make run`): the whole story on this machine, on a real model, with the real
control plane, the real operator, real Triton and a real Prometheus: optimize → Ready → canary → promote
→ slow canary → rollback, shown live, then a summary table (docs/sandbox.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".cache/sandbox"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="watch optimize → canary → promote → rollback happen on this machine (real Triton, Prometheus)",
        description=(
            "Starts a local control plane (built from Go modules on first use), the operator, a node agent "
            "that runs pods as local processes, Prometheus and a load generator; rolls three revisions of a "
            "real OCR model through it and prints what happens. Ctrl-C stops everything it started."
        ),
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(DEFAULT_DIR), help=f"work folder (default {DEFAULT_DIR})"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave everything running at the end (Ctrl-C stops)"
    )
    parser.add_argument("--interval", default="10s", help="canary step interval (default 10s, the minimum)")
    parser.add_argument("--steps", default="25,50", help="canary weights in percent (default 25,50)")
    parser.add_argument(
        "--rate", type=float, default=25.0, help="requests per second of the load (default 25)"
    )
    parser.add_argument(
        "--delay-ms", type=float, default=150.0, help="revision 3's injected delay (default 150)"
    )
    parser.add_argument(
        "--failure-threshold", type=int, default=2, help="failed analyses before a rollback (default 2)"
    )
    parser.add_argument(
        "--until",
        choices=("ready", "promoted", "rollback"),
        default="rollback",
        help="end the story after revision 1 is Ready, revision 2 promoted, or revision 3 rolled back",
    )
    parser.add_argument("--result", type=Path, help="also write the outcome as JSON here (tests)")
    parser.set_defaults(handler=_handle)


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _handle(args: argparse.Namespace) -> int:
    from modeldeploy.cluster.binaries import BinariesMissingError  # noqa: PLC0415
    from modeldeploy.cluster.rest import ApiError  # noqa: PLC0415
    from modeldeploy.sandbox.stack import Stack, wait_gone  # noqa: PLC0415
    from modeldeploy.sandbox.story import NAMESPACE, Story, StoryError, StoryOptions  # noqa: PLC0415
    from modeldeploy.sandbox.tritonserver import TritonMissingError  # noqa: PLC0415

    options = StoryOptions(
        interval=args.interval,
        steps=tuple(int(step) for step in args.steps.split(",")),
        rate_per_s=args.rate,
        delay_ms=args.delay_ms,
        failure_threshold=args.failure_threshold,
        until=args.until,
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.monotonic()
    stack = Stack(args.dir.resolve(), _say)
    result: dict[str, Any] = {"ok": False}
    code = 1
    try:
        stack.start(NAMESPACE)
        story = Story(stack, options, _say)
        rows = story.run()
        result = story.result(rows) | {"ok": True, "prometheusUrl": stack.prometheus_url}
        result["reportJson"] = {
            name: story.report_json(revision) for name, revision in story.revisions.items() if revision.name
        }
        print(f"\n{result['table']}\n", flush=True)
        _check_reports(result)
        _say(f"story told in {time.monotonic() - started:.0f} s")
        code = 0
        if args.keep:
            _keep(stack)
    except (BinariesMissingError, TritonMissingError) as error:
        print(f"modeldeploy sandbox: a real part is missing: {error}", file=sys.stderr)
    except (StoryError, ApiError, RuntimeError, TimeoutError) as error:
        print(f"modeldeploy sandbox: {error}\n{stack.logs()}", file=sys.stderr)
    except KeyboardInterrupt:
        _say("interrupted")
        code = 130
    finally:
        _say("stopping everything the sandbox started")
        pids = [*stack.started_pids, *(stack.pods.launched if stack.pods else [])]
        stack.stop()
        result["pids"] = pids
        result["leftRunning"] = wait_gone(pids)
        result["seconds"] = round(time.monotonic() - started, 1)
        if args.result is not None:
            args.result.write_text(json.dumps(result, indent=2))
    return code


def _check_reports(result: dict[str, Any]) -> None:
    """The summary's optimizer figures are those of each revision's report.json."""
    for revision in result["revisions"]:
        report = result["reportJson"].get(str(revision["number"]))
        status = revision["optimization"]
        if report is None or not status:
            continue
        agrees = report.get("chosen") == status.get("chosen") and all(
            (report.get(section) or {}).get("size_bytes") == (status.get(key) or {}).get("sizeBytes")
            and (report.get(section) or {}).get("latency_ms_p50") == (status.get(key) or {}).get("latencyMs")
            for section, key in (("baseline", "before"), ("after", "after"))
        )
        verdict = "agrees with" if agrees else "DIFFERS from"
        what = "chosen, size and p50 before/after"
        _say(f"report.json of revision {revision['number']} {verdict} status.optimization ({what})")


def _keep(stack: Any) -> None:
    from modeldeploy.sandbox.pods import loopback_address  # noqa: PLC0415
    from modeldeploy.sandbox.story import MODEL, NAME, NAMESPACE  # noqa: PLC0415

    slices = stack.plane.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
        params={"labelSelector": f"kubernetes.io/service-name={NAME}"},
    )
    addresses = [e["addresses"][0] for s in slices.get("items", ()) for e in s.get("endpoints") or ()]
    inference = (
        f"http://{loopback_address(addresses[0])}:8000/v2/models/{MODEL}" if addresses else "(no endpoint)"
    )
    print(f"export KUBECONFIG={stack.plane.kubeconfig}")
    print(f"Prometheus: {stack.prometheus_url or '(not started: the story ended before it)'}")
    print(f"Inference:  {inference}")
    print("Everything keeps running; Ctrl-C stops it.", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:  # the way out of --keep: the story itself went well
        _say("Ctrl-C")
