"""Secrets never reach status, Events or logs: a full lifecycle with planted credentials, then a grep.

Planted: the password of the Prometheus the canary analysis must log in to (a Secret, basicAuth, behind
TLS with a private CA: a real Prometheus, `secured_prometheus`), a presigned model URL's signature, and a
Job whose error quotes a URL with user info. The lifecycle: create → optimize → Ready → a new revision as
a canary → analyses against the secured Prometheus → rollback → a revision whose Job fails quoting the
credentials → delete. Every status the operator wrote, every Event and every log line (DEBUG included)
is then searched for each planted value, as text and base64.

The real operator (kopf, handlers, reconciler, probes) runs against the real control plane (one namespace
of the session's cluster; the node agent completes or fails the optimization Jobs). The only stand-in is
the canary's Triton smoke check (no Triton runs in the pods), which always answers READY.

The API server's audit log is Metadata level (no bodies), so the statuses come from a watch on the
ModelDeployment, started before it is created and running until it is deleted: every version the API
server stored, which includes every status the operator wrote.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import logging
import pathlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cluster import Cluster
from operator_harness import ManualClock, eventually, operator_in_this_loop
from operator_world import MDEPS, World, collection_path
from secured_prometheus import PASSWORD, USER, SecuredPrometheus, secured_prometheus
from test_operator_process import free_port, operator_process, wait_until

from modeldeploy.cluster.rest import ApiError, RestClient
from modeldeploy.credentials import install_log_redaction
from modeldeploy.defaults import PrometheusAuthRef, SpecDefaults
from modeldeploy.kube import Backoff, Kube
from modeldeploy.metrics import OperatorMetrics
from modeldeploy.probes import Track, TritonPrometheusProbes
from modeldeploy.reconciler import Runtime
from modeldeploy.revision import compute_revision
from modeldeploy.rollout import SmokeOutcome
from modeldeploy.spec import parse_spec

pytestmark = pytest.mark.realpart("prometheus")

NAME = "ocr"
SIGNATURE = "PLANTEDsig0123456789abcdef"
JOB_PASSWORD = "PLANTED-job-pw-42"
PLANTED = (PASSWORD, SIGNATURE, JOB_PASSWORD)


def _variants(value: str) -> list[str]:
    return [value, base64.b64encode(value.encode()).decode()]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    yield from secured_prometheus(tmp_path_factory)


@pytest.fixture
def world(control_plane: Cluster, cluster_namespace: str, real_kubeconfig: pathlib.Path) -> World:
    return World(control_plane, cluster_namespace)


@pytest.fixture
def release_namespace(control_plane: Cluster) -> Iterator[str]:
    """The chart's release namespace (where the chart-wide Secret lives): not the watched one."""
    name = control_plane.create_namespace("modeldeploy-system")
    yield name
    control_plane.delete_namespace(name)


class SmokeReadyProbes(TritonPrometheusProbes):
    """The real probes, except the Triton smoke check (no Triton pod here): always READY."""

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        return SmokeOutcome(ok=True, reason="READY")


class StatusHistory:
    """Every version of one ModelDeployment the API server stored, from a watch (in a thread) that starts
    before the object exists and ends with its deletion. A watch that breaks off (410 Gone, an error event)
    is recorded in `errors`: versions may be missing then, and the test says so."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.client = RestClient(cluster.plane.credentials)
        self.path = collection_path(MDEPS, namespace)
        self.selector = {"fieldSelector": f"metadata.name={name}"}
        self.objects: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.deleted = threading.Event()
        self._stop = threading.Event()
        self._resource_version = self._list_version(cluster)
        self._thread = threading.Thread(target=self._follow, name="status-history", daemon=True)

    def _list_version(self, cluster: Cluster) -> str:
        """The collection's resourceVersion. Just after its CRD is established the API server answers 429
        ("storage is (re)initializing") until its watch cache is ready, and asks to retry."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return str(cluster.request("GET", self.path)["metadata"]["resourceVersion"])
            except ApiError as error:
                if error.status != 429 or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    @property
    def statuses(self) -> list[dict[str, Any]]:
        return [obj["status"] for obj in self.objects if obj.get("status")]

    def _follow(self) -> None:
        while not self._stop.is_set() and not self.deleted.is_set():
            try:
                for event in self.client.watch(
                    self.path, self._resource_version, timeout_s=5, params=self.selector
                ):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        self.errors.append(json.dumps(obj))
                        return
                    self._resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    self.objects.append(obj)
                    if event["type"] == "DELETED":
                        self.deleted.set()
                        return
            except ApiError as error:
                if error.status == 429 and not self._stop.is_set():
                    time.sleep(1)  # the API server's watch cache is not ready yet: it asks to retry
                    continue
                self.errors.append(repr(error))
                return
            except OSError as error:
                if not self._stop.is_set():
                    self.errors.append(repr(error))
                return

    def __enter__(self) -> StatusHistory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self.client.close()


