"""Real Triton Inference Server and Prometheus processes for tests and benchmarks.

Every server gets free ports, a work folder and a log file; readiness is polled against a deadline (never a
fixed sleep), a failure to start raises with the log's tail, and `stop()` always ends the process group it
started. A missing binary raises `PartMissingError`, which tests turn into `realparts.missing(...)`.

Triton comes from PyPI `nvidia-pytriton` (`pytriton/tritonserver/bin/tritonserver`, 2.51 with the python
backend). Its python-backend stub is shipped per Python version and must sit next to the backend library,
the bundled libraries must be on LD_LIBRARY_PATH, and the stub imports numpy from the Python on PATH, so
the server runs with this interpreter's bin folder first on PATH.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modeldeploy.cluster.processes import START_TIMEOUT_S, ServerProcess, free_port, http_ok
from modeldeploy.cluster.processes import launch as _launch
from modeldeploy.sandbox.tritonserver import TritonDistribution, TritonMissingError
from modeldeploy.sandbox.tritonserver import find_triton as find_distribution

TRITON_MODELS = Path(__file__).parent / "triton_models"
TEST_MODEL_CODE = TRITON_MODELS / "echo.py"


class PartMissingError(Exception):
    """A real part (binary, library) is not installed here."""

    def __init__(self, part: str, why: str) -> None:
        super().__init__(f"{part}: {why}")
        self.part = part
        self.why = why


# --- Triton ---------------------------------------------------------------------------------------


def find_triton() -> TritonDistribution:
    """The real tritonserver that nvidia-pytriton ships (the sandbox's finder), as a missing real part."""
    try:
        return find_distribution()
    except TritonMissingError as error:
        raise PartMissingError("tritonserver", str(error)) from error


def build_model_repository(directory: Path, models: Mapping[str, str]) -> Path:
    """Write a Triton model repository serving test model `models[name]` under each `name`."""
    for served_name, test_model in models.items():
        source = TRITON_MODELS / test_model / "config.pbtxt"
        if not source.is_file():
            raise ValueError(f"no test model {test_model!r} in {TRITON_MODELS}")
        (directory / served_name / "1").mkdir(parents=True)
        shutil.copy(source, directory / served_name / "config.pbtxt")
        shutil.copy(TEST_MODEL_CODE, directory / served_name / "1" / "model.py")
    return directory


@dataclass
class TritonServer:
    server: ServerProcess
    http_port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S, models: Sequence[str] = ()) -> None:
        """Server ready; or, given `models`, each of them ready (a server that keeps a failed model runs
        with `--strict-readiness=false` and is never "ready" as a whole)."""
        if not models:
            self.server.wait_until(lambda: http_ok(f"{self.url}/v2/health/ready"), "ready", timeout_s)
        for model in models:
            self.server.wait_until(
                functools.partial(http_ok, f"{self.url}/v2/models/{model}/ready"), f"{model} ready", timeout_s
            )

    def stop(self) -> None:
        self.server.stop()


def start_triton(
    name: str, models: Mapping[str, str], workdir: Path, extra_args: Sequence[str] = ()
) -> TritonServer:
    """Start tritonserver on free ports serving the given test models; call `wait_ready()` next."""
    distribution = find_triton()
    workdir.mkdir(parents=True, exist_ok=True)
    repository = build_model_repository(workdir / "models", models)
    backends = distribution.backend_directory(workdir / "backends")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    env = distribution.environment(dict(os.environ))
    command = [
        str(distribution.server),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        # p99 exists only as a per-server summary quantile, as in production (DESIGN.md).
        "--metrics-config=summary_latencies=true",
        "--allow-gpu-metrics=false",
        "--allow-cpu-metrics=false",
        "--exit-timeout-secs=5",
        # Shared-memory regions are named by prefix: two servers with the default prefix collide.
        f"--backend-config=python,shm-region-prefix-name=mdtest-{uuid.uuid4().hex[:12]}-",
        *extra_args,
    ]
    process = _launch(f"tritonserver {name}", command, workdir / "tritonserver.log", env)
    return TritonServer(process, http_port, metrics_port)


# --- Prometheus -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeTarget:
    address: str
    labels: Mapping[str, str]


