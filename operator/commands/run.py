"""`modeldeploy run`: the operator process (kopf), against the cluster of the current kubeconfig."""

from __future__ import annotations

import argparse
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
    parser.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    parser.add_argument("--log-format", choices=["plain", "json"], default="plain")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--health-port", type=int, default=8080, help="liveness at :PORT/healthz (0: off)")
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="Prometheus metrics at :PORT/metrics (0: off)"
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    import kopf  # noqa: PLC0415

    import modeldeploy.handlers  # noqa: F401, PLC0415  (registers the handlers)

    log_format = kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(verbose=args.verbose, log_format=log_format)
    memo = kopf.Memo(metrics_port=args.metrics_port or None)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone or None,
            peering_name=args.peering,
            priority=args.priority,
            liveness_endpoint=liveness,
            memo=memo,
        )
    )
    return 0
