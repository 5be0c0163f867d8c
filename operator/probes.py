"""The measurements a rollout needs, behind one seam (`Probes`) so tests can script the verdicts.

The real implementation asks Triton (is the canary's model READY and does it answer?) and Prometheus
(canary against stable over the same window), through `modeldeploy.triton` and `modeldeploy.prometheus`,
which are synchronous: they run in a worker thread so the operator's event loop never blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from modeldeploy.analysis import Thresholds
from modeldeploy.credentials import CredentialsError, PrometheusCredentials, prometheus_credentials
from modeldeploy.defaults import PrometheusAuthRef
from modeldeploy.kube import Kube, KubeError
from modeldeploy.rendering import HTTP_PORT, Owner, revision_labels
from modeldeploy.rollout import AnalysisOutcome, SmokeOutcome

AUTH_SECRET_LABEL = "modeldeploy.io/prometheus-auth"


@dataclass(frozen=True)
class Track:
    """One revision's Triton pods, as the PodMonitor labels their series."""

    namespace: str
    name: str  # the ModelDeployment
    revision: str

    def matchers(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "modeldeploy_name": self.name,
            "modeldeploy_revision": self.revision,
        }


@dataclass(frozen=True)
class AnalysisRequest:
    prometheus_url: str
    model: str
    stable: Track
    canary: Track
    window: timedelta
    thresholds: Thresholds
    auth: PrometheusAuthRef | None = None  # the Secret whose credentials go to prometheus_url


class Probes(Protocol):
    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome: ...

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome: ...


class TritonPrometheusProbes:
    """The real probes: a canary pod's Triton over HTTP, and Prometheus' HTTP API."""

    def __init__(
        self,
        kube: Kube,
        timeout_s: float = 10.0,
        http_port: int = HTTP_PORT,
        address_of: Callable[[str], str] | None = None,
    ) -> None:
        self._kube = kube
        self._timeout_s = timeout_s
        self._http_port = http_port  # Triton's HTTP port on the pod; tests run Triton on a free port
        # Where a pod IP is reached from here: itself in a cluster; the sandbox's loopback address locally.
        self._address_of = address_of or (lambda ip: ip)

    async def model_ready(self, canary: Track, model: str) -> SmokeOutcome:
        from modeldeploy import triton  # noqa: PLC0415  (tritonclient is heavy; only when a canary starts)

        # The revision's pod-template labels (app.kubernetes.io/name=triton leaves out the optimization Job's
        # pods, which carry the same instance and revision).
        labels = revision_labels(Owner(canary.name, canary.namespace), canary.revision)
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        pods = await self._kube.list("v1", "Pod", canary.namespace, selector)
        ready = [pod for pod in pods if _pod_ready(pod) and (pod.get("status") or {}).get("podIP")]
        if not ready:
            return SmokeOutcome(ok=False, reason=f"no ready pod of revision {canary.revision} yet")
        url = f"http://{self._address_of(ready[0]['status']['podIP'])}:{self._http_port}"
        result = await asyncio.to_thread(triton.smoke_check, url, model, self._timeout_s)
        return SmokeOutcome(ok=result.ok, reason=result.reason)

    async def analyze(self, request: AnalysisRequest) -> AnalysisOutcome:
        from modeldeploy import prometheus  # noqa: PLC0415  (prometheus-api-client pulls pandas)

        try:
            credentials = await self._credentials(request.auth)
        except (CredentialsError, KubeError) as error:
            # An error verdict (counted toward maxConsecutiveErrors), naming the Secret, never its values.
            return AnalysisOutcome(verdict="error", reason=f"Prometheus credentials: {error}")
        verdict = await asyncio.to_thread(
            prometheus.analyze,
            request.prometheus_url,
            request.model,
            request.stable.matchers(),
            request.canary.matchers(),
            request.window,
            request.thresholds,
            self._timeout_s,
            credentials,
        )
        return AnalysisOutcome(
            verdict=verdict.verdict,
            reason=verdict.reason,
            failed_checks=tuple(verdict.failed_checks),
            stable=_camel(verdict.stable.as_dict()),
            canary=_camel(verdict.canary.as_dict()),
        )

    async def _credentials(self, auth: PrometheusAuthRef | None) -> PrometheusCredentials | None:
        """Read at every analysis, so a rotated Secret takes effect without a restart."""
        if auth is None:
            return None
        where = f"{auth.namespace}/{auth.secret_name}"
        secret = await self._kube.get("v1", "Secret", auth.namespace, auth.secret_name)
        if secret is None:
            raise CredentialsError(f"Secret {where} (prometheusAuth) does not exist")
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if labels.get(AUTH_SECRET_LABEL) != "true":
            # Only Secrets meant for it: a ModelDeployment must not send any Secret to a URL it chooses.
            raise CredentialsError(f"Secret {where} lacks the label {AUTH_SECRET_LABEL}=true")
        return prometheus_credentials(secret.get("data") or {}, auth.type, where)


def _camel(measurement: dict[str, float | None]) -> dict[str, float | None]:
    """status.analysis uses the CRD's camelCase keys (errorRate, meanMs, p99Ms)."""
    renamed = {"requests": "requests", "error_rate": "errorRate", "mean_ms": "meanMs", "p99_ms": "p99Ms"}
    return {renamed.get(key, key): value for key, value in measurement.items()}


def _pod_ready(pod: dict[str, object]) -> bool:
    status = pod.get("status")
    if not isinstance(status, dict):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
