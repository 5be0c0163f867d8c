"""Secrets never reach status, Events or logs: a full lifecycle with planted credentials, then a grep.

Planted: the password of the Prometheus the canary analysis must log in to (a Secret, basicAuth, behind
TLS with a private CA: a real Prometheus, `secured_prometheus`), a presigned model URL's signature, and a
Job whose error quotes a URL with user info. The lifecycle: create → optimize → Ready → a new revision as
a canary → analyses against the secured Prometheus → rollback → a revision whose Job fails quoting the
credentials → delete. Every status the operator wrote, every Event and every log line (DEBUG included)
is then searched for each planted value, as text and base64.

The real operator (kopf, handlers, reconciler, probes) runs against the emulated API server; the only
stand-in is the canary's Triton smoke check (no Triton pod exists here), which always answers READY.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import pathlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kube_emulator import ApiServerEmulator, ClusterControllers
from operator_harness import eventually, operator_in_this_loop
from secured_prometheus import PASSWORD, USER, SecuredPrometheus, secured_prometheus

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

MDEPS = "modeldeploy.io/v1alpha1/modeldeployments"
NS = "ml"
CHART_NS = "modeldeploy-system"  # the chart-wide Secret lives in the release namespace
SIGNATURE = "PLANTEDsig0123456789abcdef"
JOB_PASSWORD = "PLANTED-job-pw-42"
PLANTED = (PASSWORD, SIGNATURE, JOB_PASSWORD)


def _variants(value: str) -> list[str]:
    return [value, base64.b64encode(value.encode()).decode()]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    yield from secured_prometheus(tmp_path_factory)


class SmokeReadyProbes(TritonPrometheusProbes):
    """The real probes, except the Triton smoke check (no Triton pod here): always READY."""

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        return SmokeOutcome(ok=True, reason="READY")


@contextlib.asynccontextmanager
async def cluster(emulator: ApiServerEmulator) -> AsyncIterator[ClusterControllers]:
    controllers = ClusterControllers(emulator)
    task = asyncio.create_task(controllers.run())
    try:
        yield controllers
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
        "metadata": {"name": "ocr"},
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


async def _lifecycle(
    emulator: ApiServerEmulator,
    controllers: ClusterControllers,
    secured: SecuredPrometheus,
    runtime: Runtime,
    clock: list[datetime],
) -> None:
    chart_wide = runtime.defaults.prometheus_auth is not None
    secret_namespace = CHART_NS if chart_wide else NS
    secret = {
        "metadata": {
            "name": "prometheus-client",
            "namespace": secret_namespace,
            "labels": {"modeldeploy.io/prometheus-auth": "true"},
        },
        "data": {
            key: base64.b64encode(value.encode()).decode()
            for key, value in {"username": USER, "password": PASSWORD, "ca.crt": secured.ca_pem}.items()
        },
    }
    await emulator.write_as_controller("v1/secrets", secret_namespace, "prometheus-client", secret)
    body = _manifest(None if chart_wide else secured.url, _signed("ocr-v1"))
    await emulator.write_as_controller(MDEPS, NS, "ocr", copy.deepcopy(body))

    def status() -> dict[str, Any]:
        return dict((emulator.stored(MDEPS, NS, "ocr") or {}).get("status") or {})

    await eventually(lambda: status().get("phase") == "Ready", "Ready", timeout=30)
    # A new revision: a canary whose analyses log in to the secured Prometheus (no Triton series there:
    # each is an `error` verdict), rolled back after maxConsecutiveErrors.
    await emulator.write_as_controller(MDEPS, NS, "ocr", {"spec": {"model": {"uri": _signed("ocr-v2")}}})
    await eventually(lambda: status().get("canaryStep") == 0, "canary at step 0", timeout=30)
    for _ in range(6):
        clock[0] += timedelta(seconds=11)
        runtime.poke((NS, "ocr"))  # the operator's own timer would, after 11 s of real time
        await asyncio.sleep(0.5)
        if status().get("phase") == "Degraded":
            break
    await eventually(
        lambda: status().get("phase") == "Degraded",
        "rollback after analysis errors",
        timeout=30,
        context=lambda: json.dumps(status(), indent=1, default=str),
    )
    analysis = status()["analysis"]
    assert analysis["reason"].startswith("no data for"), analysis  # it logged in and got answers
    # A revision whose Job fails with a message quoting credentials (as a library's error might).
    third = copy.deepcopy(body)
    third["spec"]["model"]["uri"] = _signed("ocr-v3")
    revision = compute_revision(parse_spec(third["spec"]))
    leaked = f"https://loader:{JOB_PASSWORD}@models.example/ocr-v3.onnx?X-Amz-Signature={SIGNATURE}"
    controllers.failing_revisions[revision] = json.dumps(
        {"v": 1, "error": f"download failed: 403 for {leaked}"}
    )
    await emulator.write_as_controller(MDEPS, NS, "ocr", {"spec": {"model": {"uri": _signed("ocr-v3")}}})
    await eventually(
        lambda: (status().get("optimization") or {}).get("state") == "Failed", "the failed Job", timeout=30
    )
    error = status()["optimization"]["error"]
    assert "https://[REDACTED]@models.example/ocr-v3.onnx?X-Amz-Signature=[REDACTED]" in error, error
    await emulator.delete_as_user(MDEPS, NS, "ocr")
    await eventually(lambda: emulator.stored(MDEPS, NS, "ocr") is None, "deleted", timeout=30)


@pytest.mark.parametrize("chart_wide", [False, True], ids=["own-secret", "chart-wide-secret"])
async def test_no_planted_secret_in_any_status_event_or_log_line(
    chart_wide: bool,
    emulator: ApiServerEmulator,
    kubeconfig: pathlib.Path,
    secured: SecuredPrometheus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # `modeldeploy run --verbose`: kopf logs whole objects
    install_log_redaction()  # what `modeldeploy run` installs on its log handlers (caplog's among them)
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    kube = await Kube.connect(
        str(kubeconfig), backoff=Backoff(attempts=8, first_delay_s=0.01, max_delay_s=0.1)
    )
    runtime = Runtime(
        kube=kube,
        probes=SmokeReadyProbes(kube, timeout_s=5),
        metrics=OperatorMetrics(),
        clock=lambda: clock[0],
        retry_s=0.2,
        # The chart's monitoring.prometheusUrl and prometheusAuth, as `modeldeploy run` flags give them.
        defaults=SpecDefaults(
            prometheus_url=secured.url,
            prometheus_auth=PrometheusAuthRef(CHART_NS, "prometheus-client", "basicAuth"),
        )
        if chart_wide
        else SpecDefaults(),
    )
    async with cluster(emulator) as controllers, operator_in_this_loop(runtime):
        await _lifecycle(emulator, controllers, secured, runtime, clock)

    statuses = [
        json.dumps(request.data.get("status"))
        for request in emulator.received
        if request.method == "PATCH" and isinstance(request.data, dict) and "status" in request.data
    ]
    events = [json.dumps(event) for event in emulator.live("v1/events").values()]
    logs = [record.getMessage() for record in caplog.records]
    assert len(statuses) >= 5 and len(events) >= 3 and len(logs) >= 10, (
        len(statuses),
        len(events),
        len(logs),
    )
    for planted in PLANTED:
        for variant in _variants(planted):
            for where, texts in (("status", statuses), ("Event", events), ("log", logs)):
                found = [text for text in texts if variant in text]
                assert found == [], f"planted secret in a {where}: {found[0][:300]}"


async def test_modeldeploy_run_verbose_logs_no_url_credentials(
    emulator: ApiServerEmulator, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process as users start it, at --verbose (kopf logs whole objects): the log file is grepped."""
    from kube_emulator import use_kubeconfig  # noqa: PLC0415
    from test_operator_process import free_port, operator_process, wait_until  # noqa: PLC0415

    config = use_kubeconfig(emulator, tmp_path, monkeypatch)
    log = tmp_path / "operator.log"
    args = ["--all-namespaces", "--standalone", "--verbose", "--health-port", str(free_port())]
    args += ["--metrics-port", "0"]
    async with operator_process(emulator, args, log, config) as process:
        body = _manifest(None, _signed("ocr-v1"))
        await emulator.write_as_controller(MDEPS, NS, "ocr", body)

        async def ready() -> bool:
            stored = emulator.stored(MDEPS, NS, "ocr") or {}
            return (stored.get("status") or {}).get("phase") == "Ready"

        await wait_until(ready, "phase Ready", process, log)
    text = log.read_text()
    assert "X-Amz-Signature=[REDACTED]" in text  # kopf did log the object, and the filter blanked it
    for variant in _variants(SIGNATURE):
        assert variant not in text
