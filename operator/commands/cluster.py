"""`modeldeploy cluster up|down|agent`: the real control plane (etcd, kube-apiserver,
kube-controller-manager built from Go modules) and the node agent as background processes, for people
(`make cluster`, `make cluster-down`). `up` returns once the API is ready and leaves
DIR/kubeconfig for kubectl; `down` stops every process `up` started."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".cache/cluster"
STATE_FILE = "state.json"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="start or stop a real local Kubernetes control plane (no kubelet: a node agent plays it)",
        description=(
            "up: build the control plane on first use (10-25 min), start it in the background and write "
            "DIR/kubeconfig; down: stop it. The node agent binds pods and reports them Running and Ready; "
            "Job pods complete with a canned optimizer summary."
        ),
    )
    parser.add_argument("action", choices=("up", "down", "agent"), help="agent: internal, the node agent")
    parser.add_argument("--dir", default=DEFAULT_DIR, type=Path, help=f"state folder (default {DEFAULT_DIR})")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    folder: Path = args.dir.resolve()
    if args.action == "up":
        return _up(folder)
    if args.action == "down":
        return _down(folder)
    return _agent(folder)


def _up(folder: Path) -> int:
    from modeldeploy.cluster.binaries import BinariesMissingError, ensure_binaries  # noqa: PLC0415
    from modeldeploy.cluster.controlplane import start_control_plane  # noqa: PLC0415
    from modeldeploy.cluster.processes import launch  # noqa: PLC0415

    if (folder / STATE_FILE).exists():
        print(f"a cluster is already running from {folder} (modeldeploy cluster down --dir {folder})")
        return 0

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        binaries = ensure_binaries(say)
    except BinariesMissingError as error:
        print(f"cannot start the control plane: {error}", file=sys.stderr)
        return 1
    plane = start_control_plane(binaries, folder, progress=say)
    agent = launch(
        "node-agent",
        [sys.executable, "-m", "modeldeploy", "cluster", "agent", "--dir", str(folder)],
        folder / "node-agent.log",
    )
    pids = {name: process.process.pid for name, process in plane.processes.items()}
    pids["node-agent"] = agent.process.pid
    state = {"server": plane.server, "kubeconfig": str(plane.kubeconfig), "pids": pids}
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    print(f"control plane ready at {plane.server}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _down(folder: Path) -> int:
    state_path = folder / STATE_FILE
    if not state_path.exists():
        print(f"no cluster running from {folder}")
        return 0
    pids: dict[str, int] = json.loads(state_path.read_text())["pids"]
    for name in ("node-agent", "kube-controller-manager", "kube-apiserver", "etcd"):
        pid = pids.get(name)
        if pid is not None:
            _stop_group(pid)
    state_path.unlink()
    print("control plane stopped")
    return 0


def _stop_group(pid: int, timeout_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _agent(folder: Path) -> int:
    from modeldeploy.cluster.node_agent import NodeAgent  # noqa: PLC0415
    from modeldeploy.cluster.rest import Credentials  # noqa: PLC0415

    pki = folder / "pki"
    server = json.loads((folder / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
    agent = NodeAgent(Credentials(server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key"))
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    agent.start()
    while not stopping:
        time.sleep(0.2)
    agent.stop()
    return 0
