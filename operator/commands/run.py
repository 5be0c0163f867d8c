"""`modeldeploy run`: the operator process (kopf), against the cluster of the current kubeconfig."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from modeldeploy.credentials import has_userinfo, install_log_redaction
from modeldeploy.defaults import BUILTIN, PrometheusAuthRef, SpecDefaults


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
    add_default_flags(parser)
    parser.set_defaults(handler=_handle)


def add_default_flags(parser: argparse.ArgumentParser) -> None:
    defaults = parser.add_argument_group(
        "defaults for every ModelDeployment (a field set in the object wins; the Helm chart sets these)"
    )
    defaults.add_argument("--optimizer-image", default=BUILTIN.optimizer_image, metavar="IMAGE")
    defaults.add_argument(
        "--optimizer-tensorrt-image",
        default=BUILTIN.optimizer_tensorrt_image,
        metavar="IMAGE",
        help="optimizer image for compile target tensorrt (built with TensorRT)",
    )
    defaults.add_argument("--triton-image", default=BUILTIN.triton_image, metavar="IMAGE")
    defaults.add_argument(
        "--accelerator",
        choices=["gpu", "cpu"],
        default=BUILTIN.accelerator,
        help="gpu: Jobs and Triton ask for nvidia.com/gpu; cpu: no GPU anywhere (kind, CI, CPU clusters)",
    )
    defaults.add_argument("--prometheus-url", default=BUILTIN.prometheus_url, metavar="URL")
    defaults.add_argument(
        "--prometheus-auth-secret",
        metavar="NAMESPACE/NAME",
        help="Secret with Prometheus credentials (token, or username and password; optional ca.crt), "
        "sent only to --prometheus-url",
    )
    defaults.add_argument(
        "--prometheus-auth-type", choices=["bearerToken", "basicAuth", "none"], default="bearerToken"
    )
    defaults.add_argument(
        "--pod-monitor-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label on every PodMonitor, e.g. release=kube-prometheus-stack (repeatable)",
    )


class DefaultsError(ValueError):
    """A `modeldeploy run` default flag is invalid; the message names the flag."""


def _check(value: str, pattern: str, flag: str, what: str, max_length: int = 2048) -> str:
    if len(value) > max_length or re.fullmatch(pattern, value) is None:
        raise DefaultsError(f"{flag}: must be {what}, got {value!r:.100}")
    return value


def spec_defaults(args: argparse.Namespace) -> SpecDefaults:
    """The operator-wide defaults from the flags, checked as strictly as the CRD checks the fields."""
    from modeldeploy.spec import (  # noqa: PLC0415  (pydantic: only when the operator starts)
        DNS1123_LABEL,
        DNS1123_SUBDOMAIN,
        HTTP_URL,
        IMAGE,
        LABEL_KEY,
        LABEL_VALUE,
    )

    url = _check(args.prometheus_url, HTTP_URL, "--prometheus-url", "an http:// or https:// URL")
    if has_userinfo(url):
        raise DefaultsError("--prometheus-url: must not contain credentials: use --prometheus-auth-secret")
    auth = None
    if args.prometheus_auth_secret:
        namespace, _, name = args.prometheus_auth_secret.partition("/")
        _check(namespace, DNS1123_LABEL, "--prometheus-auth-secret", "NAMESPACE/NAME", 63)
        _check(name, DNS1123_SUBDOMAIN, "--prometheus-auth-secret", "NAMESPACE/NAME", 253)
        auth = PrometheusAuthRef(namespace, name, args.prometheus_auth_type)
    labels: dict[str, str] = {}
    for item in args.pod_monitor_label:
        key, equals, value = item.partition("=")
        if not equals:
            raise DefaultsError(f"--pod-monitor-label: must be KEY=VALUE, got {item!r:.100}")
        _check(key, LABEL_KEY, "--pod-monitor-label", "a label key", 316)
        labels[key] = _check(value, LABEL_VALUE, "--pod-monitor-label", "a label value", 63)
    return SpecDefaults(
        optimizer_image=_check(args.optimizer_image, IMAGE, "--optimizer-image", "an image reference", 512),
        optimizer_tensorrt_image=_check(
            args.optimizer_tensorrt_image, IMAGE, "--optimizer-tensorrt-image", "an image reference", 512
        ),
        triton_image=_check(args.triton_image, IMAGE, "--triton-image", "an image reference", 512),
        accelerator=args.accelerator,
        prometheus_url=url,
        prometheus_auth=auth,
        pod_monitor_labels=labels,
    )


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
    try:
        defaults = spec_defaults(args)
    except DefaultsError as error:
        print(f"modeldeploy run: {error}", file=sys.stderr)
        return 2
    import asyncio  # noqa: PLC0415

    import kopf  # noqa: PLC0415

    import modeldeploy.handlers  # noqa: F401, PLC0415  (registers the handlers)

    log_format = kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(verbose=args.verbose, log_format=log_format)
    install_log_redaction()  # after kopf's handlers exist: URL credentials never reach a log line
    settings = kopf.OperatorSettings()  # `handlers.configure` completes it at startup
    settings.scanning.disabled = not needs_scanning(args.namespace)
    memo = kopf.Memo(metrics_port=args.metrics_port or None, defaults=defaults)
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