@dataclass
class PrometheusServer:
    server: ServerProcess
    port: int
    targets: Sequence[ScrapeTarget]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> list[dict[str, object]]:
        request = urllib.request.Request(
            f"{self.url}/api/v1/query",
            data=urllib.parse.urlencode({"query": promql}).encode(),
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            result: list[dict[str, object]] = json.load(response)["data"]["result"]
            return result

    def targets_up(self) -> bool:
        try:
            up = self.query("up == 1")
        except (OSError, urllib.error.URLError, KeyError, ValueError):
            return False
        return len(up) >= len(self.targets)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self.server.wait_until(lambda: http_ok(f"{self.url}/-/ready"), "ready", timeout_s)
        self.server.wait_until(self.targets_up, "scraping every target", timeout_s)

    def stop(self) -> None:
        self.server.stop()


def find_prometheus() -> Path:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        raise PartMissingError("prometheus", "no `prometheus` binary on PATH (Debian package `prometheus`)")
    return Path(found)


def start_prometheus(
    targets: Sequence[ScrapeTarget], workdir: Path, scrape_interval_s: float = 1.0
) -> PrometheusServer:
    """Start Prometheus scraping each target with its static labels; call `wait_ready()` next."""
    binary = find_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    interval = f"{round(scrape_interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "triton",
                "static_configs": [
                    {"targets": [target.address], "labels": dict(target.labels)} for target in targets
                ],
            }
        ],
    }
    # JSON is YAML: label values with quotes, backslashes or newlines stay data.
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    command = [
        str(binary),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = _launch("prometheus", command, workdir / "prometheus.log")
    return PrometheusServer(process, port, tuple(targets))


# --- Traffic --------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Sends FP32 requests to one Triton model at a fixed rate from a background thread.

    `extra_delay_ms` is read before every request and sent as the request parameter `delay_ms`, which the
    test models add to their latency: a benchmark starts a regression at a known moment this way.
    """

    url: str
    model: str
    rate_per_s: float
    extra_delay_ms: float = 0.0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name=f"traffic {self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        import numpy as np  # noqa: PLC0415  # only the traffic thread needs it
        import tritonclient.http as triton_http  # noqa: PLC0415
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415

        client = triton_http.InferenceServerClient(url=self.url.removeprefix("http://"), network_timeout=30)
        data = np.arange(4, dtype=np.float32)
        period = 1.0 / self.rate_per_s
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                infer_input = triton_http.InferInput("INPUT", list(data.shape), "FP32")
                infer_input.set_data_from_numpy(data)
                parameters = {"delay_ms": self.extra_delay_ms} if self.extra_delay_ms else None
                try:
                    client.infer(self.model, [infer_input], parameters=parameters)
                except InferenceServerException as error:
                    self.failed += 1
                    if len(self.errors) < 5:
                        self.errors.append(str(error))
                self.sent += 1
                # Open-loop pacing: a slow server is not given time back, it just falls behind.
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            client.close()


def stop_all(*servers: TritonServer | PrometheusServer | Traffic | None) -> None:
    """Stop traffic first, then signal every server at once and wait for them together (Triton takes ~2 s)."""
    for traffic in servers:
        if isinstance(traffic, Traffic):
            traffic.stop()
    processes = [server.server for server in servers if isinstance(server, TritonServer | PrometheusServer)]
    for process in processes:
        process.signal_stop()
    for process in processes:
        process.wait_stopped()


@dataclass(frozen=True)
class FleetPod:
    """One Triton process standing in for one pod: the model it serves, its traffic, and the labels the
    PodMonitor would give its series."""

    key: str
    test_model: str  # tests/triton_models/<test_model>
    rate_per_s: float
    labels: Mapping[str, str]


@dataclass
class Fleet:
    """Triton pods under steady traffic, scraped by one Prometheus every second."""

    model: str
    prometheus: PrometheusServer
    tritons: dict[str, TritonServer]  # by FleetPod.key
    traffic: dict[str, Traffic]  # by FleetPod.key

    def logs(self) -> str:
        parts = [f"--- prometheus ---\n{self.prometheus.server.log_tail(2000)}"]
        parts += [f"--- triton {key} ---\n{t.server.log_tail(1500)}" for key, t in self.tritons.items()]
        parts += [
            f"--- traffic {key}: sent {t.sent}, failed {t.failed} {t.errors}"
            for key, t in self.traffic.items()
        ]
        return "\n".join(parts)

    def requests_seen(self, revision: str) -> float:
        """Successful requests of `revision` that Prometheus has scraped so far."""
        # Imported here: the fleet is also used by benchmarks that run without the package's extras.
        from modeldeploy.analysis import format_selector  # noqa: PLC0415
        from modeldeploy.prometheus import query_number  # noqa: PLC0415

        selector = format_selector(self.model, {"modeldeploy_revision": revision})
        value = query_number(self.prometheus.url, f"sum(nv_inference_request_success{selector})", timeout_s=2)
        return value or 0.0


@contextlib.contextmanager
def running_fleet(
    model: str, pods: Sequence[FleetPod], workdir: Path, *, min_requests: float, revisions: Sequence[str]
) -> Iterator[Fleet]:
    """Start the pods and Prometheus, send traffic, and yield once Prometheus has seen at least
    `min_requests` of each of `revisions`; everything is stopped afterwards. Raises PartMissingError when
    tritonserver or prometheus is not installed."""
    find_triton()
    find_prometheus()
    tritons: dict[str, TritonServer] = {}
    traffic: dict[str, Traffic] = {}
    prometheus: PrometheusServer | None = None
    try:
        for pod in pods:
            tritons[pod.key] = start_triton(pod.key, {model: pod.test_model}, workdir / pod.key)
        for triton in tritons.values():
            triton.wait_ready()
        targets = [ScrapeTarget(tritons[pod.key].metrics_address, dict(pod.labels)) for pod in pods]
        prometheus = start_prometheus(targets, workdir / "prometheus", scrape_interval_s=1.0)
        prometheus.wait_ready()
        for pod in pods:
            traffic[pod.key] = Traffic(tritons[pod.key].url, model, pod.rate_per_s).start()
        fleet = Fleet(model, prometheus, tritons, traffic)
        started = time.monotonic()
        while min(fleet.requests_seen(revision) for revision in revisions) < min_requests:
            if time.monotonic() - started > 60:
                raise RuntimeError(f"traffic did not reach Prometheus in 60 s:\n{fleet.logs()}")
            time.sleep(0.5)
        yield fleet
    finally:
        stop_all(*traffic.values(), prometheus, *tritons.values())
