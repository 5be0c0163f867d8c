"""`modeldeploy run` as a user starts it: a separate process, a kubeconfig, health and metrics ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest
from kube_emulator import ApiServerEmulator, ClusterControllers, use_kubeconfig

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


async def test_modeldeploy_run_serves_health_and_metrics_and_reconciles(
    emulator: ApiServerEmulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = use_kubeconfig(emulator, tmp_path, monkeypatch)
    health, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    script = pathlib.Path(sys.executable).with_name("modeldeploy")
    command = [str(script), "run", "--all-namespaces", "--standalone", "--log-format", "json"]
    command += ["--health-port", str(health), "--metrics-port", str(metrics)]
    controllers = ClusterControllers(emulator)
    controller_task = asyncio.create_task(controllers.run())
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "KUBECONFIG": str(config)},
        )
    try:

        async def healthy() -> bool:
            return (await http_get(f"http://127.0.0.1:{health}/healthz"))[0] == 200

        await wait_until(healthy, "liveness endpoint", process, log)
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

        async def counted() -> bool:
            status, text = await http_get(f"http://127.0.0.1:{metrics}/metrics")
            return status == 200 and 'modeldeploy_reconciles_total{result="ok"}' in text

        await wait_until(counted, "reconciles in /metrics", process, log)
        assert '"message"' in log.read_text()  # --log-format json
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        controller_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await controller_task
    assert process.returncode == 0, log.read_text()[-4000:]
