"""`make cluster` / `make cluster-down` (`modeldeploy cluster up|down`): a person's local control plane.
`up` returns once the API is ready and leaves a kubeconfig; the node agent makes pods Running; `down`
stops every process `up` started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cluster import run_kubectl, wait_until
from realparts import missing
from toolbin import REPO_ROOT

from modeldeploy.cluster.binaries import BinariesMissingError, ensure_binaries

MODELDEPLOY = Path(sys.executable).parent / "modeldeploy"


def modeldeploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODELDEPLOY), *args], capture_output=True, text=True, check=False, timeout=300, cwd=REPO_ROOT
    )


def kubectl(kubeconfig: Path, *args: str) -> str:
    return run_kubectl(kubeconfig, *args).stdout


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is gone.
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_cluster_up_serves_the_api_runs_pods_and_down_stops_everything(tmp_path: Path) -> None:
    try:
        ensure_binaries()
    except BinariesMissingError as error:
        missing("control plane (hack/controlplane)", str(error))
    folder = tmp_path / "cluster"
    up = modeldeploy("cluster", "up", "--dir", str(folder))
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = folder / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout
        pids = json.loads((folder / "state.json").read_text())["pids"]
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "node-agent"}
        assert "modeldeploy-node   Ready" in wait_until(
            lambda: "Ready" in (out := kubectl(kubeconfig, "get", "nodes")) and out, "the node agent's Node"
        )
        kubectl(kubeconfig, "apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        kubectl(kubeconfig, "create", "deployment", "web", "--image=nginx", "--replicas=2")
        wait_until(
            lambda: (
                kubectl(kubeconfig, "get", "deployment", "web", "-o", "jsonpath={.status.availableReplicas}")
                == "2"
            ),
            "a Deployment made available by the controllers and the node agent",
        )
        again = modeldeploy("cluster", "up", "--dir", str(folder))
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = modeldeploy("cluster", "down", "--dir", str(folder))
    assert down.returncode == 0, down.stderr
    assert not (folder / "state.json").exists()
    assert [name for name, pid in pids.items() if alive(pid)] == []


def test_down_without_a_cluster_says_so(tmp_path: Path) -> None:
    result = modeldeploy("cluster", "down", "--dir", str(tmp_path))
    assert result.returncode == 0
    assert "no cluster running" in result.stdout
