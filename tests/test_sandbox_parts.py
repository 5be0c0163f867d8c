"""The sandbox's pure parts (modeldeploy.sandbox): the scrape config made from the operator's rendered
PodMonitor, the pod → local process mapping (addresses, volumes, the adapter's delay flag), the
endpoints the load generator routes to, and the lines of the live view. The story itself runs in
tests/test_sandbox.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modeldeploy.cluster.rest import Credentials
from modeldeploy.rendering import Owner, render_pod_monitor
from modeldeploy.revision import compute_revision
from modeldeploy.sandbox.load import Endpoint, ready_endpoints
from modeldeploy.sandbox.monitoring import scrape_config
from modeldeploy.sandbox.pods import job_command, local_path, loopback_address, pod_mounts
from modeldeploy.sandbox.story import MODEL_V3_PATH, StoryOptions, manifest
from modeldeploy.sandbox.view import SummaryRow, changes, summary_table
from modeldeploy.spec import parse_spec

CREDENTIALS = Credentials("https://127.0.0.1:6443", Path("/ca.crt"), Path("/a.crt"), Path("/a.key"))


def test_the_story_manifests_are_three_revisions_with_short_rollouts() -> None:
    options = StoryOptions()
    specs = [
        parse_spec(manifest(options, "none")["spec"]),
        parse_spec(manifest(options, "int8-dynamic")["spec"]),
        parse_spec(manifest(options, "int8-dynamic", MODEL_V3_PATH)["spec"]),
    ]
    assert len({compute_revision(spec) for spec in specs}) == 3
    for spec in specs:
        assert spec.rollout.interval.total_seconds() == 10
        assert list(spec.rollout.steps) == [25, 50]


def test_scrape_config_keeps_what_the_pod_monitor_selects_and_applies_its_relabelings() -> None:
    spec = parse_spec(manifest(StoryOptions(), "none")["spec"])
    pod_monitor = render_pod_monitor(Owner("ocr", "sandbox"), spec)
    assert pod_monitor is not None
    pod_monitor["metadata"]["namespace"] = "sandbox"
    config = scrape_config(pod_monitor, CREDENTIALS)
    discovery = config["kubernetes_sd_configs"][0]
    assert discovery["role"] == "pod"
    assert discovery["api_server"] == CREDENTIALS.server
    assert discovery["namespaces"] == {"names": ["sandbox"]}
    rules = config["relabel_configs"]
    keeps = {tuple(rule["source_labels"]): rule["regex"] for rule in rules if rule["action"] == "keep"}
    assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_instance",)] == "ocr"
    assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == "triton"
    assert keeps[("__meta_kubernetes_pod_container_port_name",)] == "metrics"
    targets = {
        rule.get("target_label"): rule["source_labels"] for rule in rules if rule["action"] == "replace"
    }
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    assert targets["pod"] == ["__meta_kubernetes_pod_name"]
    assert targets["modeldeploy_name"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    assert targets["modeldeploy_revision"] == ["__meta_kubernetes_pod_label_modeldeploy_io_revision"]
    # The sandbox's one addition comes last: the pod IP's process listens on loopback.
    assert rules[-1]["target_label"] == "__address__"
    assert rules[-1]["replacement"] == "127.$1.$2.$3:$4"


@pytest.mark.parametrize(
    ("pod_ip", "address"), [("10.244.0.1", "127.244.0.1"), ("10.244.3.200", "127.244.3.200")]
)
def test_a_pod_listens_on_the_loopback_twin_of_its_ip(pod_ip: str, address: str) -> None:
    assert loopback_address(pod_ip) == address


def test_volumes_become_folders_claims_below_the_pvc_root(tmp_path: Path) -> None:
    pod: dict[str, Any] = {
        "spec": {
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "repo", "persistentVolumeClaim": {"claimName": "model-store"}},
            ]
        }
    }
    container = {
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "repo", "mountPath": "/models", "subPath": "repositories/ns/ocr/abc"},
        ]
    }
    mounts = pod_mounts(pod, container, tmp_path / "pvc", tmp_path / "pod")
    repository = tmp_path / "pvc" / "model-store" / "repositories" / "ns" / "ocr" / "abc"
    assert local_path("--model-repository=/models", mounts) == f"--model-repository={repository}"
    assert local_path("/tmp/x", mounts) == str(tmp_path / "pod" / "volumes" / "tmp" / "x")
    assert local_path("/mnt/pvc", mounts) == str(tmp_path / "pvc")  # $MODELDEPLOY_PVC_ROOT
    assert local_path("/tmpfile", mounts) == "/tmpfile"  # a prefix of a name is not a mount
    assert local_path("--http-port=8000", mounts) == "--http-port=8000"


def test_the_job_runs_this_install_s_modeldeploy_even_from_a_checkout_under_a_mounted_path(
    tmp_path: Path,
) -> None:
    """A checkout under /tmp (CI clones there) with the Job's /tmp emptyDir: the program stays where it is,
    the arguments under /tmp and the termination message move into the pod's folders."""
    bin_dir = tmp_path / "checkout" / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "modeldeploy").touch()
    pod: dict[str, Any] = {"spec": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}
    container = {
        "command": ["modeldeploy", "optimize"],
        "args": ["--workdir=/tmp/work", "--message", "/dev/termination-log"],
        "volumeMounts": [{"name": "tmp", "mountPath": str(tmp_path)}],
    }
    mounts = pod_mounts(pod, container, tmp_path / "pvc", tmp_path / "pod")
    message = tmp_path / "pod" / "termination-log"
    command = job_command(container, mounts, message, bin_dir)
    assert command[0] == str(bin_dir / "modeldeploy")
    assert command[1:] == ["optimize", "--workdir=/tmp/work", "--message", str(message)]
    outside = job_command({**container, "command": ["optimizer-missing"]}, mounts, message, bin_dir)
    assert outside[0] == "optimizer-missing"