def _manifest(prometheus_url: str | None, uri: str) -> dict[str, Any]:
    """With a URL: the object names its Prometheus and its own Secret; None: the chart-wide ones."""
    monitoring = (
        {
            "prometheusUrl": prometheus_url,
            "prometheusAuth": {"secretName": "prometheus-client", "type": "basicAuth"},
        }
        if prometheus_url is not None
        else {}
    )
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"name": "ocr", "uri": uri},
            "storage": {"uri": "s3://artifacts/modeldeploy"},
            "rollout": {
                "steps": [50, 100],
                "interval": "10s",
                "progressDeadline": "2m",
                "analysis": {"maxConsecutiveErrors": 2},
            },
            "monitoring": monitoring,
        },
    }


def _signed(name: str) -> str:
    return f"https://models.example/{name}.onnx?X-Amz-Expires=600&X-Amz-Signature={SIGNATURE}"


def _create_secret(cluster: Cluster, namespace: str, secured: SecuredPrometheus) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "prometheus-client",
            "labels": {"modeldeploy.io/prometheus-auth": "true"},
        },
        "data": {
            key: base64.b64encode(value.encode()).decode()
            for key, value in {"username": USER, "password": PASSWORD, "ca.crt": secured.ca_pem}.items()
        },
    }
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)


async def _lifecycle(
    world: World, secured: SecuredPrometheus, runtime: Runtime, clock: ManualClock, chart_wide: bool
) -> None:
    body = _manifest(None if chart_wide else secured.url, _signed("ocr-v1"))
    world.create(copy.deepcopy(body))

    def status_json() -> str:
        return json.dumps(world.status(), indent=1, default=str)

    await eventually(lambda: world.phase() == "Ready", "Ready", timeout=30, context=status_json)
    # A new revision: a canary whose analyses log in to the secured Prometheus (no Triton series there:
    # each is an `error` verdict), rolled back after maxConsecutiveErrors (2).
    world.change_spec({"model": {"uri": _signed("ocr-v2")}})
    await eventually(
        lambda: world.status().get("canaryStep") == 0, "canary at step 0", timeout=30, context=status_json
    )

    def measured(errors: int) -> bool:
        return world.phase() == "Degraded" or (world.status().get("analysis") or {}).get("errors") == errors

    for errors in (1, 2):
        clock.advance(timedelta(seconds=11))
        runtime.poke((world.namespace, NAME))  # the operator's own timer would, after 11 s of real time
        await eventually(
            functools.partial(measured, errors), f"analysis error {errors}", timeout=30, context=status_json
        )
    await eventually(
        lambda: world.phase() == "Degraded", "rollback after analysis errors", timeout=30, context=status_json
    )
    status = world.status()
    assert status["lastRollback"]["cause"] == "AnalysisError", status
    analysis = status["analysis"]
    assert analysis["reason"].startswith("no data for"), analysis  # it logged in and got answers
    # A revision whose Job fails with a message quoting credentials (as a library's error might).
    third = copy.deepcopy(body)
    third["spec"]["model"]["uri"] = _signed("ocr-v3")
    revision = compute_revision(parse_spec(third["spec"]))
    leaked = f"https://loader:{JOB_PASSWORD}@models.example/ocr-v3.onnx?X-Amz-Signature={SIGNATURE}"
    world.fail_optimization(revision, json.dumps({"v": 1, "error": f"download failed: 403 for {leaked}"}))
    world.change_spec({"model": {"uri": _signed("ocr-v3")}})
    await eventually(
        lambda: (world.status().get("optimization") or {}).get("state") == "Failed",
        "the failed Job",
        timeout=30,
        context=status_json,
    )
    error = world.status()["optimization"]["error"]
    assert "https://[REDACTED]@models.example/ocr-v3.onnx?X-Amz-Signature=[REDACTED]" in error, error
    world.delete(MDEPS, NAME)
    await eventually(lambda: world.stored(MDEPS, NAME) is None, "deleted", timeout=30)


