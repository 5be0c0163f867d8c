"""`modeldeploy run` as a user starts it: a separate process, a kubeconfig, health and metrics ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kube_emulator import ApiServerEmulator, ClusterControllers, use_kubeconfig

from modeldeploy.commands.run import needs_scanning

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def http_get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as rsp,
    ):
        return rsp.status, await rsp.text()


async def wait_until(check: object, what: str, process: subprocess.Popen[str], log: pathlib.Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"modeldeploy run exited with {process.returncode}:\n{log.read_text()[-4000:]}"
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            if await check():  # type: ignore[operator]
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; operator log:\n{log.read_text()[-4000:]}")


@contextlib.asynccontextmanager
async def operator_process(
    emulator: ApiServerEmulator,
    args: list[str],
    log: pathlib.Path,
    config: pathlib.Path,
    *,
    pod_id: str = "operator-0",
    controllers: bool = True,
) -> AsyncIterator[subprocess.Popen[str]]:
    """`modeldeploy run ARGS` in pod POD_ID with its output in `log`, while the test plays the cluster's
    controllers (unless another process's block already does); stopped with SIGTERM, which must exit 0."""
    script = pathlib.Path(sys.executable).with_name("modeldeploy")
    controller_task = asyncio.create_task(ClusterControllers(emulator).run()) if controllers else None
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(script), "run", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "KUBECONFIG": str(config), "POD_ID": pod_id},
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            # Off the event loop: the emulator serves on it, and a peered operator still writes as it exits.
            await asyncio.to_thread(process.wait, 20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if controller_task is not None:
            controller_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controller_task
    assert process.returncode == 0, log.read_text()[-4000:]


async def create_and_wait_ready(
    emulator: ApiServerEmulator, process: subprocess.Popen[str], log: pathlib.Path
) -> None:
    await emulator.write_as_controller(
        MDEPS,
        "ml",
        "ocr",
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "spec": {
                "model": {"name": "ocr", "uri": "s3://models/ocr.onnx"},
                "storage": {"uri": "s3://artifacts/modeldeploy"},
            },
        },
    )

    async def ready() -> bool:
        stored = emulator.stored(MDEPS, "ml", "ocr") or {}
        return (stored.get("status") or {}).get("phase") == "Ready"

    await wait_until(ready, "phase Ready", process, log)


async def test_modeldeploy_run_serves_health_and_metrics_and_reconciles(
    emulator: ApiServerEmulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = use_kubeconfig(emulator, tmp_path, monkeypatch)
    health, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    args = ["--all-namespaces", "--standalone", "--log-format", "json"]
    args += ["--health-port", str(health), "--metrics-port", str(metrics)]
    async with operator_process(emulator, args, log, config) as process:

        async def healthy() -> bool:
            return (await http_get(f"http://127.0.0.1:{health}/healthz"))[0] == 200

        await wait_until(healthy, "liveness endpoint", process, log)
        await create_and_wait_ready(emulator, process, log)

        async def counted() -> bool:
            status, text = await http_get(f"http://127.0.0.1:{metrics}/metrics")
            return status == 200 and 'modeldeploy_reconciles_total{result="ok"}' in text

        await wait_until(counted, "reconciles in /metrics", process, log)
        assert '"message"' in log.read_text()  # --log-format json


# What a namespaced install (the chart's `watch.scope: namespaces`, a Role per namespace) may not do.
CLUSTER_WIDE_READS = [r"^/api/v1/namespaces$", r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions$"]


async def test_namespaced_run_needs_no_cluster_wide_rights_and_logs_no_warning(
    emulator: ApiServerEmulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `--namespace`, the operator neither lists/watches namespaces nor watches CRDs (kopf's scanning),
    so the Role-only RBAC of a namespaced install refuses nothing and the log carries no warning about it."""
    config = use_kubeconfig(emulator, tmp_path, monkeypatch)
    for path in CLUSTER_WIDE_READS:
        emulator.fail("GET", path, 403, times=1_000_000)  # forbidden, as without a ClusterRole
    log = tmp_path / "operator.log"
    args = ["--namespace", "ml", "--standalone", "--log-format", "json"]
    args += ["--health-port", "0", "--metrics-port", "0"]
    async with operator_process(emulator, args, log, config) as process:
        await create_and_wait_ready(emulator, process, log)
    assert emulator.served_faults == []
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert records, "no log records"
    noisy = [r["message"] for r in records if r.get("severity") not in {"debug", "info"}]
    assert noisy == []


PEERINGS = "kopf.dev/v1/clusterkopfpeerings"


async def test_peered_replicas_choose_distinct_priorities_the_first_started_highest(
    emulator: ApiServerEmulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf pauses every replica when two peers share a priority. Without --priority each `modeldeploy run`
    takes one from its start time: distinct, highest for the replica that started first, which keeps working
    while a later one stands by (what the chart's replicas rely on; no shell wrapper computes it)."""
    config = use_kubeconfig(emulator, tmp_path, monkeypatch)
    emulator.declare(PEERINGS, "ClusterKopfPeering", namespaced=False)
    await emulator.write_as_controller(
        PEERINGS, None, "modeldeploy", {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
    )
    args = ["--all-namespaces", "--peering", "modeldeploy", "--log-format", "json"]
    args += ["--health-port", "0", "--metrics-port", "0"]

    def peers() -> dict[str, Any]:
        return dict((emulator.stored(PEERINGS, None, "modeldeploy") or {}).get("status") or {})

    first_log, later_log = tmp_path / "first.log", tmp_path / "later.log"
    async with operator_process(emulator, args, first_log, config, pod_id="first") as first:

        async def first_announced() -> bool:
            return "first" in peers()

        await wait_until(first_announced, "the first replica in the peering object", first, first_log)
        async with operator_process(
            emulator, args, later_log, config, pod_id="later", controllers=False
        ) as later:

            async def later_announced() -> bool:
                return "later" in peers()

            await wait_until(later_announced, "the later replica in the peering object", later, later_log)
            announced = peers()
            assert announced["first"]["priority"] > announced["later"]["priority"] > 0
            await create_and_wait_ready(emulator, first, first_log)  # the first one works
            assert "Pausing operations" not in first_log.read_text()
            assert "Pausing all operators" not in first_log.read_text()
            assert "Resuming operations" not in later_log.read_text()  # the later one stands by


@pytest.mark.parametrize(
    ("namespaces", "scanning"),
    [
        ([], True),  # --all-namespaces: keeps following CRD changes (the ClusterRole allows it)
        (["ml"], False),
        (["ml-prod", "ml-staging"], False),
        (["ml-*"], True),  # kopf expands patterns from the namespace listing
        (["ml", "!kube-system"], True),
    ],
)
def test_scanning_is_off_only_for_exact_namespaces(namespaces: list[str], scanning: bool) -> None:
    assert needs_scanning(namespaces) is scanning