def test_load_goes_only_to_ready_endpoints_on_their_loopback_address() -> None:
    slices = {
        "items": [
            {
                "ports": [{"name": "grpc", "port": 8001}, {"name": "http", "port": 8000}],
                "endpoints": [
                    {"addresses": ["10.244.0.5"], "conditions": {"ready": True}, "targetRef": {"name": "a"}},
                    {"addresses": ["10.244.0.6"], "conditions": {"ready": False}, "targetRef": {"name": "b"}},
                ],
            },
            {"ports": None, "endpoints": [{"addresses": ["10.244.0.7"], "conditions": {"ready": True}}]},
        ]
    }
    assert ready_endpoints(slices) == [Endpoint("a", "127.244.0.5", 8000)]


def test_the_view_prints_a_line_per_change() -> None:
    analysis = {
        "time": "2026-01-01T00:00:10Z",
        "verdict": "fail",
        "reason": "p99 too high",
        "stable": {"requests": 120.0, "errorRate": 0.0, "p99Ms": 3.25},
        "canary": {"requests": 40.0, "errorRate": 0.025, "p99Ms": 81.0},
    }
    before = {"phase": "Canary", "stableRevision": "r1", "canaryRevision": "r2", "canaryWeight": 25}
    after = {**before, "analysis": analysis}
    lines = changes(before, after)
    assert len(lines) == 1
    assert lines[0].startswith("analysis FAIL  at  25%  stable: 120 req, errors 0.00%, p99 3.2 ms")
    assert "canary: 40 req, errors 2.50%, p99 81.0 ms" in lines[0]
    assert "p99 too high" in lines[0]
    assert changes(after, after) == []
    rolled = {
        **after,
        "phase": "Degraded",
        "canaryRevision": None,
        "lastRollback": {"revision": "r2", "reason": "x"},
    }
    assert changes(after, rolled) == ["phase      Degraded: stable r1", "ROLLBACK   rev r2: x"]


def test_the_summary_table_lines_up() -> None:
    rows = [
        SummaryRow("1 r1", "none", "original 10->10 B", "stable", "-", 5, 0, 5.0),
        SummaryRow("2 r2", "int8", "int8-dynamic 10->8 B", "promoted", "pass, pass", 120, 1, None),
    ]
    table = summary_table(rows).splitlines()
    assert table[0].split() == [
        "revision",
        "change",
        "optimizer",
        "outcome",
        "verdicts",
        "sent",
        "failed",
        "Prometheus",
        "ok",
    ]
    assert set(table[1]) == {"-", " "}
    assert table[3].split()[-3:] == ["120", "1", "-"]
    assert len({len(line.rstrip()) for line in table[:2]}) == 1
