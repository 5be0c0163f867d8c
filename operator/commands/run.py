"""`modeldeploy run`: the operator process (kopf), against the cluster of the current kubeconfig."""

from __future__ import annotations

import argparse
import time
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the operator against a cluster (in a pod: its service account; else KUBECONFIG)",
        description="Reconcile ModelDeployments: optimize, serve with Triton, roll out as analysed canaries.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering", metavar="NAME", help="kopf peering object: only the highest-priority replica acts"
    )
    peering.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help=(
            "peering priority of this replica (default: from its start time, so the replica started first "
            "acts and later ones stand by)"
        ),
    )
    parser.add_argument("--log-format", choices=["plain", "json"], default="plain")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--health-port", type=int, default=8080, help="liveness at :PORT/healthz (0: off)")
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="Prometheus metrics at :PORT/metrics (0: off)"
    )
    parser.set_defaults(handler=_handle)


# Above any nanosecond timestamp until the year 2096, below 2**63 (kopf stores the priority as a JSON int64).
PRIORITY_CEILING = 4_000_000_000_000_000_000


def start_time_priority(started_ns: int) -> int:
    """A peering priority from a start time (ns since the epoch): the earlier the start, the higher.

    kopf pauses every replica when two peers share a priority; nanoseconds keep them distinct, and the
    replica that has been working longest keeps working when another one starts.
    """
    return PRIORITY_CEILING - started_ns


def needs_scanning(namespaces: list[str]) -> bool:
    """Whether kopf must list/watch namespaces and watch CRDs ("scanning") to know what to serve.

    Cluster-wide (no `--namespace`) it keeps following CRD changes, as the chart's ClusterRole allows. Given
    exact namespace names there is nothing to discover, and a namespaced install (a Role per namespace) may
    not read namespaces or CRDs: scanning would only be refused and logged as warnings. kopf's namespace
    patterns (`ml-*`, `!kube-system`, `a,b`) still need the namespace listing to be expanded.
    """
    if not namespaces:
        return True
    return any(any(mark in namespace for mark in "*?!,") for namespace in namespaces)


def _handle(args: argparse.Namespace) -> int:
    started_ns = time.time_ns()  # before the slow imports: as close to the process start as it gets
    import asyncio  # noqa: PLC0415

    import kopf  # noqa: PLC0415

    import modeldeploy.handlers  # noqa: F401, PLC0415  (registers the handlers)

    log_format = kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(verbose=args.verbose, log_format=log_format)
    settings = kopf.OperatorSettings()  # `handlers.configure` completes it at startup
    settings.scanning.disabled = not needs_scanning(args.namespace)
    memo = kopf.Memo(metrics_port=args.metrics_port or None)
    priority: int | None = args.priority
    if priority is None and not args.standalone:
        priority = start_time_priority(started_ns)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone or None,
            peering_name=args.peering,
            priority=priority,
            liveness_endpoint=liveness,
            settings=settings,
            memo=memo,
        )
    )
    return 0
