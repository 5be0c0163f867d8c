"""The sandbox's real Prometheus: it discovers the Triton pods from the API server (`kubernetes_sd_configs`,
role pod) and relabels their series as the operator's rendered PodMonitor asks, which is what the
Prometheus Operator would generate from that PodMonitor. Two sandbox-only differences, both stated on
screen and in docs/sandbox.md: targets are scraped every 2 s (the PodMonitor says 15 s) so a short canary
step has data, and a pod's address 10.A.B.C is rewritten to 127.A.B.C, where the sandbox's process of that
pod listens (`modeldeploy.sandbox.pods.loopback_address`).

Debian's prometheus is built without Kubernetes discovery; `hack/prometheus/build.sh` builds
github.com/prometheus/prometheus from its Go module (kubernetes discovery only), cached by go.sum.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modeldeploy.cluster.binaries import BinariesMissingError, source_folder
from modeldeploy.cluster.processes import ServerProcess, free_port, http_ok, launch
from modeldeploy.cluster.rest import Credentials

SCRAPE_INTERVAL = "2s"
BINARY_ENV = "MODELDEPLOY_PROMETHEUS_BIN"  # a prometheus built elsewhere (it needs Kubernetes discovery)
LOOPBACK_RELABELING = {
    "action": "replace",
    "source_labels": ["__address__"],
    "regex": r"10\.(\d+)\.(\d+)\.(\d+):(\d+)",
    "replacement": "127.$1.$2.$3:$4",
    "target_label": "__address__",
}
_RELABEL_KEYS = {
    "sourceLabels": "source_labels",
    "targetLabel": "target_label",
    "regex": "regex",
    "replacement": "replacement",
    "separator": "separator",
    "modulus": "modulus",
}


def _meta_label(label: str) -> str:
    """`__meta_kubernetes_pod_label_<name>` for a pod label (non-alphanumerics become `_`)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^A-Za-z0-9_]", "_", label)


def scrape_config(pod_monitor: Mapping[str, Any], credentials: Credentials) -> dict[str, Any]:
    """The scrape config the Prometheus Operator would generate for the PodMonitor's first endpoint,
    discovering pods through the API server at `credentials.server`."""
    spec = pod_monitor["spec"]
    endpoint = spec["podMetricsEndpoints"][0]
    keep: list[dict[str, Any]] = [
        {"action": "keep", "source_labels": [_meta_label(key)], "regex": re.escape(value)}
        for key, value in sorted(spec["selector"].get("matchLabels", {}).items())
    ]
    keep.append(
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": re.escape(endpoint["port"]),
        }
    )
    relabelings = [
        {"action": rule.get("action", "replace").lower()}
        | {_RELABEL_KEYS[key]: value for key, value in rule.items() if key in _RELABEL_KEYS}
        for rule in endpoint.get("relabelings", ())
    ]
    meta = pod_monitor["metadata"]
    return {
        "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/0",
        "scrape_interval": SCRAPE_INTERVAL,
        "scrape_timeout": SCRAPE_INTERVAL,
        "metrics_path": endpoint.get("path", "/metrics"),
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "api_server": credentials.server,
                "tls_config": {
                    "ca_file": str(credentials.ca),
                    "cert_file": str(credentials.cert),
                    "key_file": str(credentials.key),
                },
                "namespaces": {"names": list(spec.get("namespaceSelector", {}).get("matchNames", ()))},
            }
        ],
        "relabel_configs": [*keep, *relabelings, LOOPBACK_RELABELING],
    }


def ensure_prometheus(progress: Callable[[str], None]) -> Path:
    """A prometheus binary with Kubernetes discovery, built from its Go module on first use."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return Path(override)
    source = source_folder()
    build = source.parent / "prometheus" / "build.sh" if source is not None else None
    if build is None or not build.is_file():
        raise BinariesMissingError("hack/prometheus/build.sh not found (run from a modeldeploy checkout)")
    if shutil.which("go") is None:
        raise BinariesMissingError("the Go toolchain is needed to build Prometheus (`go` not on PATH)")
    progress("building Prometheus (with Kubernetes discovery) from its Go module if needed")
    result = subprocess.run(
        [str(build)], stdout=subprocess.PIPE, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise BinariesMissingError(f"hack/prometheus/build.sh failed with exit code {result.returncode}")
    binary = Path(result.stdout.strip().splitlines()[-1]) / "prometheus"
    if not binary.is_file():
        raise BinariesMissingError(f"build.sh reported {binary.parent}, which lacks prometheus")
    return binary


def write_config(path: Path, scrape_configs: list[dict[str, Any]]) -> None:
    """JSON is YAML: label values and paths stay data."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": scrape_configs,
    }
    path.write_text(json.dumps(config, indent=2))


def start_prometheus(
    binary: Path, workdir: Path, scrape_configs: list[dict[str, Any]], port: int | None = None
) -> tuple[ServerProcess, str]:
    """Start Prometheus on `port` (default: a free one); returns it and its URL once /-/ready answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    write_config(config, scrape_configs)
    port = port or free_port()
    process = launch(
        "prometheus",
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: http_ok(f"{url}/-/ready"), "ready")
    return process, url


def reload(url: str, path: Path, scrape_configs: list[dict[str, Any]]) -> None:
    """Rewrite the configuration and ask Prometheus to load it (as the Prometheus Operator does when a
    PodMonitor appears)."""
    import urllib.request  # noqa: PLC0415

    write_config(path / "prometheus.yml", scrape_configs)
    request = urllib.request.Request(f"{url}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
