"""How fast the operator brings N new ModelDeployments to serving, against the emulated API server.

Runs `modeldeploy run` as its own process (as in a cluster) against kmock's emulator (extended in
tests/kube_emulator.py) in this process, which also plays the Job and Deployment controllers: every
optimization Job completes at once, every Deployment becomes available at once. So the figures are the
operator's own cost: watch → decide → apply → status, for N objects created in one burst.

    .venv/bin/python benchmarks/reconcile.py            # 200 objects
    .venv/bin/python benchmarks/reconcile.py --count 1000

Prints p50/p99 latency from create to the stable Deployment applied and to phase Ready, objects per
second, API requests per object, and the operator process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

import aiohttp
import kmock
from kube_emulator import ApiServerEmulator, ClusterControllers, kubeconfig_text, running_emulator

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"


def manifest(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "spec": {
            "model": {"name": "ocr", "uri": f"s3://models/ocr-{index}.onnx"},
            "storage": {"uri": "s3://artifacts/modeldeploy"},
            "serving": {"replicas": 2},
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit("the operator did not become healthy")


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def watch_first_seen(api: ApiServerEmulator, resource: str, seen: dict[str, float]) -> None:
    """Record when each object's instance first appears (an ADDED event on the emulator's bus)."""
    async for event in api._buses[kmock.resource(resource)]:
        meta = event.get("object", {}).get("metadata", {})
        instance = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
        if event.get("type") == "ADDED" and instance and instance not in seen:
            seen[instance] = time.monotonic()


async def watch_ready(api: ApiServerEmulator, ready: dict[str, float]) -> None:
    async for event in api._buses[kmock.resource(MDEPS)]:
        obj = event.get("object", {})
        name = obj.get("metadata", {}).get("name")
        if name and name not in ready and (obj.get("status") or {}).get("phase") == "Ready":
            ready[name] = time.monotonic()


async def run(count: int, timeout_s: float) -> int:
    async with running_emulator() as api:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="modeldeploy-bench-"))
        config = workdir / "kubeconfig"
        config.write_text(kubeconfig_text(str(api.url)))
        controllers = ClusterControllers(api, tick_s=0.05)
        created: dict[str, float] = {}
        deployed: dict[str, float] = {}
        ready: dict[str, float] = {}
        tasks = [
            asyncio.create_task(controllers.run()),
            asyncio.create_task(watch_first_seen(api, "apps/v1/deployments", deployed)),
            asyncio.create_task(watch_ready(api, ready)),
        ]
        script = pathlib.Path(sys.executable).with_name("modeldeploy")
        health_port = free_port()
        log = (workdir / "operator.log").open("w")
        command = [str(script), "run", "--all-namespaces", "--standalone"]
        command += ["--health-port", str(health_port), "--metrics-port", "0"]
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(config)},
        )
        try:
            await wait_healthy(health_port, process)  # start-up: imports, discovery, first listings
            requests_before = len(api.received)
            start = time.monotonic()
            for index in range(count):
                name = f"model-{index:04d}"
                created[name] = time.monotonic()
                await api.write_as_controller(MDEPS, f"team-{index % 10}", name, manifest(index))
            deadline = time.monotonic() + timeout_s
            while len(ready) < count and time.monotonic() < deadline and process.poll() is None:
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - start
            rss = peak_rss_mib(process.pid) if process.poll() is None else float("nan")
            requests = api.received[requests_before:]
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            if process.poll() is None:
                process.kill()
            for task in tasks:
                task.cancel()
            log.close()

    to_deployment = [deployed[name] - created[name] for name in created if name in deployed]
    to_ready = [ready[name] - created[name] for name in created if name in ready]
    verbs = Counter(str(request.method) for request in requests)
    print(f"objects: {count} created, {len(to_deployment)} deployed, {len(to_ready)} Ready in {elapsed:.1f}s")
    if to_deployment:
        print(
            f"create → stable Deployment applied: p50 {statistics.median(to_deployment) * 1000:.0f} ms,"
            f" p99 {percentile(to_deployment, 0.99) * 1000:.0f} ms"
        )
    if to_ready:
        print(
            f"create → phase Ready:               p50 {statistics.median(to_ready) * 1000:.0f} ms,"
            f" p99 {percentile(to_ready, 0.99) * 1000:.0f} ms"
        )
        print(f"throughput: {len(to_ready) / elapsed:.1f} objects/s")
    print(f"API requests per object: {len(requests) / count:.1f} ({dict(verbs)})")
    print(f"operator peak RSS: {rss:.0f} MiB")
    if len(to_ready) < count:
        print(f"NOT ALL READY; operator log: {workdir / 'operator.log'}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200, help="ModelDeployments to create (default 200)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for all to be Ready")
    args = parser.parse_args()
    return asyncio.run(run(args.count, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
