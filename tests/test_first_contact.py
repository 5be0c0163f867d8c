"""First contact, as a new user makes it, on the real control plane (kube-apiserver, etcd,
kube-controller-manager; the node agent plays the kubelet).

`helm install` (the real binary) with only `--set` flags for the image registry and CPU mode installs
the CRDs, RBAC, ServiceAccount, peering object and the operator Deployment. The operator's container cannot
run here, so the test runs what it would run: `modeldeploy run` with the args and environment the chart's
Deployment renders, authenticated as the chart's ServiceAccount through a TokenRequest (so the chart's RBAC
is what it gets). `examples/cpu-kind.yaml` (without its own `accelerator`: the chart's CPU mode must do)
goes to Ready with no GPU asked anywhere and the images from the chosen registry. Then the uninstall of
docs/install.md, step by step, must leave nothing stuck: no finalizer held, every child collected, the
release's objects gone, and the CRD deleted for good.

A cluster of its own (not the session's): the CRD is installed by helm and deleted at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import toolbin
import yaml
from cluster import Cluster, running_cluster, wait_until

from modeldeploy import __version__

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm" / "modeldeploy"
EXAMPLE = REPO_ROOT / "examples" / "cpu-kind.yaml"
RELEASE, RELEASE_NS = "modeldeploy", "modeldeploy-system"
REGISTRY = "registry.example.com/mirror"
CRD = "modeldeployments.modeldeploy.io"


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path / "controlplane", install_crd=False) as cluster:
        yield cluster


def helm(cluster: Cluster, *args: str) -> str:
    result = subprocess.run(
        [str(toolbin.helm_path()), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}{result.stdout}"
    return result.stdout


def json_of(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_account_kubeconfig(cluster: Cluster, account: str, path: Path) -> Path:
    """A kubeconfig holding a bound token of the ServiceAccount (TokenRequest), as a pod would get."""
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = cluster.request(
        "POST", f"/api/v1/namespaces/{RELEASE_NS}/serviceaccounts/{account}/token", request
    )
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def operator_as_the_chart_runs_it(cluster: Cluster, workdir: Path) -> Iterator[subprocess.Popen[str]]:
    """`modeldeploy run` with the container args and env of the chart's Deployment, in the pod the agent
    started for it (POD_ID), as the Deployment's ServiceAccount."""
    deployment = json_of(cluster, "-n", RELEASE_NS, "get", "deployment", RELEASE)
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["image"] == f"{REGISTRY}/operator:{__version__}"
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    pods = wait_until(
        lambda: json_of(cluster, "-n", RELEASE_NS, "get", "pods", "-l", selector)["items"],
        "the operator's pod",
    )
    fields = {"metadata.name": pods[0]["metadata"]["name"], "metadata.namespace": RELEASE_NS}
    env = {}
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("fieldRef")
        env[item["name"]] = fields[ref["fieldPath"]] if ref else item["value"]
    config = service_account_kubeconfig(cluster, pod_spec["serviceAccountName"], workdir / "sa.kubeconfig")
    log = workdir / "operator.log"
    script = Path(sys.executable).with_name("modeldeploy")  # the image's ENTRYPOINT
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(script), *container["args"]],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
            env={**os.environ, **env, "KUBECONFIG": str(config)},
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def example_without_accelerator(namespace: str) -> dict[str, Any]:
    example: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    example["metadata"]["namespace"] = namespace
    example["spec"].pop("accelerator")
    return example


def test_helm_install_with_registry_and_cpu_flags_reaches_ready_and_uninstalls_clean(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = own_cluster
    health, metrics = free_port(), free_port()  # the operator runs on this host, not in a pod
    helm(
        cluster, "install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
        "--set", f"imageRegistry={REGISTRY}", "--set", "accelerator=cpu",
        "--set", f"health.port={health}", "--set", f"metrics.port={metrics}",
    )  # fmt: skip
    namespace = "demo"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("-n", namespace, "apply", "-f", str(REPO_ROOT / "e2e" / "manifests" / "storage.yaml"))
    log = tmp_path / "operator.log"

    def context() -> str:
        status = cluster.kubectl("-n", namespace, "get", "mdep", "-o", "yaml", check=False).stdout
        return f"status:\n{status[-3000:]}\noperator log:\n{log.read_text()[-4000:] if log.exists() else ''}"

    with operator_as_the_chart_runs_it(cluster, tmp_path) as operator:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(example_without_accelerator(namespace)))

        def ready() -> bool:
            assert operator.poll() is None, f"modeldeploy run exited\n{context()}"
            mdep = json_of(cluster, "-n", namespace, "get", "mdep", "cnn-cpu")
            return bool(mdep.get("status", {}).get("phase") == "Ready")

        try:
            wait_until(ready, "the ModelDeployment to be Ready", timeout_s=120)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{context()}") from None
        jobs = json_of(cluster, "-n", namespace, "get", "jobs")["items"]
        deployments = json_of(cluster, "-n", namespace, "get", "deployments")["items"]
        assert jobs and deployments
        for pod in [job["spec"]["template"]["spec"] for job in jobs] + [
            d["spec"]["template"]["spec"] for d in deployments
        ]:
            for container in pod["containers"]:
                resources = container.get("resources") or {}
                assert "nvidia.com/gpu" not in json.dumps(resources), container["name"]
            assert not pod.get("tolerations")
        assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == (
            f"{REGISTRY}/optimizer:{__version__}"
        )

        # docs/install.md, Uninstall, step 1: delete the ModelDeployments while the operator runs.
        # Foreground: the command returns once the garbage collector removed every child. In background
        # the ModelDeployments go at once, and if the collector had not yet caught up with them (it
        # learns a new CRD's kind at its next discovery sync) the CRD's deletion in step 3 leaves their
        # children with an owner kind nobody serves any more: never collected (seen here, every run).
        cluster.kubectl(
            "delete", "modeldeployments", "--all", "--all-namespaces", "--cascade=foreground", "--wait",
            "--timeout=90s",
        )  # fmt: skip
        assert json_of(cluster, "get", "mdep", "--all-namespaces")["items"] == []
        # Step 2: helm uninstall (the operator's pod goes with its Deployment: the process ends here).
        helm(cluster, "uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout=60s")
    # Step 3: the CRD; nothing may hold it Terminating.
    cluster.kubectl("delete", "crd", CRD, "--wait", "--timeout=60s")
    assert cluster.kubectl("get", "crd", CRD, check=False).returncode != 0

    # The children went with their owner (garbage collector), the release's objects with the release.
    def children() -> list[tuple[str, str]]:
        items = json_of(cluster, "-n", namespace, "get", "deployments,replicasets,jobs,services,pods")[
            "items"
        ]
        return [(o["kind"], o["metadata"]["name"]) for o in items]

    try:
        wait_until(lambda: not children(), "the pods of the children to go", timeout_s=60)
    except AssertionError as error:
        raise AssertionError(f"{error}: left {children()}") from None
    leftovers = json_of(cluster, "-n", RELEASE_NS, "get", "deployments,serviceaccounts,roles,rolebindings")
    assert [o["metadata"]["name"] for o in leftovers["items"] if o["metadata"]["name"] != "default"] == []
    cluster_scoped = json_of(
        cluster, "get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/part-of=modeldeploy"
    )
    assert cluster_scoped["items"] == []
