"""Local server processes (control-plane binaries, Triton, Prometheus): free ports, a log file each,
readiness polled against a deadline (never a fixed sleep), and a stop that ends the whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 90.0


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now and not handed out before by this process: the kernel may offer a port again as soon
    as the probing socket closes, and two servers started together would then clash."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class ServerProcess:
    """A server this module started; it owns a process group so its children die with it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"(no log: {error})"

    def wait_until(self, check: Callable[[], bool], what: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before {what}:\n{self.log_tail()}"
                )
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: not {what} after {timeout_s:.0f}s:\n{self.log_tail()}")

    def signal_stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        # The process group is ours (start_new_session): it also holds the server's own children.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        self.signal_stop()
        self.wait_stopped()


def launch(
    name: str, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> ServerProcess:
    """Start `command` in its own session with its output in `log_path`, the log's folder as cwd (from the
    repository root the folder `operator/` would shadow the standard library's `operator`)."""
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            cwd=log_path.parent,
        )
    finally:
        log.close()
    return ServerProcess(name, process, log_path)