def _events(cluster: Cluster, namespaces: list[str]) -> list[dict[str, Any]]:
    """Every Event in `namespaces`, those being deleted included."""
    found: list[dict[str, Any]] = []
    for namespace in namespaces:
        found += cluster.request("GET", f"/api/v1/namespaces/{namespace}/events").get("items", [])
    return found


@pytest.mark.parametrize("chart_wide", [False, True], ids=["own-secret", "chart-wide-secret"])
async def test_no_planted_secret_in_any_status_event_or_log_line(
    chart_wide: bool,
    world: World,
    release_namespace: str,
    secured: SecuredPrometheus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # `modeldeploy run --verbose`: kopf logs whole objects
    install_log_redaction()  # what `modeldeploy run` installs on its log handlers (caplog's among them)
    secret_namespace = release_namespace if chart_wide else world.namespace
    _create_secret(world.cluster, secret_namespace, secured)
    history = StatusHistory(world.cluster, world.namespace, NAME)
    clock = ManualClock()
    kube = await Kube.connect(
        str(world.cluster.kubeconfig), backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1)
    )
    runtime = Runtime(
        kube=kube,
        probes=SmokeReadyProbes(kube, timeout_s=5),
        metrics=OperatorMetrics(),
        clock=clock,
        retry_s=0.2,
        # The chart's monitoring.prometheusUrl and prometheusAuth, as `modeldeploy run` flags give them.
        defaults=SpecDefaults(
            prometheus_url=secured.url,
            prometheus_auth=PrometheusAuthRef(release_namespace, "prometheus-client", "basicAuth"),
        )
        if chart_wide
        else SpecDefaults(),
    )
    with history:
        async with operator_in_this_loop(runtime, namespace=world.namespace):
            await _lifecycle(world, secured, runtime, clock, chart_wide)
        await eventually(history.deleted.is_set, "the watch saw the deletion", timeout=15)
    assert history.errors == [], f"the status watch broke off, versions may be missing: {history.errors}"

    statuses = [json.dumps(status) for status in history.statuses]
    events = [json.dumps(event) for event in _events(world.cluster, [world.namespace, release_namespace])]
    logs = [record.getMessage() for record in caplog.records]
    assert len(set(statuses)) >= 5 and len(events) >= 3 and len(logs) >= 10, (
        len(set(statuses)),
        len(events),
        len(logs),
    )
    # The watch did see the operator's work: the rollback and the redacted Job error are among the versions.
    assert any('"lastRollback"' in text for text in statuses)
    assert any("[REDACTED]@models.example" in text for text in statuses)
    for planted in PLANTED:
        for variant in _variants(planted):
            for where, texts in (("status", statuses), ("Event", events), ("log", logs)):
                found = [text for text in texts if variant in text]
                assert found == [], f"planted secret in a {where}: {found[0][:300]}"


async def test_modeldeploy_run_verbose_logs_no_url_credentials(world: World, tmp_path: pathlib.Path) -> None:
    """The process as users start it, at --verbose (kopf's debug lines): the log file is grepped. kopf logs
    whole objects only for create/update/delete handlers, which the operator does not have, so the spec
    with its signed URL reaches no log line at all (the redaction filter is checked in the test above)."""
    log = tmp_path / "operator.log"
    args = ["--namespace", world.namespace, "--standalone", "--verbose"]
    args += ["--health-port", str(free_port()), "--metrics-port", "0"]
    async with operator_process(args, log, world.cluster.kubeconfig) as process:
        world.create(_manifest(None, _signed("ocr-v1")))

        async def ready() -> bool:
            return world.phase() == "Ready"

        await wait_until(ready, "phase Ready", process, log)
        world.delete(MDEPS, NAME)  # while the operator runs, which releases its finalizer

        async def deleted() -> bool:
            return world.stored(MDEPS, NAME) is None

        await wait_until(deleted, "the ModelDeployment deleted", process, log)
    text = log.read_text()
    assert "Daemon 'reconcile_loop' is invoked." in text  # --verbose: kopf's debug lines on the object
    for variant in _variants(SIGNATURE):
        assert variant not in text
