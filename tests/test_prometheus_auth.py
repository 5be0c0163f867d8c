"""Prometheus behind authentication: a real Prometheus started with a web config that requires TLS and
basic auth (as a hardened in-cluster Prometheus or a managed one is), queried by `modeldeploy.prometheus`
and by the operator's probes with credentials read from a Secret (token / username + password, ca.crt).

The certificates come from the real `openssl` binary (a private CA and a server certificate for
127.0.0.1), the password hash from bcrypt (what Prometheus' web config requires).
"""

from __future__ import annotations

import base64
import pathlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from kube_emulator import ApiServerEmulator, running_emulator, use_kubeconfig
from secured_prometheus import PASSWORD, USER, SecuredPrometheus, secured_prometheus

from modeldeploy.analysis import Thresholds
from modeldeploy.credentials import PrometheusCredentials
from modeldeploy.defaults import PrometheusAuthRef
from modeldeploy.kube import Kube
from modeldeploy.probes import AnalysisRequest, Track, TritonPrometheusProbes
from modeldeploy.prometheus import QueryError, analyze, query_number

pytestmark = pytest.mark.realpart("prometheus")

THRESHOLDS = Thresholds(max_error_rate=0.01, max_p99_ms=None, max_latency_ratio=1.2, min_requests=10)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    yield from secured_prometheus(tmp_path_factory)


def test_basic_auth_and_ca_bundle_reach_a_secured_prometheus(secured: SecuredPrometheus) -> None:
    good = PrometheusCredentials(username=USER, password=PASSWORD, ca_pem=secured.ca_pem)
    assert query_number(secured.url, "vector(42)", 5, good) == 42.0


def test_wrong_or_missing_credentials_are_refused_with_a_clear_reason(
    secured: SecuredPrometheus,
) -> None:
    ca = secured.ca_pem
    for credentials in (
        PrometheusCredentials(ca_pem=ca),
        PrometheusCredentials(username=USER, password="wrong", ca_pem=ca),
        PrometheusCredentials(bearer_token="not-a-password", ca_pem=ca),
    ):
        with pytest.raises(QueryError, match="401: Prometheus refused the credentials"):
            query_number(secured.url, "vector(1)", 5, credentials)


def test_an_untrusted_server_certificate_is_refused(secured: SecuredPrometheus) -> None:
    for ca in (None, secured.other_ca_pem):
        credentials = PrometheusCredentials(username=USER, password=PASSWORD, ca_pem=ca)
        with pytest.raises(QueryError, match=r"TLS: \[SSL: CERTIFICATE_VERIFY_FAILED\]"):
            query_number(secured.url, "vector(1)", 5, credentials)


def test_analyze_with_credentials_gets_answers_and_never_echoes_them(
    secured: SecuredPrometheus,
) -> None:
    stable = {"namespace": "ml", "modeldeploy_name": "ocr", "modeldeploy_revision": "aaa"}
    canary = {**stable, "modeldeploy_revision": "bbb"}
    good = PrometheusCredentials(username=USER, password=PASSWORD, ca_pem=secured.ca_pem)
    answered = analyze(secured.url, "ocr", stable, canary, timedelta(minutes=1), THRESHOLDS, 5, good)
    # Prometheus answered every query (empty: no Triton here), so the verdict is about the data.
    assert answered.verdict == "error"
    assert answered.reason.startswith("no data for"), answered.reason
    bad = PrometheusCredentials(username=USER, password="wr0ng-" + PASSWORD, ca_pem=secured.ca_pem)
    refused = analyze(secured.url, "ocr", stable, canary, timedelta(minutes=1), THRESHOLDS, 5, bad)
    assert "refused the credentials" in refused.reason
    assert PASSWORD not in refused.reason and USER not in refused.reason
    assert PASSWORD not in repr(bad)


def _secret(name: str, data: dict[str, str]) -> dict[str, object]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    labels = {"modeldeploy.io/prometheus-auth": "true"} if name != "unlabelled" else {}
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
        "type": "Opaque",
        "data": encoded,
    }


@pytest.fixture
async def kube(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Kube, ApiServerEmulator]]:
    async with (
        running_emulator() as api,
        await Kube.connect(str(use_kubeconfig(api, tmp_path, monkeypatch))) as client,
    ):
        yield client, api


async def test_probes_read_the_secret_and_authenticate(
    secured: SecuredPrometheus, kube: tuple[Kube, ApiServerEmulator]
) -> None:
    client, api = kube
    ca = secured.ca_pem
    secrets = {
        "good": {"username": USER, "password": PASSWORD, "ca.crt": ca},
        "wrong": {"username": USER, "password": "0ther-" + PASSWORD, "ca.crt": ca},
        "incomplete": {"username": USER, "ca.crt": ca},
        "unlabelled": {"username": USER, "password": PASSWORD, "ca.crt": ca},
    }
    for name, data in secrets.items():
        await api.write_as_controller("v1/secrets", "ml", name, _secret(name, data))
    probes = TritonPrometheusProbes(client, timeout_s=5)

    def request(secret: str) -> AnalysisRequest:
        return AnalysisRequest(
            prometheus_url=secured.url,
            model="ocr",
            stable=Track("ml", "ocr", "aaa"),
            canary=Track("ml", "ocr", "bbb"),
            window=timedelta(minutes=1),
            thresholds=THRESHOLDS,
            auth=PrometheusAuthRef("ml", secret, "basicAuth"),
        )

    good = await probes.analyze(request("good"))
    assert good.reason.startswith("no data for"), good.reason
    wrong = await probes.analyze(request("wrong"))
    assert "refused the credentials" in wrong.reason
    incomplete = await probes.analyze(request("incomplete"))
    assert incomplete.verdict == "error"
    assert incomplete.reason == (
        "Prometheus credentials: Secret ml/incomplete: prometheusAuth type basicAuth needs the key password"
    )
    unlabelled = await probes.analyze(request("unlabelled"))
    assert unlabelled.reason == (
        "Prometheus credentials: Secret ml/unlabelled lacks the label modeldeploy.io/prometheus-auth=true"
    )
    absent = await probes.analyze(request("absent"))
    assert absent.reason == "Prometheus credentials: Secret ml/absent (prometheusAuth) does not exist"
    for outcome in (good, wrong, incomplete, absent):
        assert PASSWORD not in outcome.reason
